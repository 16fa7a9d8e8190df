"""The shortcut audit's figures in the report, when the sweep folder holds darnet-audit's audit.json."""

from __future__ import annotations

import json
from pathlib import Path

from darnet_pl.report.writer import write_report
from tests.helpers.report_jobs import cohort, model_probs, write_job

PROBES = [
    {"name": "slice_count", "auc": 0.97, "flagged": True, "reason": "the slice count alone predicts the label"},
    {"name": "histogram", "auc": 0.55, "flagged": False, "reason": ""},
    {"name": "pre_segmented", "auc": None, "flagged": False, "reason": "not known for this data source"},
]


SEGMENTED = {
    "name": "pre_segmented",
    "auc": 0.66,
    "flagged": True,
    "flagged_classes": ["Normal"],
    "reason": "the pre-segmented flag alone gives away Normal (AUC 0.78)",
    "per_class": {c: {"auc": auc, "partial": 0.0} for c, auc in (("CP", 0.64), ("NCP", 0.57), ("Normal", 0.78))},
}
AUDIT_V2 = {
    "version": 2,
    "probes": [SEGMENTED, PROBES[1]],
    "per_class": [{"probe": "pre_segmented", "class": "Normal", "auc": 0.78, "macro_auc": 0.66, "flagged": True}],
    "subsets": [
        {"probe": "pre_segmented", "class": "Normal", "subset": s, "auc": auc, "summary": f"share: Normal {share}"}
        for s, auc, share in (("train", 0.86, "68%"), ("test", 0.7, "39%"))
    ],
    "model_checks": {
        "subset": "test",
        "stratified": [
            {"checkpoint": "/x/fold0/checkpoints/epoch3.ckpt", "probe": "pre_segmented", "class": "Normal"}
            | {"metric": "sensitivity", "yes": 0.98, "no": 0.6, "gap": 0.38, "gap_ci": [0.2, 0.5]}
        ],
        "feature_probes": [
            {"checkpoint": "/x/fold0/checkpoints/epoch3.ckpt", "probe": "pre_segmented", "class": "Normal"}
            | {"auc": 0.93, "evidence_auc": 0.81}
        ],
    },
}


def _sweep(root: Path) -> Path:
    scans = cohort(10, seed=0)
    for fold in range(2):
        write_job(root / "dual" / f"fold{fold}", "dual", fold, model_probs(scans, seed=fold), scans, seed=fold)
    return root


def test_an_audit_beside_the_sweep_is_in_the_report(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path / "sweep")
    (sweep / "audit.json").write_text(json.dumps(PROBES))
    result = write_report(sweep, n_bootstrap=0, make_plots=False)
    saved = json.loads((result.out_dir / "report.json").read_text())
    assert [p["name"] for p in saved["audit"][0]["probes"]] == ["slice_count", "histogram", "pre_segmented"]
    line = next(line for line in result.summary.splitlines() if line.startswith("shortcut audit"))
    assert "slice_count 0.97 FLAGGED (the slice count alone predicts the label)" in line
    assert "histogram 0.55;" in line and "pre_segmented -" in line
    assert "shortcut audit" in (result.out_dir / "table_iv.md").read_text()


def test_no_audit_no_audit_section(tmp_path: Path) -> None:
    result = write_report(_sweep(tmp_path / "sweep"), n_bootstrap=0, make_plots=False)
    assert json.loads((result.out_dir / "report.json").read_text())["audit"] is None
    assert "shortcut audit" not in result.summary


def test_the_per_class_tables_of_an_audit_are_beside_table_iv(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path / "sweep")
    (sweep / "audit.json").write_text(json.dumps(AUDIT_V2))
    result = write_report(sweep, n_bootstrap=0, make_plots=False)
    saved = json.loads((result.out_dir / "report.json").read_text())["audit"][0]
    assert saved["per_class"] == AUDIT_V2["per_class"] and saved["subsets"] == AUDIT_V2["subsets"]
    assert saved["model_checks"]["feature_probes"][0]["auc"] == 0.93
    lines = [line for line in result.summary.splitlines() if line.startswith("shortcut audit")]
    assert "pre_segmented 0.66 (CP 0.64, NCP 0.57, Normal 0.78) FLAGGED Normal (" in lines[0]
    assert lines[1] == "shortcut audit, test subset: pre_segmented Normal AUC 0.70, share: Normal 39%"
    assert lines[2] == (
        "shortcut audit, model checks on test: epoch3.ckpt pre_segmented Normal sensitivity 0.98 where the signal "
        "points to it vs 0.60 (gap 0.38 [0.20, 0.50]), feature probe AUC 0.93, evidence AUC 0.81"
    )
    table = (result.out_dir / "table_iv.md").read_text()
    assert all(line in table for line in lines)

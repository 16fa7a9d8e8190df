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

"""Does the model use the shortcut? ``darnet-audit --ckpt`` on phantoms with a planted frame.

Two tiny DARNets (tests/audit/conftest.py) are trained once: on a cohort where half of the Normal patients carry a
bright frame, and on the same cohort without it. Both are audited on a cohort they never saw (another seed) that
carries the frame. The model trained with it finds Normal where the frame is and misses it elsewhere: a positive
sensitivity gap whose interval excludes 0, and its evidence for Normal tells framed from unframed Normal scans. The
clean model shows neither. The feature probe finds the frame in both: a mark this visible is encoded by any
convolutional network; it is printed, and checked only where the shortcut was learnt.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from darnet_pl.cli.audit import main

AUDIT = (
    "data=synthetic",
    "data.size=[16,32,32]",
    "data.split_seed=1",
    "+synthetic_patients_per_class=20",
    "data.source.shortcut.class_name=Normal",
    "audit.workers=0",
    "audit.model_subset=all",
    "audit.bootstrap=500",
)


def model_checks(run: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["--ckpt", str(run), *AUDIT, f"audit.out={out}"]) == 0
    print(capsys.readouterr().out)
    checks = json.loads((out / "audit.json").read_text())["model_checks"]
    assert len(checks["checkpoints"]) == 1 and checks["subset"] == "all"
    sensitivity = next(
        r for r in checks["stratified"] if (r["probe"], r["class"], r["metric"]) == ("planted", "Normal", "sensitivity")
    )
    probe = next(p for p in checks["feature_probes"] if (p["probe"], p["class"]) == ("planted", "Normal"))
    assert sensitivity["n_yes"] + sensitivity["n_no"] == probe["n_scans"] and probe["n_yes"] == sensitivity["n_yes"]
    return {"sensitivity": sensitivity, "probe": probe}


def test_a_model_trained_on_the_planted_shortcut_uses_it(phantom_models, tmp_path, capsys) -> None:
    found = model_checks(phantom_models["planted"], tmp_path, capsys)
    gap = found["sensitivity"]
    assert gap["gap"] >= 0.3 and gap["gap_ci"][0] > 0, gap
    assert found["probe"]["evidence_auc"] >= 0.9 and found["probe"]["auc"] >= 0.9, found["probe"]


def test_a_model_trained_without_it_does_not(phantom_models, tmp_path, capsys) -> None:
    found = model_checks(phantom_models["clean"], tmp_path, capsys)
    gap = found["sensitivity"]
    assert gap["gap"] < 0.2 and gap["gap_ci"][0] <= 0, gap
    assert found["probe"]["evidence_auc"] < 0.75, found["probe"]

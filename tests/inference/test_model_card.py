"""The model card renderer takes plain data only: checkpoint metadata dictionaries and, optionally, a report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from darnet_pl.inference.model_card import render_model_card

REPO_ROOT = Path(__file__).resolve().parents[2]
MEMBER = {
    "path": "outputs/darnet/sweep/dual/fold0/checkpoints/epoch041.ckpt",
    "class_names": ["CP", "NCP", "Normal"],
    "input_size": [64, 224, 224],
    "attention": "dual",
    "width": 64,
    "in_channels": 1,
    "preprocessing": {"size": [64, 224, 224], "border_crop": 48, "depth_interpolation": "antialias"},
    "preprocessing_origin": "checkpoint",
    "source": {"source": "ccii", "apply_cleaning": False, "exclude_segmented": False},
    "epoch": 41,
    "temperature": 1.0,
}


def test_a_ccii_card_names_the_use_the_shortcut_and_the_report_metrics():
    report = json.loads((REPO_ROOT / "experiments" / "smoke_ablation" / "results" / "report.json").read_text())
    card = render_model_card([MEMBER, {**MEMBER, "epoch": 39}], report=report, commands=["python -m darnet_pl x"])
    assert "**Research only - not for clinical diagnosis.**" in card
    assert "lung-segmented" in card and "606 Normal" in card and "shortcut_control" in card
    assert "kept (the paper's protocol)" in card and "2 checkpoint(s) averaged (mean softmax)" in card
    group = report["groups"][0]
    mean = group["fold_metrics"]["3class/auc_macro"]["mean"]
    assert f"AUC (3 classes, macro): {mean:.4f} ± " in card
    assert f"fold ensemble ({group['ensemble']['n_models']} models, mean softmax)" in card
    assert "python -m darnet_pl x" in card and "(epoch 39)" in card


def test_without_metrics_the_card_says_so_and_synthetic_data_is_called_a_test_artefact():
    card = render_model_card([{**MEMBER, "source": {"source": "synthetic"}}])
    assert "has not been evaluated here" in card and "test artefact" in card
    single = render_model_card([MEMBER], test_metrics=[{"test/2class/auc": 0.91, "test/3class/accuracy": None}])
    assert "- AUC (COVID-19 vs rest): 0.9100" in single and "accuracy (3 classes)" not in single
    with pytest.raises(ValueError, match="at least one checkpoint"):
        render_model_card([])

"""``darnet-model-card``: a recipe's model card from its report.json, as typed; the cards of experiments/ are what
the command renders from their records today."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from darnet_pl.inference.model_card import recipe_commands, render_recipe_card
from tests.helpers.user import REPO_ROOT, explain, run_as_typed

RECORDS = sorted((REPO_ROOT / "experiments").glob("*/results/report.json"))


def test_every_record_with_a_report_ships_its_current_model_card() -> None:
    assert RECORDS, "experiments/ holds no report.json"
    for report in RECORDS:
        card = report.parents[1] / "MODEL_CARD.md"
        assert card.is_file(), f"{card}: missing; darnet-model-card {report.parent} --out {card}"
        expected = render_recipe_card(json.loads(report.read_text(encoding="utf-8")))
        assert card.read_text(encoding="utf-8") == expected, f"{card}: stale; rerun darnet-model-card --overwrite"


def test_the_card_is_written_beside_the_report_and_kept(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    (sweep / "report").mkdir(parents=True)
    source = REPO_ROOT / "experiments" / "smoke_ablation" / "results" / "report.json"
    shutil.copy(source, sweep / "report" / "report.json")
    result = run_as_typed("darnet-model-card sweep", tmp_path)
    assert result.returncode == 0, explain(result)
    card = (sweep / "report" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert result.stdout.strip() == "model card: sweep/report/MODEL_CARD.md"
    report = json.loads(source.read_text(encoding="utf-8"))
    for section in ("## Intended use", "## Model", "## Training data", "## Metrics", "## Limitations", "## How it"):
        assert section in card
    assert "**Research only - not for clinical diagnosis.**" in card and "test artefact" in card
    for group in report["groups"]:
        mean = group["fold_metrics"]["3class/auc_macro"]["mean"]
        low, high = group["ensemble"]["ci"]["3class/auc_macro"]
        assert f"AUC (3 classes, macro): {mean:.4f} ± " in card
        assert f"[{low:.4f}, {high:.4f}]" in card
    assert "python -m darnet_pl +experiment=smoke_ablation fold=0..4 -m" in card  # the command its jobs ran

    again = run_as_typed("darnet-model-card sweep", tmp_path)
    assert again.returncode == 2 and again.stderr.strip().splitlines() == [
        "error: sweep/report/MODEL_CARD.md: exists; pass --overwrite to replace it"
    ]
    assert run_as_typed("darnet-model-card sweep --overwrite", tmp_path).returncode == 0


@pytest.mark.parametrize(
    ("make", "expect"),
    [
        (lambda p: p.mkdir(), "holds no report.json (nor report/report.json): run darnet-report on it first"),
        (lambda p: None, "not found"),
        (lambda p: p.write_text('{"rows": []}'), "not a report.json of darnet-report (no 'groups')"),
    ],
    ids=["folder without report", "missing", "other json"],
)
def test_what_is_not_a_report_is_one_line(tmp_path: Path, make, expect: str) -> None:
    make(tmp_path / "given")
    result = run_as_typed("darnet-model-card given", tmp_path)
    assert result.returncode == 2, explain(result)
    assert result.stderr.strip().splitlines() == [f"error: given: {expect}"]
    assert not list(tmp_path.rglob("MODEL_CARD.md"))


def test_a_ccii_control_card_names_the_shortcut_and_the_control() -> None:
    report = json.loads((REPO_ROOT / "experiments" / "smoke" / "results" / "report.json").read_text())
    report["groups"][0] |= {"dataset": "ccii", "condition": "shortcut_control"}
    card = render_recipe_card(report)
    assert "**Known shortcut.**" in card and "lung-segmented scans left out" in card
    assert recipe_commands(report) == ["python -m darnet_pl +experiment=smoke fold=0"]


def test_commands_are_rebuilt_from_the_recipe_its_overrides_and_folds() -> None:
    """Reports list the experiment-defining overrides (runs.naming) beside the recipe's name; older ones listed the
    recipe among them."""
    jobs = [
        {"task_name": "ablation", "overrides": ["+debug=tiny"], "fold": k, "variant": v}
        for k in (0, 1, 2)
        for v in "ab"
    ]
    jobs += [{"task_name": "smoke", "overrides": ["+experiment=smoke", "model.width=8"], "fold": k} for k in (1, 3)]
    assert recipe_commands({"jobs": jobs}) == [
        "python -m darnet_pl +experiment=ablation +debug=tiny fold=0..2 -m",
        "python -m darnet_pl +experiment=smoke model.width=8 fold=1,3 -m",
    ]

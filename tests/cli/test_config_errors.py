"""Lightning-hydra-template's grammar and Hydra's errors in one line: every config mistake is one ``error:`` line
naming the override and the nearest valid names, exit code 2, nothing written; ``--help`` explains.

Each case runs ``python -m darnet_pl`` as typed, from an empty folder (tests/helpers/user.py); none trains.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from darnet_pl.config.checks import ATTENTION_VARIANTS
from darnet_pl.config.help import experiment_descriptions
from darnet_pl.models import ATTENTION_VARIANTS as MODEL_VARIANTS
from darnet_pl.utils.package_files import CONF_DIR
from tests.helpers.cli import compose_config
from tests.helpers.user import explain, run_args

PYTHON = ["python", "-m", "darnet_pl"]
EXPERIMENTS = "ablation, darnet, search, shortcut_control, smoke, smoke_ablation"


@pytest.mark.parametrize(
    ("typed", "line"),
    [
        ("+experiment=smoke model.attenton=ca", "model.attenton=ca: no such key; did you mean model.attention?"),
        ("experiment=smoke attention=ca", "attention=ca: no such key; did you mean model.attention?"),
        ("+experiment=smok", f"experiment=smok: no such option; did you mean smoke? (experiment: {EXPERIMENTS})"),
        ("experiment=smok", f"experiment=smok: no such option; did you mean smoke? (experiment: {EXPERIMENTS})"),
        ("experiment=smoke debug=tinyy", "debug=tinyy: no such option; did you mean tiny? (debug: fdr, tiny)"),
        ("experiment=smoke model.attention=cbam", "model.attention=cbam: expected one of none, ca, da, dual"),
        (
            "experiment=smoke model.attention=dul",
            "model.attention=dul: expected one of none, ca, da, dual; did you mean dual?",
        ),
        (
            "experiment=smoke trainer.max_epochs=[1",
            "trainer.max_epochs=[1: cannot be read (no viable alternative at input '[1'); "
            "see https://hydra.cc/docs/advanced/override_grammar/basic/",
        ),
        (
            "experiment=smoke fold=0..2",
            "fold=0..2: several values for one run; add -m to run one job per value (a sweep)",
        ),
        ("experiment=smoke model.attenton=ca,da -m", "model.attenton=ca: no such key; did you mean model.attention?"),
    ],
)
def test_a_config_mistake_is_one_line_naming_the_key(cwd: Path, typed: str, line: str) -> None:
    result = run_args([*PYTHON, *shlex.split(typed)], cwd, timeout=120)
    assert result.returncode == 2, explain(result)
    assert result.stderr.splitlines() == [f"error: {line}"], explain(result)
    assert result.stdout == "", explain(result)
    assert list(cwd.iterdir()) == [], "a refused command left files behind"


def test_experiment_without_plus_is_the_same_recipe(cwd: Path) -> None:
    plain = run_args([*PYTHON, "experiment=smoke", "--cfg", "job"], cwd, timeout=120)
    plus = run_args([*PYTHON, "+experiment=smoke", "--cfg", "job"], cwd, timeout=120)
    assert plain.returncode == 0 and plus.returncode == 0, explain(plain)
    assert plain.stdout == plus.stdout and "task_name: smoke" in plain.stdout


@pytest.mark.parametrize("recipe", sorted(experiment_descriptions()))
def test_documented_top_level_keys_work_on_every_recipe(recipe: str) -> None:
    cfg = compose_config(f"+experiment={recipe}", "depth_interpolation=antialias", "synthetic_patients_per_class=8")
    assert cfg.depth_interpolation == "antialias" and cfg.synthetic_patients_per_class == 8
    assert cfg.verbose is False
    ccii = compose_config(f"+experiment={recipe}", "data=ccii", "depth_interpolation=nearest")
    assert ccii.data.source.preprocessing.depth_interpolation == "nearest"


def test_the_attention_check_knows_the_models_variants() -> None:
    assert ATTENTION_VARIANTS == MODEL_VARIANTS


def test_help_says_what_the_package_does_and_lists_every_experiment(cwd: Path) -> None:
    result = run_args([*PYTHON, "--help"], cwd, timeout=120)
    assert result.returncode == 0, explain(result)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("darnet-pl: DARNet") and len(lines) < 45, result.stdout
    for name, description in experiment_descriptions().items():
        assert description and f"  {name}" in result.stdout and description in result.stdout, name
    assert len(experiment_descriptions()) == len(list((CONF_DIR / "experiment").glob("*.yaml")))
    for key in ("fold=", "model.attention=", "data=", "trainer=", "debug=", "logger=", "verbose=true", "--cfg job"):
        assert key in result.stdout, key
    assert "README.md" in result.stdout
    assert "== Config ==" not in result.stdout and "_target_" not in result.stdout  # no config dump


def test_prepare_help_lists_only_what_prepare_reads(cwd: Path) -> None:
    result = run_args(["darnet-prepare", "--help"], cwd, timeout=120)
    assert result.returncode == 0, explain(result)
    assert result.stdout.startswith("darnet-prepare: ")
    for read in ("data.root=", "data.scan_list=", "data.cache_dir=", "+dry_run=true"):
        assert read in result.stdout, read
    for unread in ("trainer", "logger", "model", "experiment", "callbacks", "debug"):
        assert unread not in result.stdout, unread

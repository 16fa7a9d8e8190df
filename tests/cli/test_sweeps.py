"""Sweeps: `a..b` ranges, deterministic job folders, the ablation's 20 jobs, and a real two-fold multirun."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from darnet_pl.cli.argv import RangeError, expand_inclusive_range, normalize_argv
from darnet_pl.cli.train import CONFIG_DIR
from darnet_pl.runs.naming import job_subdir
from tests.helpers.cli import run_cli
from tests.helpers.tiny_sweep import COMMAND as TINY_SWEEP
from tests.helpers.user import explain, run_args
from tests.helpers.wandb_runs import offline_runs


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("fold=0..4", "fold=range(0,5)"),
        ("fold=2..2", "fold=range(2,3)"),
        ("+seed=-1..1", "+seed=range(-1,2)"),
        ("fold=0,1,2", "fold=0,1,2"),
        ("fold=range(0,5)", "fold=range(0,5)"),
        ("data.root=../scans", "data.root=../scans"),
        ("data.root=..", "data.root=.."),
        ("-m", "-m"),
    ],
)
def test_inclusive_ranges(argument: str, expected: str) -> None:
    assert expand_inclusive_range(argument) == expected


@pytest.mark.parametrize(
    ("argument", "message"),
    [("fold=3..1", "empty range"), ("fold=0..", "needs both ends"), ("fold=..4", "needs both ends")],
)
def test_malformed_ranges_are_refused(argument: str, message: str) -> None:
    with pytest.raises(RangeError, match=message):
        expand_inclusive_range(argument)


def test_multirun_flag_goes_first_and_debug_presets_last() -> None:
    argv = ["prog", "debug=tiny", "+experiment=darnet", "fold=0..4", "-m"]
    assert normalize_argv(argv) == ["prog", "-m", "+experiment=darnet", "fold=range(0,5)", "+debug=tiny"]


def test_job_folders_are_readable_and_distinct() -> None:
    assert job_subdir("dual", 3, ["fold=3", "+experiment=darnet", "paths.log_dir=/x"]) == "dual/fold3"
    with_lr = job_subdir("ca", 0, ["model.optimizer.lr=0.0001", "fold=0"])
    assert with_lr == "ca/model.optimizer.lr=0.0001/fold0"
    assert job_subdir("ca", 0, ["model.optimizer.lr=0.001"]) != with_lr


def _sweep_jobs(*overrides: str) -> list[list[str]]:
    """The jobs a basic-sweeper multirun would launch (a dry run: nothing is trained or written)."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    params = [f"{k}={v}" for k, v in (cfg.hydra.sweeper.params or {}).items()]
    command_line = [o.replace("fold=0..4", "fold=range(0,5)") for o in overrides]
    parsed = OverridesParser.create().parse_overrides(params + command_line)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def test_ablation_composes_to_twenty_jobs() -> None:
    jobs = _sweep_jobs("+experiment=ablation", "fold=0..4")
    assert len(jobs) == 20
    combos = {
        (next(o for o in j if o.startswith("model.attention")), next(o for o in j if o.startswith("fold")))
        for j in jobs
    }
    assert len(combos) == 20
    assert {c[0] for c in combos} == {f"model.attention={v}" for v in ("none", "ca", "da", "dual")}


@pytest.mark.slow
def test_two_fold_multirun_through_the_entry_point(tiny_sweep, tmp_path: Path) -> None:
    assert tiny_sweep.result.returncode == 0, explain(tiny_sweep.result)
    sweep = tiny_sweep.folder
    metrics = sorted(sweep.rglob("test_metrics.json"))
    assert [p.parent.relative_to(sweep).as_posix() for p in metrics] == [
        "dual/debug=tiny/fold0",
        "dual/debug=tiny/fold1",
    ]
    for path in metrics:
        values = json.loads(path.read_text())
        assert 0.0 <= values["test/3class/auc_macro"] <= 1.0
    table = (sweep / "report" / "table_iv.md").read_text()  # written by the end-of-sweep callback
    assert "DARNet" in table and "2 folds" in table

    # the same command again (in a copy of the user's folder: the shared sweep is read only) trains nothing
    home = tmp_path / "home"
    shutil.copytree(tiny_sweep.home, home)
    copied = sorted((home / sweep.relative_to(tiny_sweep.home)).rglob("test_metrics.json"))
    before = [p.stat().st_mtime_ns for p in copied]
    again = run_args(list(TINY_SWEEP), home)
    assert again.returncode == 0, explain(again)
    assert again.stdout.count("already finished") + again.stderr.count("already finished") == 2
    assert [p.stat().st_mtime_ns for p in copied] == before


@pytest.mark.slow
def test_wandb_offline_run_records_the_metrics(tmp_path: Path) -> None:
    result = run_cli(
        "+experiment=smoke", "debug=tiny", "logger=wandb", "fold=1", f"paths.log_dir={tmp_path}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = offline_runs(tmp_path)  # read back from the run file W&B keeps until `wandb sync`
    run_dir = run.folder.parent.parent
    assert (run.group, run.job_type) == ("smoke/dual/debug=tiny", "fold1")
    assert run.name == f"smoke/dual/debug=tiny/fold1@{run_dir.name}"  # a single run's folder is new each time
    assert any("val/loss" in row for row in run.history) and any("train/loss_epoch" in row for row in run.history)
    assert 0.0 <= run.summary["test/3class/auc_macro"] <= 1.0 and run.config["git_commit"]
    assert {"test/confusion_matrix_table", "test/roc_table"} <= set(run.summary)

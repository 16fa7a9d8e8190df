"""A sweep checks once: what every job needs and no sweep value changes stops the command with one line and exit
code 2 before any job starts, leaving no folder behind; what a swept value decides is left to each job.

Run as typed from an empty folder (tests/helpers/user.py); nothing trains.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from darnet_pl.cli.job_needs import varied_keys, varies
from tests.helpers.cli import compose_config
from tests.helpers.user import explain, run_args

PYTHON = ["python", "-m", "darnet_pl"]


def test_a_sweep_without_the_data_stops_once_before_any_job(cwd: Path) -> None:
    result = run_args([*PYTHON, "+experiment=darnet", "fold=0..4", "-m"], cwd, timeout=120)
    assert result.returncode == 2, explain(result)
    assert result.stderr.splitlines() == [
        "error: data=ccii needs the CC-CCII download: set data.root=/path/to/CC-CCII or DARNET_CCII_ROOT"
    ]
    assert result.stdout == ""
    assert list(cwd.iterdir()) == [], "job folders were made"


def test_an_unwritable_cache_stops_the_sweep_once(cwd: Path) -> None:
    root = cwd / "CC-CCII"
    root.mkdir()
    blocker = cwd / "a_file"
    blocker.write_text("not a folder")
    args = ["experiment=darnet", f"data.root={root}", f"data.cache_dir={blocker}/cache", "fold=0,1", "-m"]
    result = run_args([*PYTHON, *args], cwd, timeout=120)
    assert result.returncode == 2, explain(result)
    assert result.stderr.splitlines() == [
        f"error: {blocker}/cache: cannot write the data cache into this folder (Not a directory); "
        "choose another with data.cache_dir=<folder>"
    ]
    assert sorted(p.name for p in cwd.iterdir()) == ["CC-CCII", "a_file"]


def test_a_logger_whose_package_cannot_be_imported_stops_the_sweep_once(cwd: Path, tmp_path: Path) -> None:
    broken = tmp_path / "site" / "wandb"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text('raise ImportError("wandb is broken here")\n')
    args = ["experiment=smoke", "logger=wandb", "debug=fdr", "fold=0,1", "-m"]
    result = run_args([*PYTHON, *args], cwd, timeout=120, PYTHONPATH=str(broken.parent))
    assert result.returncode == 2, explain(result)
    assert result.stderr.splitlines() == [
        "error: logger=wandb needs wandb, which cannot be imported (wandb is broken here): pip install wandb"
    ]
    assert list(cwd.iterdir()) == []


def test_only_what_no_sweep_value_changes_is_checked_up_front() -> None:
    cfg = compose_config("+experiment=smoke_ablation")  # the recipe sweeps model.attention (its sweeper params)
    typed = ["+experiment=smoke_ablation", "fold=range(0,2)", "data.root=/a,/b", "seed=1"]
    varied = varied_keys(OmegaConf.merge(cfg, {"hydra": {"overrides": {"task": typed}}}))
    assert varied == {"fold", "data.root", "model.attention"}
    assert varies("fold", varied) and varies("data", varied) and varies("data.root", varied)
    assert not varies("data.cache_dir", varied) and not varies("seed", varied)
    assert varies("anything", {"experiment"})  # another recipe may change every key

"""`+experiment=search`: the Optuna search on validation only, composed and through the entry point as typed.

End to end: the user has CC-CCII (a stand-in: real scan ids of the paper's split, tiny slices, each scan of its own
depth so that no two are the same volume) and has exported ``DARNET_CCII_ROOT``. Two tiny trials (``debug=tiny``),
then the same command with ``n_trials=3``: the study in ``optuna.db`` continues to three trials in all. Each trial's
objective must be the validation score in its own job folder, and no trial may evaluate the test set.
The study is read with sqlite3 (Optuna's schema), not with Optuna: nothing of Optuna is imported here.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from darnet_pl.config.resolvers import register_resolvers
from tests.helpers.ccii_tree import make_ccii_tree
from tests.helpers.cli import compose_config
from tests.helpers.datasets import PAPER_SPLIT
from tests.helpers.user import explain, run_as_typed

COMMAND = "python -m darnet_pl +experiment=search debug=tiny hydra.sweeper.n_trials={n} -m"
SWEEP = Path("outputs/search/sweep")
# the study of COMMAND: named by the command's overrides (debug=tiny) and the fold, not by n_trials
STUDY = "search/debug=tiny/fold0"
# the objective: the score the checkpoint is selected on (conf/experiment/search.yaml), a validation metric
MONITOR = "val/auc"


@dataclass(frozen=True)
class Trial:
    number: int
    state: str
    value: float | None
    params: dict[str, object]


def ccii_stand_in(root: Path) -> Path:
    """The first patient of every class and chunk of the paper's split (18 scans), 5 to 12 slices each."""
    picked: dict[tuple[str, str], tuple[str, str, str, int]] = {}
    with PAPER_SPLIT.open(newline="") as handle:
        for row in csv.DictReader(handle):
            key = (row["class"], row["split"])
            if key not in picked:
                picked[key] = (row["class"], row["patient_id"], row["scan_id"], 5 + (3 * len(picked)) % 8)
    make_ccii_tree(root, picked.values(), size=16)
    return root


def require_optuna_sweeper() -> None:
    if importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None:
        pytest.fail("hydra-optuna-sweeper is not installed: `make install` installs it (the `search` extra)")


def study_trials(db: Path, study_name: str = STUDY) -> list[Trial]:
    """Every trial of the study, by number, with its value and its parameters as the job got them."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        rows = con.execute(
            "SELECT t.trial_id, t.number, t.state, v.value FROM trials t JOIN studies s USING (study_id) "
            "LEFT JOIN trial_values v ON v.trial_id = t.trial_id AND v.objective = 0 "
            "WHERE s.study_name = ? ORDER BY t.number",
            (study_name,),
        ).fetchall()
        trials = []
        for trial_id, number, state, value in rows:
            params: dict[str, object] = {}
            for name, stored, distribution in con.execute(
                "SELECT param_name, param_value, distribution_json FROM trial_params WHERE trial_id = ?", (trial_id,)
            ):
                spec = json.loads(distribution)
                choices = spec["attributes"].get("choices")
                params[name] = choices[int(stored)] if spec["name"] == "CategoricalDistribution" else stored
            trials.append(Trial(number, state, value, params))
    return trials


def job_dirs(sweep: Path) -> list[Path]:
    return sorted(p.parent for p in sweep.rglob("config_resolved.yaml"))


def job_params(job: Path) -> dict[str, object]:
    cfg = yaml.safe_load((job / "config_resolved.yaml").read_text(encoding="utf-8"))
    return {
        "model.attention": cfg["model"]["attention"],
        "model.optimizer.lr": cfg["model"]["optimizer"]["lr"],
        "model.optimizer.weight_decay": cfg["model"]["optimizer"]["weight_decay"],
        "fold": cfg["fold"],
        "test": cfg["test"],
    }


def history(job: Path) -> list[dict[str, str]]:
    with (job / "csv" / "metrics.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def check_trials(sweep: Path, n: int) -> list[Path]:
    """``n`` completed trials, each in its own job folder, each returning that job's validation score."""
    with sqlite3.connect(f"file:{sweep / 'optuna.db'}?mode=ro", uri=True) as con:
        assert con.execute("SELECT study_name FROM studies").fetchall() == [(STUDY,)]
    trials = study_trials(sweep / "optuna.db")
    assert [(t.number, t.state) for t in trials] == [(k, "COMPLETE") for k in range(n)], trials
    jobs = job_dirs(sweep)
    assert len(jobs) == n, jobs
    by_params = {tuple(sorted((k, v) for k, v in job_params(j).items() if k.startswith("model."))): j for j in jobs}
    assert len(by_params) == n, "two trials shared a job folder or ran the same settings"
    for trial in trials:
        job = by_params[tuple(sorted(trial.params.items()))]
        params = job_params(job)
        assert job.name == "fold0" and params["fold"] == 0, job
        assert job.relative_to(sweep).parts[0] == trial.params["model.attention"], job
        # validation only: the job never ran the test set
        assert params["test"] is False, job
        assert not (job / "test_metrics.json").exists() and not (job / "predictions.csv").exists(), job
        rows = history(job)
        assert not any(v for row in rows for k, v in row.items() if k.startswith("test/")), job
        # the objective is the selected checkpoint's validation score: the best val/auc of the job's history
        scores = [float(row[MONITOR]) for row in rows if row.get(MONITOR)]
        assert scores and 0.0 <= max(scores) <= 1.0, job
        assert trial.value is not None and math.isclose(trial.value, max(scores), rel_tol=1e-6), (trial, scores)
        # the job trained with the trial's learning rate (the learning-rate monitor's record)
        assert math.isclose(float(next(r["lr-Adam"] for r in rows if r.get("lr-Adam"))), params["model.optimizer.lr"])
    return jobs


def test_search_composes_on_the_paper_recipe() -> None:
    require_optuna_sweeper()
    register_resolvers()
    cfg = compose_config("+experiment=search")
    assert cfg.data.source._target_.endswith("CCIISource") and list(cfg.data.size) == [64, 224, 224]
    assert cfg.model.width == 64 and cfg.trainer.max_epochs == 80 and cfg.fold == 0
    assert cfg.test is False
    assert (cfg.callbacks.model_checkpoint.monitor, cfg.callbacks.model_checkpoint.mode) == (MONITOR, "max")
    sweeper = cfg.hydra.sweeper
    assert sweeper.direction == "maximize" and sweeper.study_name == "search/fold0"
    assert sweeper.storage.startswith("sqlite:///") and sweeper.storage.endswith("/search/sweep/optuna.db")
    assert set(sweeper.params) == {"model.optimizer.lr", "model.optimizer.weight_decay", "model.attention"}
    # the direction follows the checkpoint's mode: a search on the validation loss minimises it
    on_loss = compose_config(
        "+experiment=search", "callbacks.model_checkpoint.monitor=val/loss", "callbacks.model_checkpoint.mode=min"
    )
    assert on_loss.hydra.sweeper.direction == "minimize"


@pytest.mark.slow
def test_search_runs_trials_on_validation_and_continues_its_study(cwd: Path, tmp_path: Path) -> None:
    require_optuna_sweeper()
    env = {"DARNET_CCII_ROOT": str(ccii_stand_in(tmp_path / "CC-CCII"))}
    sweep = cwd / SWEEP

    first = run_as_typed(COMMAND.format(n=2), cwd, timeout=900, **env)
    assert first.returncode == 0, explain(first)
    assert "Traceback" not in first.stderr and "UserWarning: Callback" not in first.stderr, explain(first)
    jobs = check_trials(sweep, 2)
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text(encoding="utf-8"))
    assert math.isclose(best["best_value"], max(t.value for t in study_trials(sweep / "optuna.db"))), best
    before = {job: (job / "csv" / "metrics.csv").stat().st_mtime_ns for job in jobs}

    # the same command, a larger budget: the study goes on to 3 trials in all (one more), the two kept as they are
    again = run_as_typed(COMMAND.format(n=3), cwd, timeout=900, **env)
    assert again.returncode == 0, explain(again)
    assert "2 of 3 trials finished, 1 to run" in again.stdout + again.stderr, explain(again)
    assert set(check_trials(sweep, 3)) > set(jobs)
    assert {job: (job / "csv" / "metrics.csv").stat().st_mtime_ns for job in jobs} == before

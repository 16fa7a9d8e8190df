"""W&B mirrors the sweep: a tiny ablation sweep with an lr override, run as a user types it (offline by the config's
own default: the user's environment has no WANDB_* settings), then read back from the run files W&B wrote
(tests.helpers.wandb_runs): no mock of wandb, no network.

One sweep (two variants, one fold, one epoch each) serves every test here; the last test runs ``darnet-report``
on it again.
"""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from darnet_pl.runs.naming import job_experiment
from tests.helpers.forked import run_forked
from tests.helpers.user import REPO_ROOT, explain
from tests.helpers.wandb_runs import OfflineRun, offline_runs

SWEEP = (
    "+experiment=smoke_ablation",
    "debug=tiny",
    "logger=[csv,wandb]",
    "model.optimizer.lr=1e-4",
    "model.attention=none,dual",
    "fold=1",
    "-m",
)
GROUPS = {
    "none": "smoke_ablation/none/debug=tiny/model.optimizer.lr=0.0001",
    "dual": "smoke_ablation/dual/debug=tiny/model.optimizer.lr=0.0001",
}

pytestmark = pytest.mark.slow


@dataclass
class Sweep:
    home: Path
    folder: Path
    output: str  # stdout and stderr of the sweep
    runs: list[OfflineRun]  # as the sweep left them

    @property
    def jobs(self) -> list[OfflineRun]:
        return [run for run in self.runs if run.job_type != "report"]

    def job_dir(self, run: OfflineRun) -> Path:
        return run.folder.parent.parent


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    home = tmp_path_factory.mktemp("wandb-sweep")
    result = run_forked("darnet_pl", *SWEEP, cwd=home)
    assert result.returncode == 0, explain(result)
    folder = home / "outputs" / "smoke_ablation" / "sweep"
    return Sweep(home, folder, result.stdout + result.stderr, offline_runs(folder))


def test_each_job_is_one_run_grouped_by_its_experiment(sweep: Sweep) -> None:
    assert sorted(run.group for run in sweep.jobs) == sorted(GROUPS.values())
    for run in sweep.jobs:
        job = sweep.job_dir(run)
        experiment = job_experiment(job)
        assert experiment is not None and run.group == experiment.key  # the one definition (runs.naming)
        assert run.job_type == "fold1" and run.name == f"{run.group}/fold1"
        assert {"ablation", "data:synthetic", "debug:tiny"} <= set(run.tags)
        assert run.id == (job / "wandb_run_id.txt").read_text().strip() and run.exit_code == 0


def test_config_is_the_resolved_config_and_the_commit(sweep: Sweep) -> None:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
    changes = subprocess.run(
        ["git", "status", "--porcelain", "--", "src", "conf"], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout.strip()
    for run in sweep.jobs:
        resolved = yaml.safe_load((sweep.job_dir(run) / "config_resolved.yaml").read_text())
        for key in ("task_name", "fold", "seed", "data", "model", "trainer", "callbacks"):
            assert run.config[key] == resolved[key], key
        assert run.config_value("model.attention") == run.group.split("/")[1]
        assert run.config_value("model.optimizer.lr") == 1e-4
        assert run.config["git_commit"] == head + ("+changes" if changes else "") and len(head) == 40


def test_summary_holds_the_best_validation_value_and_the_selected_checkpoint(sweep: Sweep) -> None:
    for run in sweep.jobs:
        job = sweep.job_dir(run)
        losses = [row["val/loss"] for row in run.history if "val/loss" in row]
        assert losses and run.summary["val/loss"] == {"min": min(losses), "last": losses[-1]}
        epoch = run.summary["selected/epoch"]
        assert (job / "checkpoints" / f"epoch{epoch:03d}.ckpt").is_file()  # the checkpoint that was tested
        assert run.summary["selected/val/loss"] == min(losses)
        selected_row = [row for row in run.history if "val/loss" in row][losses.index(min(losses))]
        for key, value in selected_row.items():
            if key.startswith("val/"):
                assert run.summary[f"selected/{key}"] == pytest.approx(value), key
        tested = json.loads((job / "test_metrics.json").read_text())
        assert any(key.startswith("test/patient/") for key in tested)
        for key, value in tested.items():
            logged = run.summary[key]
            assert (math.isnan(value) and math.isnan(logged)) or logged == pytest.approx(value, abs=1e-6), key


def test_the_console_has_one_wandb_line_per_run(sweep: Sweep) -> None:
    lines = [line for line in sweep.output.splitlines() if "W&B" in line or "wandb:" in line]
    assert len(lines) == len(sweep.runs) == 3, lines  # two jobs and the report
    folders = sorted(str(run.folder.relative_to(sweep.home)) for run in sweep.runs)
    assert sorted(line.rsplit("wandb sync ", 1)[1] for line in lines) == folders
    assert all("W&B offline run: " in line for line in lines), lines


def test_the_report_run_mirrors_the_sweeps_report(sweep: Sweep) -> None:
    [report] = [run for run in sweep.runs if run.job_type == "report"]
    assert (report.group, report.name) == ("smoke_ablation", "smoke_ablation/report")
    assert report.folder.parent == sweep.folder / "report" / "wandb"
    columns, rows = report.table("table_iv")
    written = (sweep.folder / "report" / "table_iv.csv").read_text().splitlines()
    assert ",".join(columns) == written[0] and len(rows) == len(written) - 1
    methods = {row[columns.index("method")] for row in rows}
    assert methods == {"DARNet", "DARNet (w/o DA and CA)"}
    figures = {p.stem.replace("_", "/", 1) for p in (sweep.folder / "report").glob("*.png")}
    assert set(report.image_keys()) == figures and {"roc/dual", "confusion/none", "reliability/dual"} <= figures
    [artifact] = [a for a in report.artifacts if a["type"] == "report"]
    assert {"report.json", "table_iv.csv"} <= set(artifact["files"])


def test_darnet_report_again_updates_the_same_report_run(sweep: Sweep) -> None:
    [first] = [run for run in sweep.runs if run.job_type == "report"]
    again = run_forked("darnet_pl.cli.report", sweep.folder, "--bootstrap", "20", cwd=sweep.home)
    assert again.returncode == 0, explain(again)
    assert sum("W&B offline run: " in line for line in again.stdout.splitlines()) == 1
    reports = offline_runs(sweep.folder / "report")
    assert len(reports) == 2 and {run.id for run in reports} == {first.id}
    assert (sweep.folder / "report" / "wandb_report_run_id.txt").read_text().strip() == first.id

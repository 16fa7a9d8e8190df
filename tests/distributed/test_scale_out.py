"""The multi-process paths a cluster takes, on CPU: DDP under a parallel launcher, a failing rank, SIGTERM under DDP,
and SLURM's task ranks (faked environment, real processes).

Each test runs the real entry point with ``trainer=ddp_cpu`` (2 gloo processes per job) on tiny data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from darnet_pl.utils.ranks import job_rank, local_rank, owns_job
from tests.helpers.cli import run_cli
from tests.helpers.user import REPO_ROOT

FAULT = "+callbacks.fault._target_=tests.helpers.rank_faults.RankFault"


@pytest.mark.parametrize(
    ("env", "rank", "local", "owner"),
    [
        ({}, 0, 0, True),  # a plain run
        ({"LOCAL_RANK": "1", "NODE_RANK": "0"}, 1, 1, False),  # an extra rank of our DDP launcher
        ({"LOCAL_RANK": "0", "NODE_RANK": "1", "LOCAL_WORLD_SIZE": "2"}, 2, 0, False),  # rank 0 of node 1
        ({"RANK": "3", "LOCAL_RANK": "1", "GROUP_RANK": "1"}, 3, 1, False),  # torchrun
        ({"RANK": "0", "LOCAL_RANK": "0"}, 0, 0, True),
        ({"SLURM_NTASKS": "4", "SLURM_PROCID": "2", "SLURM_LOCALID": "2"}, 2, 2, False),  # submitit, task 2
        ({"SLURM_NTASKS": "4", "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}, 0, 0, True),
        ({"SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}, 0, 0, True),  # sbatch, one task
        ({"SLURM_NTASKS": "1", "SLURM_PROCID": "0", "LOCAL_RANK": "1"}, 1, 1, False),  # our launcher inside SLURM
        ({"LOCAL_RANK": "junk"}, 0, 0, True),
    ],
)
def test_one_answer_to_which_process_owns_the_job(env: dict[str, str], rank: int, local: int, owner: bool) -> None:
    assert (job_rank(env), local_rank(env), owns_job(env)) == (rank, local, owner)


def _env(**extra: str) -> dict[str, str]:
    """The test's environment, with this repository importable (for the fault callback) and warnings off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "DARNET_"))}
    env.update(WANDB_MODE="offline", PYTHONWARNINGS="ignore", PYTHONPATH=str(REPO_ROOT), **extra)
    return env


@pytest.mark.slow
def test_ddp_jobs_under_the_parallel_launcher_and_a_failing_rank_stays_in_its_job(tmp_path: Path) -> None:
    """Two DDP jobs at once (local_parallel, 2 ranks each); in fold 1 rank 1 crashes, in fold 2 rank 1 alone sees a
    non-finite loss: those jobs fail with failed.json, the sweep goes on, fold 0 finishes and is reported."""
    command = [sys.executable, "-m", "darnet_pl", "+experiment=smoke", "debug=tiny", "trainer=ddp_cpu", "fold=0..2"]
    command += ["-m", "hydra/launcher=local_parallel", "hydra.launcher.n_jobs=2"]
    command += [FAULT, "+callbacks.fault.raise_in_fold=1", "+callbacks.fault.nan_in_fold=2"]
    result = subprocess.run(
        command,
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    sweep = tmp_path / "outputs" / "smoke" / "sweep" / "dual" / "debug=tiny"
    assert result.returncode == 1, result.stderr[-3000:]  # some jobs failed: the sweep says so at its end
    assert (sweep / "fold0" / "test_metrics.json").is_file(), result.stderr[-3000:]
    assert (sweep / "fold0" / "ddp_rank1.log").is_file()  # both ranks ran the job, each with its log
    crashed = json.loads((sweep / "fold1" / "failed.json").read_text())["error"]
    assert crashed.startswith("RankFailed: DDP rank 1 (process ") and "exited with code 1" in crashed, crashed
    assert str(sweep / "fold1" / "ddp_rank1.log") in crashed
    nan = json.loads((sweep / "fold2" / "failed.json").read_text())["error"]
    assert "non-finite training loss" in nan and "on at least one of 2 processes" in nan, nan
    assert (tmp_path / "outputs" / "smoke" / "sweep" / "report" / "report.json").is_file()
    assert "2 job(s) of" in result.stderr and "failed" in result.stderr


def _history(run_dir: Path) -> list[str]:
    import csv

    with (run_dir / "csv" / "metrics.csv").open(newline="") as handle:
        return [r["epoch"] for r in csv.DictReader(handle) if r.get("val/loss")]


@pytest.mark.slow
def test_sigterm_under_ddp_saves_the_mid_epoch_state_and_says_so(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    common = ("+experiment=smoke", "debug=tiny", "trainer=ddp_cpu", "trainer.max_epochs=2", f"hydra.run.dir={run_dir}")
    stopped = subprocess.run(
        [sys.executable, "-m", "darnet_pl", *common, FAULT, "+callbacks.fault.sigterm_at=[1,1]"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    state = torch.load(last, weights_only=True)
    assert state["epoch"] == 1
    assert state["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 1, "batches_done": 2}]
    said = [line for line in stopped.stderr.splitlines() if line.startswith("stopped by SIGTERM")]
    assert len(said) == 1, stopped.stderr[-3000:]  # rank 0 says it, once
    assert said[0].startswith(f"stopped by SIGTERM; {last} holds the training state (epoch 1, after batch 2 of ")
    assert said[0].endswith(f"to resume, add hydra.run.dir={run_dir} to the command")

    resumed = run_cli(*common, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (run_dir / "test_metrics.json").is_file()
    assert _history(run_dir) == ["0", "1"]  # epoch 1 finished after the resume, nothing trained twice


@pytest.mark.slow
def test_slurm_tasks_of_one_job_train_together(tmp_path: Path) -> None:
    """Under submitit every task runs the whole command and only SLURM_* tell them apart: task 0 owns the job, task
    1 trains beside it (no job lock race, no rank waiting for a partner that skipped the job)."""
    run_dir = tmp_path / "run"
    slurm = {
        "SLURM_NTASKS": "2",
        "SLURM_NTASKS_PER_NODE": "2",
        "SLURM_NNODES": "1",
        "SLURM_NODEID": "0",
        "SLURM_NODELIST": "localhost",
        "SLURM_JOB_ID": str(40000 + os.getpid() % 9000),
        "SLURM_JOB_NAME": "darnet",
    }
    command = [sys.executable, "-m", "darnet_pl", "+experiment=smoke", "debug=tiny", "trainer=ddp_cpu"]
    tasks = [
        subprocess.Popen(
            [*command, f"hydra.run.dir={run_dir}"],
            cwd=tmp_path,
            env=_env(**slurm, SLURM_PROCID=str(task), SLURM_LOCALID=str(task)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for task in (0, 1)
    ]
    deadline = time.monotonic() + 600
    outputs = []
    for task in tasks:
        try:
            outputs.append(task.communicate(timeout=max(1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            for t in tasks:
                t.send_signal(signal.SIGKILL)
            pytest.fail("the SLURM tasks did not finish: a rank waits for a partner")
    assert [t.returncode for t in tasks] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    assert not any("running in" in err for _, err in outputs)  # no task found the job 'busy'
    assert (run_dir / "test_metrics.json").is_file() and (run_dir / "ddp_rank1.log").is_file()

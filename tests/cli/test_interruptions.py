"""Interruptions stop everything a command started: Ctrl-C (SIGINT to the whole process group, as a terminal sends
it) and SIGTERM (``kill``, a batch system) during ``darnet-prepare``'s conversion, ``darnet-audit``'s reading and
training with loader workers end with one line (what was kept, how to continue), exit 130/143, no traceback, no
process of the command alive after it returned and nothing written after that. Through the real entry points.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.helpers.ccii_tree import ccii_scans, make_ccii_tree
from tests.helpers.cli import env_under
from tests.helpers.faults import hidden, only_line
from tests.helpers.interrupts import (
    ctrl_c,
    finish,
    group_members,
    left_running,
    start,
    unchanged_after,
    wait_until,
)
from tests.helpers.user import REPO_ROOT, run_module

SCANS = ccii_scans(patients=(40, 40, 40), slices=20)
"""120 scans: enough conversion work for a stop to land part-way, on any machine."""
PREPARE = ("data=ccii", "data.split=stratified", "data.n_folds=2", "data.size=[16,64,64]", "data.source.workers=2")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("interruptions") / "CC-CCII"
    make_ccii_tree(root, SCANS, size=128)
    return root


def start_prepare(root: Path, cwd: Path):
    args = ("-m", "darnet_pl.cli.prepare", *PREPARE, f"data.root={root}", "+data.source.progress=false")
    return start(args, cwd, env_under(cwd))


def volumes(cwd: Path) -> list[Path]:
    """The converted volumes (not a worker's temporary file, hidden until its volume is complete)."""
    return sorted(path for path in (cwd / "data" / "cache").rglob("*.npy") if not path.name.startswith("."))


@pytest.mark.slow
def test_sigterm_during_prepare_stops_the_workers_keeps_the_volumes_and_the_rerun_converts_the_rest(tree, tmp_path):
    process = start_prepare(tree, tmp_path)
    wait_until(lambda: bool(volumes(tmp_path)), process)
    process.send_signal(signal.SIGTERM)
    code, _, stderr = finish(process)
    assert code == 143, stderr
    assert left_running(process) == []
    assert unchanged_after(tmp_path / "data")
    (cache,) = (tmp_path / "data" / "cache" / "ccii").iterdir()
    done = len(volumes(tmp_path))
    assert 1 <= done < len(SCANS), "the stop landed part-way"
    assert only_line(stderr) == (
        f"stopped by SIGTERM: {done} of {len(SCANS)} scan(s) are converted and kept in {cache}; "
        "run the same command again to convert the rest"
    )
    assert hidden(cache) == []  # no half-written volume
    assert json.loads((cache / "ingest_report.json").read_text())["aborted"] is True

    again = run_module("darnet_pl.cli.prepare", *PREPARE, f"data.root={tree}", cwd=tmp_path, env=env_under(tmp_path))
    assert again.returncode == 0, again.stderr
    assert f"ingest: {len(SCANS) - done} converted, {done} reused, 0 failed" in again.stdout


@pytest.mark.slow
def test_ctrl_c_during_prepare_is_one_line_from_the_parent_and_no_worker_traceback(tree, tmp_path):
    process = start_prepare(tree, tmp_path)
    wait_until(lambda: bool(volumes(tmp_path)), process)
    ctrl_c(process)  # the workers get it too, as from a terminal
    code, _, stderr = finish(process)
    assert code == 130, stderr
    assert only_line(stderr).startswith("stopped by Ctrl-C: ") and "run the same command again" in stderr
    assert left_running(process) == []
    assert unchanged_after(tmp_path / "data")
    assert hidden(tmp_path / "data") == []


@pytest.mark.slow
def test_kill_9_of_prepare_takes_its_workers_with_it(tree, tmp_path):
    process = start_prepare(tree, tmp_path)
    wait_until(lambda: bool(volumes(tmp_path)), process)
    process.send_signal(signal.SIGKILL)  # no handler runs: the kernel's parent-death signal stops the workers
    finish(process)  # returns once the workers let go of its output pipes too
    deadline = time.monotonic() + 20
    while group_members(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert group_members(process.pid) == []
    assert unchanged_after(tmp_path / "data")
    assert hidden(tmp_path / "data") == []  # each worker unwound its volume in progress


@pytest.mark.slow
@pytest.mark.parametrize(("stop", "code", "by"), [("sigterm", 143, "SIGTERM"), ("ctrl_c", 130, "Ctrl-C")])
def test_audit_stopped_while_reading_stops_its_readers_and_writes_nothing(tree, tmp_path, stop, code, by):
    args = ("-m", "darnet_pl.cli.audit", "data=ccii", f"data.root={tree}", "audit.workers=2", f"audit.out={tmp_path}")
    process = start(args, tmp_path, env_under(tmp_path))
    wait_until(lambda: sum("spawn_main" in p for p in group_members(process.pid)) >= 2, process)
    process.send_signal(signal.SIGTERM) if stop == "sigterm" else ctrl_c(process)
    returned, _, stderr = finish(process)
    assert returned == code, stderr
    assert only_line(stderr) == f"stopped by {by}: nothing written (audit.json comes at the end); run the command again"
    assert left_running(process) == []
    assert not (tmp_path / "audit.json").exists()


TINY = ("-m", "darnet_pl", "+experiment=smoke", "debug=tiny", "data.num_workers=2", "logger=csv")
STOP_AT = "+callbacks.stop._target_=tests.helpers.interrupts.SignalAt"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stage", "signum", "code"),
    [("train", "SIGINT", 130), ("test", "SIGTERM", 143)],
    ids=["ctrl_c_in_training", "sigterm_while_testing"],
)
def test_training_stopped_with_loader_workers_says_how_to_resume(tmp_path, stage, signum, code):
    run = tmp_path / "run"
    # batch 0: a SIGTERM during a loop's last batch lets the loop finish (Lightning checks between batches)
    stop = (STOP_AT, f"+callbacks.stop.stage={stage}", "+callbacks.stop.batch=0", f"+callbacks.stop.signum={signum}")
    env = {**env_under(tmp_path), "PYTHONPATH": str(REPO_ROOT)}  # the stopping callback lives in tests/
    process = start((*TINY, f"hydra.run.dir={run}", *stop), tmp_path, env)
    returned, _, stderr = finish(process, timeout=300)
    assert returned == code, stderr[-3000:]
    assert "Traceback" not in stderr
    last = run / "checkpoints" / "last.ckpt"
    if stage == "train":  # Ctrl-C during the first epoch: nothing to resume from yet
        expected = "stopped by Ctrl-C during the first epoch: no checkpoint to resume from"
    else:  # the same resume line as a SIGTERM during training, saying what was kept
        expected = (
            f"stopped by SIGTERM; training had finished ({last} holds it); the best checkpoint was being tested; "
            f"to resume, add hydra.run.dir={run} to the command"
        )
    assert stderr.strip().splitlines()[-1] == expected
    assert left_running(process) == []  # the loader workers too
    assert unchanged_after(run)
    assert not (run / "test_metrics.json").exists()

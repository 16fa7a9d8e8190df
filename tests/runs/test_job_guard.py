"""The job lock: one process runs a job at a time, and a finished job leaves no ``.job.lock`` in its folder.

The lock file is removed by its holder while the lock is held; the case that makes that delicate - a second
process that opened the file before the removal and obtains the lock after the release - is replayed exactly.
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from darnet_pl.runs.job_guard import LOCK_FILE, JobBusy, job_lock


def test_a_finished_or_failed_job_leaves_no_lock_file(tmp_path: Path) -> None:
    with job_lock(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text().startswith("process ")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError), job_lock(tmp_path):
        raise RuntimeError("the job failed")
    assert list(tmp_path.iterdir()) == []


def test_a_job_running_in_another_process_is_busy_and_its_lock_file_stays(tmp_path: Path) -> None:
    hold = f"from darnet_pl.runs.job_guard import job_lock\nimport time\nwith job_lock({str(tmp_path)!r}):\n"
    hold += "    print('held', flush=True)\n    time.sleep(60)\n"
    holder = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        busy = f"this job is running in process {holder.pid}; skipped here"
        with pytest.raises(JobBusy, match=busy), job_lock(tmp_path):
            pass
        assert (tmp_path / LOCK_FILE).is_file()
    finally:
        holder.kill()
        holder.communicate()
    with job_lock(tmp_path):  # killed: the kernel dropped its lock, the file it left is taken over
        pass
    assert list(tmp_path.iterdir()) == []


def test_a_lock_obtained_on_a_file_its_holder_just_removed_is_not_taken(tmp_path, monkeypatch) -> None:
    """Between this process's open and its flock, the holder finishes (removes the file, lets go) and a third
    process creates a new lock file and locks it. The stale file's lock is free, but taking it would make two
    holders: the job is busy."""
    path = tmp_path / LOCK_FILE
    path.write_text("process 1")
    real_flock = fcntl.flock
    third: list = []

    def holder_finishes_meanwhile(handle, operation):
        if not third:
            path.unlink()
            third.append(path.open("a+"))
            real_flock(third[0], fcntl.LOCK_EX | fcntl.LOCK_NB)
            third[0].write("process 3")
            third[0].flush()
        return real_flock(handle, operation)

    monkeypatch.setattr(fcntl, "flock", holder_finishes_meanwhile)
    try:
        with pytest.raises(JobBusy, match="running in process 3"), job_lock(tmp_path):
            pass
    finally:
        third[0].close()
    monkeypatch.undo()
    started = time.monotonic()
    with job_lock(tmp_path):  # the third process is gone: free again
        pass
    assert time.monotonic() - started < 5 and list(tmp_path.iterdir()) == []

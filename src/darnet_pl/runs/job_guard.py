"""What a sweep job leaves in its folder besides results: a lock while it runs, a record when it fails.

- Lock: two copies of the same sweep (typed twice, or a re-submitted cluster array) would both train every job and
  append to the same CSV. Each job holds an exclusive ``flock`` on ``<job>/.job.lock`` while it runs; a second copy
  finds it held and skips the job, saying so. The kernel drops the lock when the process dies, even by ``kill -9``,
  so a crashed job never blocks its re-run (its file stays; the next holder takes it over).
  A finished job leaves no lock file: the holder removes it while still holding the lock, then lets go. Removing a
  locked file is safe only with a check on the other side, since a second process may have opened the file before
  the removal and obtain the lock after the release, on a file no longer in the folder, while a third creates a new
  one and locks that: two holders. So a process that obtains the lock checks that the file it locked is still the
  one at ``<job>/.job.lock`` (same device and inode) and otherwise starts over; the file at that path is then the
  only one that can be held, and it can only be removed by its holder.
- Failure record: a failed job writes ``<job>/failed.json`` (the one-line reason), so the end-of-sweep report and a
  user reading the folder see which jobs failed and why, whichever launcher ran them; a successful re-run removes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from darnet_pl.runs.layout import FAILED_FILE
from darnet_pl.utils.io import write_json_atomic
from darnet_pl.utils.ranks import owns_job

LOCK_FILE = ".job.lock"


class JobBusy(RuntimeError):
    """Another process is running this job right now."""


@contextlib.contextmanager
def job_lock(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Hold ``<folder>/.job.lock`` exclusively for the duration; ``JobBusy`` if another process holds it."""
    if not owns_job():  # the other ranks of a DDP job run in the same folder beside its owner
        yield
        return
    path = Path(folder) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = _hold(path, folder)
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()}")
        handle.flush()
        yield
    finally:
        path.unlink(missing_ok=True)  # still holding the lock: see the module's docstring
        handle.close()


def _hold(path: Path, folder: str | os.PathLike[str]) -> IO[str]:
    """``path`` opened and exclusively locked, making sure the locked file is the one at ``path`` (not one its
    previous holder removed between our open and our lock); ``JobBusy`` if another process holds it."""
    while True:
        handle = path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise JobBusy(f"{folder}: this job is running in {owner}; skipped here") from None
        locked = os.fstat(handle.fileno())
        try:
            current = path.stat()
        except FileNotFoundError:
            current = None
        if current is not None and (current.st_dev, current.st_ino) == (locked.st_dev, locked.st_ino):
            return handle
        handle.close()  # its holder finished and removed it meanwhile: take the file now at the path


def record_failure(folder: str | os.PathLike[str], message: str, traceback: str | None = None) -> None:
    """``failed.json``: the one-line reason, and the traceback where the cause is a bug rather than the input."""
    write_json_atomic(Path(folder) / FAILED_FILE, {"error": message, "traceback": traceback})


def clear_failure(folder: str | os.PathLike[str]) -> None:
    (Path(folder) / FAILED_FILE).unlink(missing_ok=True)


def failed_jobs(sweep_dir: str | os.PathLike[str]) -> list[tuple[Path, str]]:
    """(job folder, reason) of every job below ``sweep_dir`` whose last attempt failed."""
    return [
        (record.parent, failure_reason(record.parent) or "failed")
        for record in sorted(Path(sweep_dir).rglob(FAILED_FILE))
    ]


def failure_reason(folder: str | os.PathLike[str]) -> str | None:
    """The one-line reason of ``<folder>/failed.json`` ("failed" when unreadable), None when the job has none."""
    record = Path(folder) / FAILED_FILE
    if not record.is_file():
        return None
    try:
        return str(json.loads(record.read_text(encoding="utf-8")).get("error", "failed"))
    except (OSError, ValueError, AttributeError):
        return "failed"


def lock_holder(folder: str | os.PathLike[str]) -> str | None:
    """Who runs the job in ``folder`` right now (``"process 123"``), or None when no process holds its lock.

    Read-only: the lock file is opened for reading and probed with a shared, non-blocking lock, released at once. A
    job that starts within those microseconds finds the lock taken and skips itself, saying so; nothing else.
    """
    path = Path(folder) / LOCK_FILE
    try:
        handle = path.open("r")
    except OSError:  # no lock file: never run by this version, or not readable
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "another process"
        except OSError:
            return None
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None

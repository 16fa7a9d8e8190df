"""A stop (Ctrl-C, SIGTERM) that lands at an awkward moment leaves nothing behind and does not hang the command.

Both were seen in ``darnet-prepare`` stopped during its conversion: a worker stopped just after its temporary file
was created left that empty hidden file in the cache, and a SIGTERM raised inside ``concurrent.futures.wait``,
which holds every future's lock, left the pool's own thread waiting for one of them at exit, for ever.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

import pytest

from darnet_pl.utils import io
from darnet_pl.utils.io import atomic_path, check_writable
from darnet_pl.utils.worker_pool import completed


@pytest.fixture
def stopped_after_creation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every temporary file is created, then a Ctrl-C arrives before its maker returns."""
    create = io._create_file

    def create_then_stop(path):
        create(path)
        raise KeyboardInterrupt

    monkeypatch.setattr(io, "_create_file", create_then_stop)


def test_a_stop_just_after_a_temporary_file_is_created_removes_it(stopped_after_creation, tmp_path):
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "CP__1__10.npy", suffix=".npy"):
        pytest.fail("the block must not run")
    with pytest.raises(KeyboardInterrupt):
        check_writable(tmp_path / "outputs")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["outputs"]


def test_temporary_files_get_the_usual_permissions(tmp_path):
    mask = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "table_iv.csv") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(mask)
    assert (tmp_path / "table_iv.csv").stat().st_mode & 0o777 == 0o640


def test_a_stop_signal_is_handled_between_waits_never_inside_concurrent_futures(tmp_path):
    class Stop(Exception):
        pass

    stacks: list[list[str]] = []

    def stop(signum, frame):
        stacks.append([entry.filename for entry in traceback.extract_stack(frame)])
        raise Stop

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(time.sleep, 1.0) for _ in range(3)]
            threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
            with pytest.raises(Stop):
                for _ in completed(futures):
                    pass
            assert signal.getsignal(signal.SIGTERM) is stop, "the handler is back in place"
            for future in futures:  # no lock of theirs is left held: the pool's thread can cancel them
                assert future._condition.acquire(timeout=1)
                future._condition.release()
    finally:
        signal.signal(signal.SIGTERM, previous)
    (stack,) = stacks
    assert not [name for name in stack if "concurrent" in name or name.endswith("threading.py")], stack


def test_a_stopped_workers_task_is_unwound_before_it_leaves(tmp_path):
    """The stop lands just after an atomic write's temporary file was made, before its ``with`` began (in the
    context manager's ``__enter__``): the worker finalises what the task left suspended before it exits."""
    import subprocess
    import sys

    task = (
        "import sys\n"
        "from darnet_pl.utils import worker_pool\n"
        "from darnet_pl.utils.io import atomic_path\n"
        "def task(path):\n"
        "    atomic_path(path).__enter__()\n"
        "    raise worker_pool._StopTask\n"
        "worker_pool._run_task(task, sys.argv[1])\n"
    )
    done = subprocess.run([sys.executable, "-c", task, str(tmp_path / "v.npy")], capture_output=True, text=True)
    assert done.returncode == 143, done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_stop_whose_handler_ignores_it_does_not_hide_the_other(monkeypatch):
    class Stop(Exception):
        pass

    def stop(signum, frame):
        raise Stop

    previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN), signal.SIGTERM: signal.SIGTERM}
    previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, stop)
    try:
        with ThreadPoolExecutor(1) as pool:
            futures = [pool.submit(time.sleep, 1.0)]
            threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT)).start()
            threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
            with pytest.raises(Stop):
                for _ in completed(futures):
                    pass
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN and signal.getsignal(signal.SIGTERM) is stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

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

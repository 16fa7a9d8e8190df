"""Stopping a command as a user or a batch system does, and checking that it stopped everything it started.

A command is started in its own process group (``start``), as a shell starts a foreground job: a terminal's Ctrl-C
is SIGINT to that whole group (``ctrl_c``), ``kill``/``scancel`` is SIGTERM to the command alone. After it returns,
``left_running`` lists the processes of the group still alive (Linux ``/proc``; zombies, already dead, aside) and
``unchanged_after`` checks that nothing goes on writing into its output.

``SignalAt`` is a Lightning callback a training run can be given on the command line
(``+callbacks.stop._target_=tests.helpers.interrupts.SignalAt``, with the repository on ``PYTHONPATH``): it sends
the signal from inside the run at a chosen batch, so the stop lands in the phase under test whatever the speed of
the machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import pytorch_lightning as pl

PROC = Path("/proc")


def start(args: Sequence[object], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """``python <args>`` in a new process group, SIGINT at its default (a test run in the background inherits it
    ignored, and Python then keeps ignoring it), output captured."""
    if not PROC.is_dir():
        pytest.skip("needs Linux /proc to see the processes a command leaves behind")
    return subprocess.Popen(
        [sys.executable, *map(str, args)], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True, preexec_fn=_default_sigint,
    )  # fmt: skip


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_until(condition: Callable[[], bool], process: subprocess.Popen[str], timeout: float = 240) -> None:
    """Poll ``condition`` until it holds; fails if the command ends or ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            _, stderr = process.communicate()
            pytest.fail(f"the command ended (exit {process.returncode}) before it could be stopped:\n{stderr[-3000:]}")
        assert time.monotonic() < deadline, "the moment to stop the command never came"
        time.sleep(0.01)


def ctrl_c(process: subprocess.Popen[str]) -> None:
    """SIGINT to the command's whole process group, workers included, as a terminal's Ctrl-C."""
    os.killpg(process.pid, signal.SIGINT)


def finish(process: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout, stderr


def group_members(pgid: int) -> list[str]:
    """``<pid> <command>`` of every live (not zombie) process of process group ``pgid``."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # ended meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "(comm)": state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(f"{entry.name} {command[:160]}")
    return found


def left_running(process: subprocess.Popen[str], settle_s: float = 10.0) -> list[str]:
    """The processes the (finished) command left alive in its group. A process already on its way out when the
    command returned (its memory released: no command line left; multiprocessing's resource tracker, which leaves
    when it reads the end of its pipe) is given ``settle_s`` to finish exiting, which under load takes a moment."""
    assert process.returncode is not None
    deadline = time.monotonic() + settle_s
    while (alive := group_members(process.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file below ``folder``."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def unchanged_after(folder: Path, seconds: float = 1.0) -> bool:
    """True when nothing below ``folder`` is created, removed or changed during ``seconds``."""
    before = snapshot(folder)
    time.sleep(seconds)
    return snapshot(folder) == before


class SignalAt(pl.Callback):
    """Sends ``signum`` (``SIGINT``: to the process group, as a terminal's Ctrl-C; ``SIGTERM``: to this process)
    at the start of batch ``batch`` of ``stage`` (``train`` or ``test``), once."""

    def __init__(self, stage: str = "train", batch: int = 1, signum: str = "SIGINT") -> None:
        self.stage, self.batch, self.signum = stage, batch, getattr(signal, signum)
        self.sent = False

    def _maybe(self, stage: str, batch_idx: int) -> None:
        if self.sent or stage != self.stage or batch_idx != self.batch:
            return
        self.sent = True
        if self.signum == signal.SIGINT:
            os.killpg(os.getpgid(0), signal.SIGINT)
        else:
            os.kill(os.getpid(), self.signum)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._maybe("train", batch_idx)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._maybe("test", batch_idx)

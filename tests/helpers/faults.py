"""Helpers of the fault tests (tests/inference, tests/report, tests/training): the console tools run as a user
runs them, and small tmpfs mounts that are full or read-only.

Permission bits do not stop root, so read-only and full folders are real mounts; where mounting is not allowed
(not root, no ``mount``, a container without the capability) the test is skipped with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.forked import run_forked


def run_tool(module: str, *args: object, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m <module> args...`` in ``cwd`` (an empty folder), as the console script would run it."""
    env = {k: v for k, v in os.environ.items() if k != "DARNET_FULL_ERROR"}
    return run_forked(module, *args, cwd=cwd, timeout=timeout, env=env)


def only_line(text: str) -> str:
    """The one line a tool printed (stderr); fails when it printed more, e.g. a traceback."""
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def every_file(folder: Path) -> list[str]:
    """Every file and folder below ``folder``, hidden ones included, as sorted relative paths."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def hidden(folder: Path) -> list[str]:
    """Leftover temporary files (atomic writes and staging folders start with a dot)."""
    return [name for name in every_file(folder) if any(part.startswith(".") for part in Path(name).parts)]


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "200k", read_only: bool = False) -> Iterator[Path]:
    """A fresh tmpfs of ``size`` at ``path`` (read-only if asked), unmounted afterwards whatever happens."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                             text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)  # still busy: detach it

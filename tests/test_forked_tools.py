"""The forked tool runner (tests.helpers.forked) gives what a fresh ``python -m`` gives: the fault tests' evidence
holds only if a forked run and a real interpreter print the same and exit the same."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.helpers.forked import PRELOAD, run_forked
from tests.helpers.user import run_module, user_env

PROBE = """
import atexit, multiprocessing, os, sys
atexit.register(lambda: print("atexit ran", flush=True))
print("cwd", os.getcwd())
print("argv", sys.argv[1:])
print("env", os.environ.get("PROBE_SETTING"), "WANDB_MODE" in os.environ)
print("main process", multiprocessing.parent_process() is None, multiprocessing.current_process().name)
print("to stderr", file=sys.stderr)
sys.stdout.flush()
os.system("echo from a child process")
how = sys.argv[1]
if how == "status":
    sys.exit(3)
if how == "message":
    raise SystemExit("error: a message")
if how == "error":
    raise RuntimeError("an error")
if how == "ctrl-c":
    raise KeyboardInterrupt
"""


@pytest.fixture
def probe_folder(tmp_path: Path) -> Path:
    (tmp_path / "probe_tool.py").write_text(textwrap.dedent(PROBE), encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("how", ["status", "message", "error", "ctrl-c", "end"])
def test_a_forked_run_prints_and_exits_as_a_fresh_interpreter(probe_folder: Path, how: str) -> None:
    env = user_env(PROBE_SETTING="a value")
    fresh = run_module("probe_tool", how, "two words", cwd=probe_folder, env=env, timeout=60)
    forked = run_forked("probe_tool", how, "two words", cwd=probe_folder, env=env, timeout=60)
    assert forked.returncode == fresh.returncode, (fresh, forked)
    assert forked.stdout == fresh.stdout, (fresh.stdout, forked.stdout)
    assert "main process True MainProcess" in forked.stdout and "atexit ran" in forked.stdout
    assert "env a value False" in forked.stdout  # the given environment, not the test process's
    if how in ("error", "ctrl-c"):  # the same error, its traceback's frames aside
        assert forked.stderr.splitlines()[-1] == fresh.stderr.splitlines()[-1]
    else:
        assert forked.stderr == fresh.stderr


def test_a_preloaded_module_cannot_run_as_main(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="imported by the server"):
        run_forked(PRELOAD[-1], cwd=tmp_path)

"""``python -m <module> args...`` as a new process forked from a server that has already imported the libraries.

A fault case runs a console tool to see one error line and an exit code. As a fresh interpreter each run pays 2-7 s
of imports (torch, Lightning, MONAI, W&B) for well under a second of its own work, and the suite runs some hundred
of them. Here each run is still a process of its own: its own argv, working folder, environment, standard output
and error (file descriptors 1 and 2, so its children write there too), exit status, signal dispositions, threads
and atexit handlers, and ``multiprocessing`` sees it as a main process. It is forked from a ``multiprocessing``
forkserver (one per xdist worker, started at first use) that imported the libraries once and started no thread.

What differs from ``python -m``: a warning a library raises while it is imported is printed by the server, once,
not by each tool. The README's commands (tests/e2e/test_readme.py), the console-output tests and the interrupt tests
(tests.helpers.interrupts) start real interpreters, and so does every process a tool starts itself (DDP ranks, the
parallel launcher's jobs, loader and ingest workers).
"""

from __future__ import annotations

import atexit
import contextlib
import locale
import multiprocessing
import multiprocessing.process
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
import warnings
from collections.abc import Mapping
from pathlib import Path

from tests.helpers.user import user_env

PRELOAD = (
    "torch",
    "pytorch_lightning",
    "monai.transforms",
    "matplotlib.pyplot",
    "darnet_pl.cli.train",  # what ``python -m darnet_pl`` (darnet_pl/__main__.py) runs
    "darnet_pl.training.run",
    "darnet_pl.cli.ensemble_options",
    "darnet_pl.inference.predict",
    "darnet_pl.inference.outputs",
    "darnet_pl.evaluation.evaluate",
    "darnet_pl.inference.export",
    "darnet_pl.report.writer",
    "darnet_pl.report.wandb_report",
)
"""What the server imports before it forks: the libraries and what the console tools import. Never a module that
is run as ``__main__`` itself (``darnet_pl.cli.report``): ``python -m`` runs such a module as its only copy. Never
one that holds a resource of the process at import: W&B makes its media folder then, and the first tool to exit
would remove it from under every later one."""

_context: multiprocessing.context.ForkServerContext | None = None


def run_forked(
    module: str, *args: object, cwd: Path, timeout: float = 600, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``tests.helpers.user.run_module`` (the same arguments, the same result: ``python -m module args`` in ``cwd``
    with the user's environment or ``env``, ``TimeoutExpired`` after ``timeout`` seconds), the process forked."""
    command = [sys.executable, "-m", module, *map(str, args)]
    if module in PRELOAD:
        raise ValueError(f"{module} is imported by the server: it cannot also run as __main__")
    with tempfile.TemporaryDirectory(prefix="forked-") as folder:
        out, err = Path(folder) / "stdout", Path(folder) / "stderr"
        process = _server().Process(
            target=_tool_process,
            args=(module, command[3:], str(cwd), dict(user_env() if env is None else env), str(out), str(err)),
        )
        process.start()
        process.join(timeout)
        if process.exitcode is None:
            process.kill()
            process.join()
            raise subprocess.TimeoutExpired(command, timeout, _read(out), _read(err))
        return subprocess.CompletedProcess(command, process.exitcode, _read(out), _read(err))


def _server() -> multiprocessing.context.ForkServerContext:
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(list(PRELOAD))
    return _context


def _read(path: Path) -> str:
    """A captured stream as ``text=True`` decodes it (the locale's encoding, universal newlines)."""
    return path.read_text(encoding=locale.getpreferredencoding(False)) if path.is_file() else ""


def _tool_process(module: str, args: list[str], cwd: str, env: dict[str, str], out: str, err: str) -> None:
    """In the forked process: become ``python -m module args`` started in ``cwd`` with ``env``, run, exit."""
    # a main process again for multiprocessing (a tool's own workers, parent_process() checks)
    multiprocessing.process._parent_process = None  # type: ignore[attr-defined]
    multiprocessing.current_process().name = "MainProcess"
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    for fd, path in ((1, out), (2, err)):
        opened = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(opened, fd)
        os.close(opened)
    sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 - the process's stdin until it exits
    sys.stdout = sys.__stdout__ = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115 - a pipe's buffering
    sys.stderr = sys.__stderr__ = open(  # noqa: SIM115 - line buffered, as Python's stderr
        2, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False
    )
    for option in filter(None, env.get("PYTHONWARNINGS", "").split(",")):
        if option != "ignore":
            raise ValueError(f"PYTHONWARNINGS={option!r}: only 'ignore' is supported here")
        warnings.simplefilter("ignore")
    sys.argv = ["-m", *args]
    sys.path.insert(0, cwd)  # python -m puts the working folder first
    os._exit(_run_as_main(module))


def _run_as_main(module: str) -> int:
    """Run the module as ``__main__`` and end as the interpreter does: the exit status of its ``SystemExit`` (a
    message printed, status 1), a traceback and status 1 for an error, death by SIGINT for an uncaught Ctrl-C;
    then threads joined, atexit handlers run, streams flushed."""
    interrupted = False
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        status = 0
    except SystemExit as stop:
        status = _status_of(stop.code)
    except KeyboardInterrupt:
        traceback.print_exc()
        status, interrupted = 130, True
    except BaseException:
        sys.excepthook(*sys.exc_info())
        status = 1
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed by the tool
            stream.flush()
    if interrupted:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return status


def _status_of(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1

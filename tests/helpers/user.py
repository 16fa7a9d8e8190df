"""Commands run the way a user runs them: in their own folder, with only the environment a user has.

No output-folder override, no test-only variables: the project's ``DARNET_*``/``HYDRA_*`` settings, CUDA pinning and
W&B's mode are removed from the environment (W&B must be offline by the project's own default), and the virtual
environment's ``bin`` comes first on ``PATH``, as after ``source .venv/bin/activate``.

``run_module`` is the one way the tests run ``python -m <module>`` as a subprocess: with the user's environment by
default, or with the environment a caller gives (tests.helpers.cli, tests.helpers.faults).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
_NOT_A_USERS = ("DARNET_", "HYDRA_", "WANDB_", "PYTEST_")
_ALSO_NOT = ("CUDA_VISIBLE_DEVICES", "PYTHONWARNINGS", "PYTHONPATH")


def user_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_A_USERS) and k not in _ALSO_NOT}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def run_module(
    module: str, *args: object, cwd: Path, timeout: float = 600, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m <module> <args>`` (this interpreter, each argument as ``str``) in ``cwd``, its output captured as
    text; ``env``: the whole environment to run it with, instead of the user's (``user_env()``)."""
    return _run([sys.executable, "-m", module, *map(str, args)], cwd, timeout, user_env() if env is None else env)


def run_as_typed(command: str, cwd: Path, timeout: int = 600, **env: str) -> subprocess.CompletedProcess[str]:
    """Run one shell command line (globs and all) in ``cwd``; ``python`` is the project's interpreter."""
    return _run(command, cwd, timeout, user_env(**env))


def run_args(args: list[str], cwd: Path, timeout: int = 600, **env: str) -> subprocess.CompletedProcess[str]:
    return run_as_typed(shlex.join(args), cwd, timeout, **env)


def _run(
    command: str | Sequence[str], cwd: Path, timeout: float, env: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    """A command line through the shell, an argument list without one; output captured as text."""
    return subprocess.run(
        command, shell=isinstance(command, str), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def explain(result: subprocess.CompletedProcess[str]) -> str:
    """The end of a command's output, for an assertion message."""
    head = f"$ {result.args}\nexit {result.returncode}"
    return f"{head}\n--- stdout\n{result.stdout[-2500:]}\n--- stderr\n{result.stderr[-4000:]}"

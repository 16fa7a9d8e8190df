"""Commands run the way a user runs them: in their own folder, with only the environment a user has.

No output-folder override, no test-only variables: the project's ``DARNET_*``/``HYDRA_*`` settings, CUDA pinning and
W&B's mode are removed from the environment (W&B must be offline by the project's own default), and the virtual
environment's ``bin`` comes first on ``PATH``, as after ``source .venv/bin/activate``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
_NOT_A_USERS = ("DARNET_", "HYDRA_", "WANDB_", "PYTEST_")
_ALSO_NOT = ("CUDA_VISIBLE_DEVICES", "PYTHONWARNINGS", "PYTHONPATH")


def user_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_A_USERS) and k not in _ALSO_NOT}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def run_as_typed(command: str, cwd: Path, timeout: int = 600, **env: str) -> subprocess.CompletedProcess[str]:
    """Run one shell command line (globs and all) in ``cwd``; ``python`` is the project's interpreter."""
    return subprocess.run(
        command, shell=True, cwd=cwd, env=user_env(**env), capture_output=True, text=True, timeout=timeout
    )


def run_args(args: list[str], cwd: Path, timeout: int = 600, **env: str) -> subprocess.CompletedProcess[str]:
    return run_as_typed(shlex.join(args), cwd, timeout, **env)


def explain(result: subprocess.CompletedProcess[str]) -> str:
    """The end of a command's output, for an assertion message."""
    head = f"$ {result.args}\nexit {result.returncode}"
    return f"{head}\n--- stdout\n{result.stdout[-2500:]}\n--- stderr\n{result.stderr[-4000:]}"

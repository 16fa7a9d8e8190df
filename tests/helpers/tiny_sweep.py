"""The one tiny trained sweep of the test run: the README's tiny two-fold sweep, run as a user types it.

Tests that only read trained runs (their folders, checkpoints, console output) share it instead of training their
own; tests of training itself still train. It is read only: a test that writes into a run copies it first.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.once import made_once
from tests.helpers.user import run_args

COMMAND = ("python", "-m", "darnet_pl", "+experiment=smoke", "debug=tiny", "fold=0..1", "-m")
"""Two folds of one epoch at 16x32x32, width 4, the default CSV logger."""


@dataclass(frozen=True)
class TinySweep:
    home: Path  # the user's working folder the command ran in
    result: subprocess.CompletedProcess[str]  # what the command printed

    @property
    def folder(self) -> Path:
        return self.home / "outputs" / "smoke" / "sweep"

    def job(self, fold: int) -> Path:
        return self.folder / "dual" / "debug=tiny" / f"fold{fold}"


def _train(home: Path) -> dict[str, object]:
    result = run_args(list(COMMAND), home, timeout=900)
    return {"returncode": result.returncode, "stdout": result.stdout, "stderr": result.stderr}


def tiny_sweep(factory: pytest.TempPathFactory) -> TinySweep:
    home, printed = made_once(factory, "tiny-sweep", _train)
    result = subprocess.CompletedProcess(list(COMMAND), printed["returncode"], printed["stdout"], printed["stderr"])
    return TinySweep(home, result)

"""Shared test settings: no network, no W&B servers, one thread per xdist worker, the shared CC-CCII metadata
path, and what costs seconds to make and is only read: a tiny checkpoint and a tiny trained sweep."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HYDRA_FULL_ERROR", "0")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one worker per core: a worker (and every command it starts, which inherits the variables)
    # computes on one thread, so that the workers do not fight over the cores
    for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_variable] = "1"
    torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_CCII = REPO_ROOT.parent / "shared" / "ccii"


@pytest.fixture(scope="session")
def ccii_metadata() -> Path:
    """The real CC-CCII metadata folder (../shared/ccii); tests that need it skip where it is absent."""
    if not (SHARED_CCII / "darnet_paper_split.csv").is_file():
        pytest.skip(f"CC-CCII metadata not found at {SHARED_CCII}")
    return SHARED_CCII


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny trained DARNet checkpoint (16 x 32 x 32, dual attention), made once for every test that only needs
    some real checkpoint; tests.helpers.checkpoints makes it."""
    from tests.helpers.checkpoints import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("tiny-checkpoint") / "tiny.ckpt", seed=7)


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory: pytest.TempPathFactory):
    """``python -m darnet_pl +experiment=smoke debug=tiny fold=0..1 -m`` run once for the whole test run (all xdist
    workers) as a user types it, for the tests that only read trained runs: read only, copy what a test changes."""
    from tests.helpers.tiny_sweep import tiny_sweep

    return tiny_sweep(tmp_path_factory)


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    """An empty working folder inside the test's tmp_path, where a command is run as a user runs it."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    return folder

"""Shared test settings: no network, no W&B servers, small threads, and the shared CC-CCII metadata path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HYDRA_FULL_ERROR", "0")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_CCII = REPO_ROOT.parent / "shared" / "ccii"


@pytest.fixture(scope="session")
def ccii_metadata() -> Path:
    """The real CC-CCII metadata folder (../shared/ccii); tests that need it skip where it is absent."""
    if not (SHARED_CCII / "darnet_paper_split.csv").is_file():
        pytest.skip(f"CC-CCII metadata not found at {SHARED_CCII}")
    return SHARED_CCII

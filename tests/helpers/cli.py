"""Run the training command as a user does (a subprocess from a folder), or compose its config in-process."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hydra import compose, initialize_config_dir

from darnet_pl.cli.train import CONFIG_DIR
from tests.helpers.forked import run_forked


def compose_config(*overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


def run_cli(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `python -m darnet_pl` as a user would, with outputs under ``cwd`` (forked: tests.helpers.forked)."""
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONWARNINGS": "ignore"}
    for leaked in ("CUDA_VISIBLE_DEVICES", "DARNET_SWEEP_CUDA_VISIBLE_DEVICES"):  # tests are CPU runs
        env.pop(leaked, None)
    return run_forked("darnet_pl", *args, cwd=cwd, timeout=timeout, env=env)


def env_under(cwd: Path) -> dict[str, str]:
    """This process's environment with the data (``DARNET_DATA_DIR``) and the outputs (``DARNET_LOG_DIR``) kept under
    ``cwd``, and Python's warnings off."""
    return {
        **os.environ,
        "DARNET_LOG_DIR": str(cwd / "outputs"),
        "DARNET_DATA_DIR": str(cwd / "data"),
        "PYTHONWARNINGS": "ignore",
    }

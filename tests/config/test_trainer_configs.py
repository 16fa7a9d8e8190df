"""The GPU trainer configs turn on the cuDNN autotuner for the fixed input shape, unless determinism is asked for."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from darnet_pl.cli.train import CONFIG_DIR
from darnet_pl.config.resolvers import register_resolvers


def _trainer(*overrides: str) -> dict:
    register_resolvers()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    return cfg.trainer


@pytest.mark.parametrize("trainer", ["gpu", "ddp"])
def test_gpu_trainers_autotune_unless_deterministic(trainer: str) -> None:
    assert _trainer(f"trainer={trainer}").benchmark is True
    # Lightning warns, and cuDNN ignores its deterministic flag, when both are on: deterministic wins
    assert _trainer(f"trainer={trainer}", "deterministic=true").benchmark is False
    assert _trainer(f"trainer={trainer}", "trainer.benchmark=false").benchmark is False


def test_cpu_trainers_leave_cudnn_alone() -> None:
    assert "benchmark" not in _trainer("trainer=cpu") and "benchmark" not in _trainer()

"""The card's recipes use the machine they land on: every GPU, DDP for two or more, bf16 where supported.

GPUs are faked (device count, bf16 support): the choice is tested on CPU; DDP itself is tested with ddp_cpu."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from darnet_pl.distributed.ddp import HydraDDPStrategy
from darnet_pl.training.devices import DevicePlan, plan_devices, probe_and_plan, strategy_object
from tests.helpers.cli import compose_config


def _auto(**machine) -> DevicePlan:
    return plan_devices("auto", "auto", "auto", "auto", **machine)


def test_auto_uses_every_gpu_ddp_for_two_or_more_bf16_where_supported() -> None:
    assert _auto(gpu_count=0, gpu_bf16=False, cpu_bf16=False) == DevicePlan("cpu", 1, "auto", "32-true", False)
    assert _auto(gpu_count=0, gpu_bf16=False, cpu_bf16=True).precision == "bf16-mixed"
    assert _auto(gpu_count=1, gpu_bf16=True, cpu_bf16=False) == DevicePlan("gpu", 1, "auto", "bf16-mixed", False)
    assert _auto(gpu_count=2, gpu_bf16=True, cpu_bf16=False) == DevicePlan("gpu", 2, "ddp", "bf16-mixed", True)
    assert _auto(gpu_count=4, gpu_bf16=False, cpu_bf16=True) == DevicePlan("gpu", 4, "ddp", "32-true", True)


def test_explicit_settings_win_over_auto() -> None:
    plan = plan_devices("auto", 1, "auto", "32-true", gpu_count=4, gpu_bf16=True, cpu_bf16=False)
    assert plan == DevicePlan("gpu", 1, "auto", "32-true", False)
    assert plan_devices("cpu", "auto", "auto", "auto", gpu_count=4, gpu_bf16=True, cpu_bf16=False).accelerator == "cpu"


def test_the_plan_says_what_was_chosen() -> None:
    line = _auto(gpu_count=2, gpu_bf16=True, cpu_bf16=False).describe("NVIDIA H100")
    assert line == "devices: 2 GPUs (NVIDIA H100), DDP (global batch split over the devices), precision bf16-mixed"
    assert _auto(gpu_count=0, gpu_bf16=False, cpu_bf16=False).describe() == (
        "devices: 1 CPU process, one process, precision 32-true"
    )


def test_the_machine_is_probed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Fake GPU")
    plan, name = probe_and_plan("auto", "auto", "auto", "auto")
    assert plan == DevicePlan("gpu", 2, "ddp", "bf16-mixed", True) and name == "Fake GPU"
    strategy = strategy_object(plan)
    assert isinstance(strategy, HydraDDPStrategy) and strategy._process_group_backend == "nccl"


def test_the_card_recipes_train_on_the_machine_they_land_on(caplog: pytest.LogCaptureFixture) -> None:
    for recipe in ("darnet", "ablation", "shortcut_control", "search"):
        trainer = compose_config(f"+experiment={recipe}").trainer
        assert (trainer.accelerator, trainer.devices, trainer.strategy, trainer.precision) == ("auto",) * 4, recipe
    # on this CPU machine, trainer=auto is a CPU trainer, and says so
    cfg = compose_config("+experiment=smoke", "trainer=auto", "trainer.max_epochs=1")
    with caplog.at_level("INFO", logger="darnet_pl"):
        trainer = instantiate(cfg.trainer, callbacks=[], logger=False, default_root_dir=None, plugins=None)
    assert trainer.num_devices == 1 and type(trainer.accelerator).__name__ == "CPUAccelerator"
    assert any(r.getMessage().startswith("devices: 1 CPU process, one process") for r in caplog.records)

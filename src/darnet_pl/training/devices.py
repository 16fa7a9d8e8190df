"""Which devices, strategy and precision a run uses when its trainer config says ``auto`` (``trainer=auto``).

The card's command (``python -m darnet_pl +experiment=darnet fold=0..4 -m``) must use the machine it lands on
without another override: every visible GPU - one runs plain, two or more run the Hydra-aware DDP (each GPU loads
``batch_size / devices``: the global batch, hence the recipe, is unchanged) with BatchNorm over the global batch -
in bf16-mixed where the GPU supports it, else float32; no GPU: the CPU (bf16-mixed where it computes bfloat16
natively). Where the job runs is not part of the experiment (``runs.naming``), so the same sweep finds the same job
folders on any machine. Explicit settings (``trainer=cpu``, ``ddp_cpu``, ``gpu``, ``ddp``, ``slurm``) are kept as
they are.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

AUTO = ("auto", None, -1, "-1")
# CPU flags of native bfloat16 arithmetic. Without them oneDNN emulates bf16, or torch falls back to slow reference
# convolutions, and bf16 autocast is no faster (or much slower) than float32.
NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True where the CPU computes in bfloat16 natively (AVX512-BF16 or AMX). Linux only; False elsewhere."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in NATIVE_BF16_CPU_FLAGS)


@dataclass(frozen=True)
class DevicePlan:
    """What the trainer is given: accelerator, devices, strategy (``ddp`` or ``auto``), precision, BatchNorm sync."""

    accelerator: str
    devices: Any
    strategy: str
    precision: Any
    sync_batchnorm: bool

    def describe(self, gpu_name: str | None = None) -> str:
        """One line for the start of a run: what was chosen."""
        if self.accelerator == "gpu":
            what = f"{self.devices} GPU{'s' if self.devices != 1 else ''}" + (f" ({gpu_name})" if gpu_name else "")
        else:
            what = f"{self.devices} CPU process{'es' if self.devices not in (1, '1') else ''}"
        how = "DDP (global batch split over the devices)" if self.strategy == "ddp" else "one process"
        return f"devices: {what}, {how}, precision {self.precision}"


def plan_devices(
    accelerator: Any,
    devices: Any,
    strategy: Any,
    precision: Any,
    *,
    gpu_count: int,
    gpu_bf16: bool,
    cpu_bf16: bool,
) -> DevicePlan:
    """The plan for the given settings on a machine with ``gpu_count`` GPUs (pure: the caller probes the machine)."""
    use_gpu = accelerator in ("gpu", "cuda") or (accelerator in AUTO and gpu_count > 0)
    if use_gpu:
        count = gpu_count if devices in AUTO else devices
        n = len(count) if isinstance(count, list | tuple) else int(count)
        chosen_strategy = ("ddp" if n > 1 else "auto") if strategy in AUTO else strategy
        chosen_precision = ("bf16-mixed" if gpu_bf16 else "32-true") if precision in AUTO else precision
        return DevicePlan("gpu", count, chosen_strategy, chosen_precision, sync_batchnorm=n > 1)
    count = 1 if devices in AUTO else devices
    chosen_precision = ("bf16-mixed" if cpu_bf16 else "32-true") if precision in AUTO else precision
    chosen_strategy = "auto" if strategy in AUTO else strategy
    return DevicePlan("cpu", count, chosen_strategy, chosen_precision, sync_batchnorm=False)


def probe_and_plan(accelerator: Any, devices: Any, strategy: Any, precision: Any) -> tuple[DevicePlan, str | None]:
    """``plan_devices`` on this machine, and the first GPU's name (None without one)."""
    import torch

    gpu_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    gpu_bf16 = bool(gpu_count) and torch.cuda.is_bf16_supported()
    machine = {"gpu_count": gpu_count, "gpu_bf16": gpu_bf16, "cpu_bf16": cpu_has_native_bf16()}
    plan = plan_devices(accelerator, devices, strategy, precision, **machine)
    return plan, (torch.cuda.get_device_name(0) if gpu_count else None)


def strategy_object(plan: DevicePlan) -> Any:
    """The trainer's strategy for a plan: Hydra-aware DDP (NCCL on GPUs, gloo on CPUs) for ``ddp``."""
    if plan.strategy != "ddp":
        return plan.strategy
    from darnet_pl.distributed.ddp import HydraDDPStrategy

    return HydraDDPStrategy(process_group_backend="nccl" if plan.accelerator == "gpu" else "gloo")

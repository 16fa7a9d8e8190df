"""Speed options shared by training and the model benchmark: precision, memory format, compile, checkpointing.

They live in one place so that ``python -m darnet_pl.bench.model`` measures exactly what a training run does, and
so that the defaults (``conf/trainer/cpu.yaml``, ``conf/model/darnet.yaml``) are decided by measurement
(docs/explanation/speed.md) rather than by habit.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from darnet_pl.training.devices import cpu_has_native_bf16

log = logging.getLogger(__name__)

MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels_last_3d": torch.channels_last_3d}


def resolve_precision(precision: str | int | None, accelerator: str | None = None) -> str | int | None:
    """Lightning's precision for ``precision="auto"``: bf16-mixed on a CPU with native bf16, else 32-true.

    On any other accelerator ``auto`` means Lightning's default (32-true); GPU configs name their precision.
    Anything but ``auto`` is returned as is.
    """
    if precision != "auto":
        return precision
    on_cpu = accelerator == "cpu" or (accelerator in (None, "auto") and not torch.cuda.is_available())
    return "bf16-mixed" if on_cpu and cpu_has_native_bf16() else "32-true"


def make_trainer(precision: str | int | None = "auto", **kwargs: Any) -> Any:
    """``pytorch_lightning.Trainer`` with ``auto`` settings resolved for this machine.

    ``precision="auto"`` alone (``trainer=cpu``): see resolve_precision. With ``accelerator``/``devices`` ``auto`` too
    (``trainer=auto``, the card's recipes): every visible GPU, DDP for two or more, bf16 where supported
    (training.devices); one line says what was chosen.
    """
    import pytorch_lightning as pl

    from darnet_pl.training.devices import AUTO, probe_and_plan, strategy_object
    from darnet_pl.utils.ranks import owns_job

    if kwargs.get("accelerator") in AUTO and kwargs.get("devices") in AUTO:
        plan, gpu_name = probe_and_plan(
            kwargs.pop("accelerator"), kwargs.pop("devices"), kwargs.pop("strategy", "auto"), precision
        )
        if kwargs.pop("sync_batchnorm", "auto") in AUTO:
            kwargs["sync_batchnorm"] = plan.sync_batchnorm
        if owns_job():
            log.info("%s", plan.describe(gpu_name))
        return pl.Trainer(
            accelerator=plan.accelerator,
            devices=plan.devices,
            strategy=strategy_object(plan),
            precision=plan.precision,
            **kwargs,
        )
    resolved = resolve_precision(precision, kwargs.get("accelerator"))
    if precision == "auto":
        log.info("precision=auto -> %s", resolved)
    return pl.Trainer(precision=resolved, **kwargs)


def resolve_memory_format(name: str, accelerator: str, precision: str | int | None) -> str:
    """``auto``: ``channels_last_3d`` for bf16 on the CPU (measured fastest there, docs/explanation/speed.md),
    else contiguous.

    In float32 on the CPU channels_last_3d is slower than contiguous; on GPUs it has not been measured here.
    """
    if name != "auto":
        return name
    return "channels_last_3d" if accelerator == "cpu" and str(precision).startswith("bf16") else "contiguous"


def memory_format_of(name: str) -> torch.memory_format:
    try:
        return MEMORY_FORMATS[name]
    except KeyError:
        raise ValueError(f"memory_format must be one of {sorted(MEMORY_FORMATS)}, got {name!r}") from None


def apply_speed_options(
    net: nn.Module, memory_format: str = "contiguous", activation_checkpointing: bool = False, compile: bool = False
) -> nn.Module:
    """Set up ``net`` in place (parameters, names and state dict unchanged) and return it.

    - ``memory_format="channels_last_3d"`` stores conv weights NDHWC; activations follow, which suits oneDNN and
      cuDNN kernels.
    - ``activation_checkpointing`` recomputes each residual block in the backward pass instead of storing its
      activations (needs a model with an ``activation_checkpointing`` attribute, as DARNet has).
    - ``compile`` compiles the module with ``torch.compile`` (``nn.Module.compile``, which keeps the state-dict keys).
    """
    net.to(memory_format=memory_format_of(memory_format))
    if activation_checkpointing:
        if not hasattr(net, "activation_checkpointing"):
            raise ValueError(f"{type(net).__name__} does not support activation checkpointing")
        net.activation_checkpointing = True
    if compile:
        net.compile()
    return net

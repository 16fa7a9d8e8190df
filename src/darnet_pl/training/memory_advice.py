"""Out of GPU memory: say which settings of this run would fit, instead of a CUDA allocator dump.

DARNet at the paper's 64x224x224 needs roughly 3.7 GB of activations per volume in fp32 (docs/explanation/speed.md),
so a batch of 8 does not fit a 24 GB GPU as is. The remedies, in the order they cost the least: bf16 mixed precision
(about half the activation memory), activation checkpointing (recompute each block in the backward pass), a smaller
per-step batch with gradient accumulation (same effective batch), more GPUs (DDP splits the global batch).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from darnet_pl.utils.errors import OutOfMemoryAdvice


def out_of_memory_advice(settings: Mapping[str, Any], phase: str) -> OutOfMemoryAdvice:
    """One line: what ran out, the run's memory-relevant settings, and the overrides to try, cheapest first.

    ``settings``: ``precision``, ``batch_size`` (global), ``devices``, ``accumulate_grad_batches``,
    ``activation_checkpointing``, ``input_size``.
    """
    precision = str(settings.get("precision", "32-true"))
    batch = int(settings.get("batch_size", 1))
    devices = settings.get("devices", 1)
    accumulate = int(settings.get("accumulate_grad_batches") or 1)
    tips = []
    if not precision.startswith(("bf16", "16")):
        tips.append("trainer.precision=bf16-mixed")
    if not settings.get("activation_checkpointing"):
        tips.append("model.activation_checkpointing=true")
    if batch > 1:
        half = f"data.batch_size={max(1, batch // 2)} trainer.accumulate_grad_batches={accumulate * 2}"
        tips.append(f"{half} (same effective batch)")
    tips.append("trainer=ddp trainer.devices=N (splits the batch over N GPUs)")
    size = "x".join(str(s) for s in settings.get("input_size", ()))
    return OutOfMemoryAdvice(
        f"out of GPU memory during {phase} (input {size}, batch {batch} on {devices} device(s), precision "
        f"{precision}, activation checkpointing {'on' if settings.get('activation_checkpointing') else 'off'}); "
        f"try, in this order: {'; '.join(tips)}"
    )

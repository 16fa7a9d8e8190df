"""Training memory of DARNet at the paper's batch, counted rather than guessed, on any device.

What a GPU must hold for one training step is, apart from allocator slack and convolution workspaces: the weights,
their gradients and Adam's two moments, and the activations autograd saves for the backward pass. The second part
grows with the batch and is the one that decides whether the paper's batch of 8 at 64x224x224 fits. It is counted
here exactly, at batch 1, by recording every tensor autograd saves during a forward pass (each storage once), in
fp32 and under bf16 autocast, per residual block, and scaled to the batch (activations are linear in it). With
activation checkpointing a block keeps only its input during the forward pass, and its own activations exist again
while it is recomputed in the backward pass, one block at a time: peak = stem + block inputs + head + the largest
block.

These are lower bounds for a GPU's ``max_memory_allocated`` (no workspaces, no fragmentation); the GPU check
(``scripts/gpu_check.sh``) measures the real peak where a GPU is available. ``python -m darnet_pl.bench.memory``.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

from darnet_pl.models import DARNet, count_parameters

GIB = 2**30
STAGES = ("layer1", "layer2", "layer3", "layer4")


def _parts(net: DARNet) -> list[tuple[str, torch.nn.Module]]:
    """stem, the residual blocks (``layer1.0`` ...), head, in the order they run."""
    parts = [("stem", net.stem)]
    for stage in STAGES:
        parts += [(f"{stage}.{i}", block) for i, block in enumerate(getattr(net, stage))]
    return [*parts, ("head", net.pool), ("head", net.fc)]


class SavedBytes(NamedTuple):
    """One forward pass's account: bytes saved for backward per part, and the bytes of the blocks' inputs."""

    per_part: dict[str, int]
    block_inputs: int  # what checkpointing keeps per residual block: its input


def count_saved_bytes(net: DARNet, x: torch.Tensor, bf16: bool) -> SavedBytes:
    """Bytes autograd saves for backward during ``net(x)``, by part (stem, each residual block, head)."""
    current = ["stem"]
    block_inputs = [0]

    def enter(part: str, inputs: tuple[torch.Tensor, ...]) -> None:
        current[0] = part
        if part.startswith("layer"):
            block_inputs[0] += inputs[0].untyped_storage().nbytes()

    hooks = [
        module.register_forward_pre_hook(lambda _, inputs, part=part: enter(part, inputs))
        for part, module in _parts(net)
    ]
    # weights are saved by the convolutions too: they belong to the model state, counted apart
    seen: set[int] = {p.untyped_storage().data_ptr() for p in net.parameters()}
    per_part: dict[str, int] = defaultdict(int)

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            per_part[current[0]] += storage.nbytes()
        return tensor

    try:
        with (
            torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor),
            torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16),
        ):
            net(x).float().sum()
    finally:
        for hook in hooks:
            hook.remove()
    return SavedBytes(dict(per_part), block_inputs[0])


def run_memory_benchmark(
    size: Sequence[int] = (64, 224, 224), width: int = 64, batch: int = 8, attention: str = "dual"
) -> dict[str, Any]:
    """GiB of model state and of activations at ``batch``, fp32 and bf16, with and without checkpointing."""
    size = tuple(int(s) for s in size)
    net = DARNet(attention=attention, input_size=size, width=width).train()
    x = torch.rand(1, 1, *size)
    n_params = count_parameters(net)
    state_gib = n_params * 4 * 4 / GIB  # fp32 weights, gradients, Adam's two moments
    result: dict[str, Any] = {
        "size": list(size),
        "width": width,
        "batch": batch,
        "parameters": n_params,
        "model_state_gib": round(state_gib, 3),
        "method": "bytes autograd saves at batch 1 (each storage once) x batch; a lower bound of the GPU peak",
    }
    for precision, bf16 in (("fp32", False), ("bf16", True)):
        parts, block_inputs = count_saved_bytes(net, x, bf16)
        plain = sum(parts.values()) * batch
        kept = parts.get("stem", 0) + parts.get("head", 0) + block_inputs
        checkpointed = (kept + max(v for k, v in parts.items() if k.startswith("layer"))) * batch
        result[precision] = {
            "activations_gib": round(plain / GIB, 3),
            "activations_checkpointed_gib": round(checkpointed / GIB, 3),
            "total_gib": round(state_gib + plain / GIB, 3),
            "total_checkpointed_gib": round(state_gib + checkpointed / GIB, 3),
            "per_part_gib_at_batch": {k: round(v * batch / GIB, 3) for k, v in parts.items()},
        }
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=3, default=(64, 224, 224), metavar=("D", "H", "W"))
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args(argv)
    print(json.dumps(run_memory_benchmark(args.size, args.width, args.batch), indent=2))


if __name__ == "__main__":
    main()

"""The two attention gates of DARNet's dual-attention block (paper Sec. III-B).

Both are squeeze-and-excitation style: pool, two fully connected layers, a sigmoid gate that rescales the input.
The gate is an ``nn.Sequential`` named ``gate`` so explainers can read its output with a forward hook.

Layout: for a channels_last_3d feature map (NDHWC in memory, the CPU bf16 default) a reduction over H and W and
the broadcast rescaling's gradient (a reduction too) run through a strided slow path in PyTorch: 200-260 ms for
one 64x64x112x112 map, against 10-20 ms over the same memory viewed as (N, D, H, W, C). So both gates pool and
rescale in that view when the input is channels_last_3d (same values, other summation order); a contiguous input
takes the plain path.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous()


def _pool_and_rescale(x: torch.Tensor, gate: nn.Module, keep_depth: bool) -> torch.Tensor:
    """Mean over (H, W) -> (N, C, D), or over (D, H, W) -> (N, C); the gate; ``x`` times the gate's weights.

    For a channels_last_3d ``x`` everything runs on one NDHWC view of it, so that both gradient paths (through the
    pooling and through the product) meet there as same-layout tensors.
    """
    n, c, d = x.shape[:3]
    if not _channels_last(x):
        pooled = x.mean(dim=(3, 4)) if keep_depth else x.mean(dim=(2, 3, 4))
        weights = gate(pooled.reshape(n, -1)).reshape(n, c, d if keep_depth else 1, 1, 1)
        return x * weights
    ndhwc = x.permute(0, 2, 3, 4, 1)  # a contiguous view
    # a sum, divided afterwards: its backward is an expanded view, which adds fast to the product's gradient (the
    # backward of a mean materialises the division in a layout that makes that addition 10x slower)
    dims = (2, 3) if keep_depth else (1, 2, 3)
    pooled = ndhwc.sum(dim=dims) / math.prod(ndhwc.shape[i] for i in dims)
    pooled = pooled.transpose(1, 2) if keep_depth else pooled  # (N, C, D) or (N, C)
    weights = gate(pooled.reshape(n, -1)).reshape(n, c, d if keep_depth else 1, 1, 1)
    return (ndhwc * weights.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)


class ChannelAttention3d(nn.Module):
    """3D squeeze-and-excitation: one weight per channel from the global average over (D, H, W)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.gate = nn.Sequential(
            nn.Linear(channels, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _pool_and_rescale(x, self.gate, keep_depth=False)


class DepthAttention3d(nn.Module):
    """Depth-wise attention: one weight per (channel, slice) pair.

    Every (channel, depth) plane is averaged over H and W, the C*D vector goes through FC(C*D -> C*D/r), ReLU,
    FC(-> C*D) and a sigmoid, with r equal to the channel count, so the hidden layer has D units. The layer sizes
    depend on the feature map's depth, so the module is built for one depth and refuses any other.
    """

    def __init__(self, channels: int, depth: int) -> None:
        super().__init__()
        self.channels = channels
        self.depth = depth
        flat = channels * depth
        hidden = max(1, flat // channels)  # reduction r = C  ->  D hidden units
        self.gate = nn.Sequential(
            nn.Linear(flat, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, flat),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, d = x.shape[1:3]
        if c != self.channels or d != self.depth:
            raise ValueError(
                f"DepthAttention3d was built for {self.channels} channels x depth {self.depth}, "
                f"got a feature map of {c} channels x depth {d}"
            )
        return _pool_and_rescale(x, self.gate, keep_depth=True)

"""The two attention gates of DARNet's dual-attention block (paper Sec. III-B).

Both are squeeze-and-excitation style: pool, two fully connected layers, a sigmoid gate that rescales the input.
The gate is an ``nn.Sequential`` named ``gate`` so explainers can read its output with a forward hook.
"""

from __future__ import annotations

import torch
from torch import nn


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
        squeezed = x.mean(dim=(2, 3, 4))  # (N, C)
        weights = self.gate(squeezed)
        return x * weights[:, :, None, None, None]


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
        n, c, d = x.shape[:3]
        if c != self.channels or d != self.depth:
            raise ValueError(
                f"DepthAttention3d was built for {self.channels} channels x depth {self.depth}, "
                f"got a feature map of {c} channels x depth {d}"
            )
        squeezed = x.mean(dim=(3, 4)).reshape(n, c * d)  # (N, C*D)
        weights = self.gate(squeezed).reshape(n, c, d, 1, 1)
        return x * weights

"""DARNet: a 3D ResNet-18 whose residual blocks carry depth (DA) and channel (CA) attention.

Follows the paper (Shi et al., Sec. III) and the authors' public code: a (3, 7, 7) stem with stride (1, 2, 2) and no
max-pool, four stages of two basic blocks (stages 2-4 halve D, H and W), global average pooling and one linear
layer. Pure ``torch.nn``: no Lightning, no Hydra, no files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from darnet_pl.models.attention import ChannelAttention3d, DepthAttention3d
from darnet_pl.models.conv import Conv3d  # nn.Conv3d with a fix for CPU bf16 (see conv.py)

Attention = Literal["none", "ca", "da", "dual"]
ATTENTION_VARIANTS: tuple[str, ...] = ("none", "ca", "da", "dual")
STAGE_MULTIPLIERS = (1, 2, 4, 8)
STAGE_STRIDES = (1, 2, 2, 2)
BLOCKS_PER_STAGE = 2


def conv_output_length(length: int, kernel: int, stride: int, padding: int) -> int:
    """Length of one axis after a convolution (dilation 1)."""
    return (length + 2 * padding - kernel) // stride + 1


class DualAttentionBlock(nn.Module):
    """Basic residual block: conv-BN-ReLU-conv-BN, then DA, then CA on the residual branch, add, ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        depth_out: int,
        use_channel_attention: bool,
        use_depth_attention: bool,
        ca_reduction: int = 16,
    ) -> None:
        super().__init__()
        self.conv1 = Conv3d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = Conv3d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(out_channels)
        self.depth_attention = DepthAttention3d(out_channels, depth_out) if use_depth_attention else None
        self.channel_attention = ChannelAttention3d(out_channels, ca_reduction) if use_channel_attention else None
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                Conv3d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm3d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.depth_attention is not None:
            out = self.depth_attention(out)
        if self.channel_attention is not None:
            out = self.channel_attention(out)
        return self.relu(out + self.shortcut(x))


class GlobalAveragePool(nn.Module):
    """(N, C, D, H, W) -> (N, C) by a mean: unlike AdaptiveAvgPool3d, its CUDA backward is deterministic."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3, 4))


class DARNet(nn.Module):
    """Dual-Attention Residual Network for 3D CT classification.

    Args:
        attention: ``"none"``, ``"ca"``, ``"da"`` or ``"dual"`` (Table III/IV: w/o DA and CA, w/o DA, w/o CA, DARNet).
        in_channels: input channels (1 for CT).
        num_classes: number of output logits.
        input_size: the (D, H, W) the model is built for; DA layer sizes depend on D, and inputs of any other size
            are refused with a ValueError.
        width: channels of the first stage (64 in the paper); stages use width x (1, 2, 4, 8).
        ca_reduction: squeeze-and-excitation reduction ratio (16 in the paper).
    """

    def __init__(
        self,
        attention: Attention = "dual",
        in_channels: int = 1,
        num_classes: int = 3,
        input_size: Sequence[int] = (64, 224, 224),
        width: int = 64,
        ca_reduction: int = 16,
    ) -> None:
        super().__init__()
        if attention not in ATTENTION_VARIANTS:
            raise ValueError(f"attention must be one of {ATTENTION_VARIANTS}, got {attention!r}")
        if len(input_size) != 3 or min(input_size) < 1:
            raise ValueError(f"input_size must be three positive ints (D, H, W), got {tuple(input_size)}")
        self.attention = attention
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.input_size = tuple(int(s) for s in input_size)
        self.width = width
        use_ca = attention in ("ca", "dual")
        use_da = attention in ("da", "dual")

        depth = conv_output_length(self.input_size[0], kernel=3, stride=1, padding=1)
        self.stem = nn.Sequential(
            Conv3d(in_channels, width, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
        )
        stages = []
        channels = width
        for multiplier, stride in zip(STAGE_MULTIPLIERS, STAGE_STRIDES, strict=True):
            out_channels = width * multiplier
            blocks = []
            for index in range(BLOCKS_PER_STAGE):
                block_stride = stride if index == 0 else 1
                depth = conv_output_length(depth, kernel=3, stride=block_stride, padding=1)
                blocks.append(
                    DualAttentionBlock(channels, out_channels, block_stride, depth, use_ca, use_da, ca_reduction)
                )
                channels = out_channels
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = GlobalAveragePool()
        self.fc = nn.Linear(channels, num_classes)
        self.feature_channels = channels
        # recompute each residual block in the backward pass instead of storing its activations (less memory, ~30%
        # slower). Per block, not per stage: the first stage alone holds two thirds of the activations
        # (darnet_pl.bench.memory). BatchNorm running statistics are then updated twice per step.
        self.activation_checkpointing = False
        self._init_weights()

    def _init_weights(self) -> None:
        """Paper init: Kaiming-normal convs, unit BN, N(0, 0.01) linear layers, zero biases."""
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm3d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def check_input(self, x: torch.Tensor) -> None:
        """Refuse inputs the model was not built for, naming both shapes."""
        expected = (self.in_channels, *self.input_size)
        if x.ndim != 5 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"DARNet({self.attention}) expects input of shape (N, {', '.join(map(str, expected))}) "
                f"[N, C, D, H, W]; got {tuple(x.shape)}"
            )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last-stage feature map (N, 8*width, D/8, H/16, W/16): the input to pooling, used by CAM."""
        self.check_input(x)
        x = self.stem(x)
        recompute = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            if not recompute:
                x = stage(x)
                continue
            for block in stage:
                x = checkpoint(block, x, use_reentrant=False)
        return x

    def pooled_features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate features (N, 8*width): the pooled last stage, what the classifier reads.

        ``forward(x)`` is ``fc(pooled_features(x))``; the shortcut audit probes these for non-disease signals.
        """
        return self.pool(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pooled_features(x))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (what Table III reports)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

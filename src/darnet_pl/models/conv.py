"""A ``Conv3d`` that sidesteps a oneDNN bug in bfloat16 weight gradients on CPU.

oneDNN 3.12 (torch 2.13's CPU build; kernels ``jit_bf16:avx512_core_bf16`` and the emulated ``avx512_core``
path) returns garbage - reads of uninitialised memory, 1e30 or NaN, varying from call to call - for the *weight
gradient* of a bfloat16 3D convolution whose input depth is smaller than the kernel's depth (seen for input depth
2 with a depth-3 kernel and depths 2-4 with a depth-5 kernel, any stride; forward and input gradients are right).
DARNet hits it whenever its last stage is two slices deep, e.g. at 16x64x64, so ``precision=bf16-mixed`` on CPU
turned the smoke experiment's loss into NaN within a few batches. Such convolutions are tiny, so they simply run in
float32; every other convolution keeps bfloat16. See docs/explanation/speed.md for the stand-alone reproduction.
"""

from __future__ import annotations

import torch
from torch import nn


def _bf16_on_cpu(x: torch.Tensor) -> bool:
    """Would a convolution of ``x`` run in bfloat16 on the CPU (bf16 tensors, or bf16 autocast)?"""
    if x.device.type != "cpu":
        return False
    if x.dtype == torch.bfloat16:
        return True
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` (same parameters, same state dict) that runs in float32 where CPU bf16 is known to be wrong."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 5 and x.shape[2] < self.kernel_size[0] and _bf16_on_cpu(x):
            with torch.autocast("cpu", enabled=False):
                bias = None if self.bias is None else self.bias.float()
                out = self._conv_forward(x.float(), self.weight.float(), bias)
            return out.to(torch.bfloat16)  # the dtype the layer would have produced
        return super().forward(x)

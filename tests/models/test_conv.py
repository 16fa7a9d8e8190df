"""The CPU bf16 conv3d fix (models/conv.py): oneDNN's weight gradient of a shallow input is wrong without it."""

from __future__ import annotations

import pytest
import torch

from darnet_pl.bench.model import VARIANTS, run_variant
from darnet_pl.models.conv import Conv3d


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="oneDNN (mkldnn) CPU backend not available")
def test_cpu_bf16_weight_gradient_of_a_shallow_conv_is_right() -> None:
    """oneDNN's bf16 conv3d weight gradient is garbage when the input is shallower than the kernel (depth 2 < 3)."""
    torch.manual_seed(0)
    conv = Conv3d(32, 32, 3, padding=1, bias=False)
    x = torch.randn(4, 32, 2, 4, 4)
    reference = torch.autograd.grad(conv(x).square().sum(), conv.weight)[0]
    for _ in range(5):  # the bug read uninitialised memory: it came and went from call to call
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = conv(x)
        assert out.dtype == torch.bfloat16
        grad = torch.autograd.grad(out.float().square().sum(), conv.weight)[0]
        assert torch.isfinite(grad).all()
        assert (grad - reference).abs().max() <= 0.05 * reference.abs().max()


def test_bf16_training_steps_match_fp32_at_the_smoke_size() -> None:
    """Adam steps of DARNet at 16x64x64 (a depth-2 last stage) in bf16 autocast stay finite and near fp32."""
    losses = {
        name: run_variant(VARIANTS[name], size=(16, 64, 64), width=4, batch=4, repeats=4)["train"]["losses"]
        for name in ("fp32", "bf16")
    }
    assert all(abs(a - b) < 0.05 for a, b in zip(losses["fp32"], losses["bf16"], strict=True)), losses

"""BatchNorm over the global batch of all DDP processes, on any device and backend (pure torch).

``torch.nn.SyncBatchNorm`` refuses CPU tensors (its kernels are GPU-only), so DDP on CPU would normalise each
process's share of the batch by itself, and N processes would not train like one process with the whole batch.
``GlobalBatchNorm`` all-reduces the statistics instead; ``distributed.ddp.AllReduceSyncBatchNorm`` is the Lightning
plugin that swaps it in for training and back afterwards.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the gradient of a sum w.r.t. each addend is the summed upstream gradient."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        out = grad.contiguous().clone()
        dist.all_reduce(out)
        return out


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics cover the global batch of all processes, on any device and backend.

    Two autograd-aware all-reduces (sum, then sum of squared deviations, i.e. two-pass like BatchNorm itself), so
    the forward and backward equal those of one process holding the whole batch. Outside a multi-process group, or
    in eval mode, it is plain BatchNorm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {input.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        all_reduce = _AllReduceSum.apply
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        count = torch.tensor([xf.numel() / xf.shape[1]], dtype=torch.float32, device=x.device)
        totals = all_reduce(torch.cat([xf.sum(dims), count]))
        n = totals[-1]
        mean = totals[:-1] / n
        var = all_reduce(((xf - mean.view(shape)) ** 2).sum(dims)) / n
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(var.detach() * n / (n - 1).clamp(min=1), momentum)
        out = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(x.dtype)


def _copy_batchnorm(module: nn.modules.batchnorm._BatchNorm, cls: type) -> nn.Module:
    """A ``cls`` with ``module``'s settings, buffers and very Parameter objects (the optimiser may hold them)."""
    new = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
    new.load_state_dict(module.state_dict())
    if module.affine:
        new.weight, new.bias = module.weight, module.bias
    new.train(module.training)
    return new


def to_global_batchnorm(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        original = type(module)
        module = _copy_batchnorm(module, GlobalBatchNorm)
        module.original_cls = original
    for name, child in module.named_children():
        module.add_module(name, to_global_batchnorm(child))
    return module


def to_plain_batchnorm(module: nn.Module) -> nn.Module:
    if isinstance(module, GlobalBatchNorm):
        module = _copy_batchnorm(module, getattr(module, "original_cls", nn.BatchNorm3d))
    for name, child in module.named_children():
        module.add_module(name, to_plain_batchnorm(child))
    return module

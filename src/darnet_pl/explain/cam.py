"""Where DARNet looks: class activation maps (CAM, as the paper's Sec. IV-E), Grad-CAM, depth-attention curves.

All maps are computed on the model's own input grid and returned as float32 (N, D, H, W) tensors in [0, 1],
upsampled trilinearly (``align_corners=False``, the convention of the preprocessing) from the feature map to the
input volume, so a map voxel lies on top of the input voxel it explains.

- ``class_activation_map``: CAM of Zhou et al. (the paper's [27]). DARNet ends in global average pooling and one
  linear layer, so the logit of class ``c`` is the mean over voxels of ``sum_k w[c, k] * F_k`` plus a bias: that
  sum, computed per voxel of the last-stage feature map ``F``, is the CAM. ReLU keeps the evidence *for* the
  class; min-max scaling per scan gives [0, 1]. No gradient is needed.
- ``grad_cam``: Grad-CAM (Selvaraju et al.) on any stage. On the last stage (``layer4``, the default) its channel
  weights are the pooled gradients ``w[c, k] / (D H W)``, so for this architecture it equals CAM after scaling;
  ``target_layer="layer3"`` gives a map at twice the resolution, which CAM cannot.
- ``depth_attention_weights``: the DA gates' output (one weight per channel and slice) averaged over channels,
  i.e. how strongly each slice was let through, upsampled to the input depth.

``monai.visualize`` compared (tests/explain/test_monai_cam.py, same model): MONAI's ``CAM`` is ``fc(F)`` per voxel,
i.e. our raw map plus the class's bias and without the ReLU (its default normaliser also flips max to 0); minus the
bias, with the ReLU and our scaling it gives our maps to 1e-5. MONAI's ``GradCAM`` gives our Grad-CAM to 1e-5 scan by
scan, but for a batch explained for several classes it backpropagates every scan's chosen class into every map
(``logits[:, class_idx]``), its hooks stay on the model for good (one more pair per ``GradCAM`` made), it switches
in-place ReLUs off, fills every parameter's ``.grad`` and fails under ``inference_mode``. So both are kept here;
what MONAI has no counterpart for - the depth-attention curve, the NIfTI maps (``explain.nifti``) and the montages
(``explain.overlay``) - is ours anyway.

Everything works inside Lightning's ``inference_mode`` (test hooks, callbacks): Grad-CAM switches it off locally
and works on a clone of the input, as inference tensors cannot take part in autograd. The model's train/eval
state is left as found; maps are computed in eval mode (batch-norm running statistics), as at prediction time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from darnet_pl.models import DARNet, DepthAttention3d

CamMethod = Literal["cam", "gradcam"]
CAM_METHODS: tuple[str, ...] = ("cam", "gradcam")
STAGES: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")


@dataclass(frozen=True)
class Explanation:
    """Maps and the prediction they explain, for a batch of N scans.

    ``maps``: (N, D, H, W) in [0, 1] on the input grid; ``probabilities``: (N, K) softmax of the logits;
    ``class_index``: (N,) the class each map is computed for (the predicted one unless chosen).
    """

    maps: torch.Tensor
    probabilities: torch.Tensor
    class_index: torch.Tensor
    method: str


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Evaluate ``model`` in eval mode and restore its train/eval state afterwards (it may be mid-training)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _target_classes(logits: torch.Tensor, class_index: int | Sequence[int] | torch.Tensor | None) -> torch.Tensor:
    """(N,) long tensor: the argmax class, one class for the whole batch, or one per scan."""
    n, k = logits.shape
    if class_index is None:
        return logits.argmax(dim=1)
    target = torch.as_tensor(class_index, dtype=torch.long, device=logits.device).flatten()
    if target.numel() == 1:
        target = target.expand(n)
    if target.numel() != n:
        raise ValueError(f"class_index gives {target.numel()} classes for a batch of {n} scans")
    if bool((target < 0).any()) or bool((target >= k).any()):
        raise ValueError(f"class_index {target.tolist()} is out of range for a model with {k} classes")
    return target.clone()


def upsample_to_input(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(N, d, h, w) -> (N, D, H, W), trilinear with ``align_corners=False``."""
    return F.interpolate(maps[:, None], size=tuple(size), mode="trilinear", align_corners=False)[:, 0]


def normalise(maps: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Min-max scale every map of a batch to [0, 1]; a flat map (no evidence anywhere) becomes all zeros."""
    flat = maps.flatten(1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    scaled = torch.where(span > eps, (flat - low) / span.clamp_min(eps), torch.zeros_like(flat))
    return scaled.reshape(maps.shape)


def raw_class_activation(features: torch.Tensor, fc: nn.Linear, target: torch.Tensor) -> torch.Tensor:
    """``sum_k w[c, k] F_k`` per feature-map voxel, before ReLU and scaling: its mean plus the bias is the logit."""
    weights = fc.weight[target].to(features.dtype)  # (N, C)
    return torch.einsum("nc,ncdhw->ndhw", weights, features)


def _prepare_input(model: DARNet, x: torch.Tensor) -> torch.Tensor:
    """A float, non-inference copy of ``x`` on the model's device, checked against the model's input shape."""
    param = next(model.parameters())
    x = x.detach().to(device=param.device, dtype=param.dtype).clone()
    model.check_input(x)
    return x


def class_activation_map(
    model: DARNet, x: torch.Tensor, class_index: int | Sequence[int] | torch.Tensor | None = None
) -> Explanation:
    """CAM for the predicted class (or ``class_index``) of every scan of ``x`` (N, C, D, H, W)."""
    with torch.inference_mode(False), torch.no_grad(), eval_mode(model):
        x = _prepare_input(model, x)
        features = model.features(x)
        logits = model.fc(model.pool(features))
        target = _target_classes(logits, class_index)
        cam = torch.relu(raw_class_activation(features, model.fc, target))
        maps = normalise(upsample_to_input(cam, x.shape[2:]))
        return Explanation(maps.float(), logits.float().softmax(dim=1), target, "cam")


def grad_cam(
    model: DARNet,
    x: torch.Tensor,
    class_index: int | Sequence[int] | torch.Tensor | None = None,
    target_layer: str = "layer4",
) -> Explanation:
    """Grad-CAM of ``target_layer`` (a stage, ``layer1``..``layer4``, or any submodule name) for every scan of x."""
    layer = model.get_submodule(target_layer)
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _module, _inputs, output: captured.append(output))
    try:
        with torch.inference_mode(False), torch.enable_grad(), eval_mode(model):
            x = _prepare_input(model, x)
            logits = model(x)
            target = _target_classes(logits, class_index)
            activation = captured[-1]
            score = logits.gather(1, target[:, None]).sum()
            (gradient,) = torch.autograd.grad(score, activation)
            weights = gradient.mean(dim=(2, 3, 4), keepdim=True)
            cam = torch.relu((weights * activation).sum(dim=1)).detach()
            maps = normalise(upsample_to_input(cam, x.shape[2:]))
            probabilities = logits.detach().float().softmax(dim=1)
    finally:
        handle.remove()
    return Explanation(maps.float(), probabilities, target, "gradcam")


def explain(
    model: DARNet,
    x: torch.Tensor,
    method: str = "cam",
    class_index: int | Sequence[int] | torch.Tensor | None = None,
) -> Explanation:
    """``class_activation_map`` or ``grad_cam`` (on the last stage) by name."""
    if method == "cam":
        return class_activation_map(model, x, class_index)
    if method == "gradcam":
        return grad_cam(model, x, class_index)
    raise ValueError(f"unknown CAM method {method!r}: expected one of {CAM_METHODS}")


def depth_attention_modules(model: nn.Module, stages: Sequence[str] | str = "all") -> list[DepthAttention3d]:
    """The DA modules of the chosen stages (``"all"``, ``"last"``, or stage names) in forward order."""
    if isinstance(stages, str):
        stages = {"all": STAGES, "last": STAGES[-1:]}.get(stages, (stages,))
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}: expected 'all', 'last' or some of {STAGES}")
    return [m for s in stages for m in model.get_submodule(s).modules() if isinstance(m, DepthAttention3d)]


def has_depth_attention(model: nn.Module) -> bool:
    return any(isinstance(m, DepthAttention3d) for m in model.modules())


def depth_attention_weights(model: DARNet, x: torch.Tensor, stages: Sequence[str] | str = "all") -> torch.Tensor:
    """Per-slice depth-attention curve (N, D_input): how much each input slice is let through by DA.

    For every DA module of ``stages`` the gate output (N, C*D_module) is averaged over channels, giving one weight
    in (0, 1) per feature-map slice, and linearly upsampled to the input depth (``align_corners=False``, so a
    feature slice covers the input slices it was computed from). The default ``"all"`` averages these curves over
    all eight DA modules (two per stage): early stages resolve single slices, late ones see the whole lung, and
    the mean shows both. ``"last"`` uses only the two last-stage modules (the features CAM reads).
    A model without DA (``attention="none"`` or ``"ca"``) raises ValueError.
    """
    modules = depth_attention_modules(model, stages)
    if not modules:
        raise ValueError(f"DARNet({getattr(model, 'attention', '?')}) has no depth attention in stages {stages!r}")
    curves: list[torch.Tensor] = []

    def record(module: DepthAttention3d) -> object:
        def hook(_gate: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            n = output.shape[0]
            curves.append(output.detach().float().reshape(n, module.channels, module.depth).mean(dim=1))

        return module.gate.register_forward_hook(hook)

    handles = [record(m) for m in modules]
    try:
        with torch.inference_mode(False), torch.no_grad(), eval_mode(model):
            x = _prepare_input(model, x)
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    depth = x.shape[2]
    upsampled = [F.interpolate(c[:, None], size=depth, mode="linear", align_corners=False)[:, 0] for c in curves]
    return torch.stack(upsampled).mean(dim=0)

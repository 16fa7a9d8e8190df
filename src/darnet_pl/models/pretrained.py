"""Start a DARNet from weights a user downloaded: transfer learning from a file, with a report of what was used.

Why: CC-CCII is small, and a 3D ResNet-18 pre-trained on video (torchvision ``r3d_18``, Kinetics-400) or on medical
volumes (Tencent MedicalNet ``resnet_18``) is a better start than random weights. DARNet's backbone *is* a 3D
ResNet-18, so most tensors carry over by name; this module says which did and why the others did not, because a
silent partial load is the classic transfer-learning bug.

Layouts (recognised from the key names, whichever maps the most tensors onto the model):

- ``torchvision r3d_18``: same (3, 7, 7) / (1, 2, 2) stem without max-pool and the same strides, so at width 64 every
  backbone tensor maps 1:1 (``layer1.0.conv1.0`` -> ``layer1.0.conv1``, ``conv1.1`` -> ``bn1``, ``downsample`` ->
  ``shortcut``).
- ``MedicalNet resnet_18``: a ``{'state_dict': ...}`` with ``module.`` keys. Its stem is 7x7x7 with stride 2 and a
  max-pool, so the stem convolution does not fit and is skipped (with its BatchNorm, whose statistics describe that
  convolution's output). Its layer3/layer4 are dilated instead of strided: same shapes, so they load, with another
  receptive field. The published resnet_18 uses shortcut type A (no downsample weights), so DARNet's projection
  shortcuts keep their initialisation.
- ``DARNet``: a Lightning checkpoint of this package (``net.`` keys) or a bare DARNet state dict; attention gates load
  too when the shapes agree (same attention variant and input depth).

Rules: the file is read with ``torch.load(..., weights_only=True)`` (no pickled code runs). A tensor is copied only if
its mapped name is in the model's state dict with the same shape; an RGB stem (out, 3, kD, kH, kW) is summed over its
input channels for a 1-channel model. The classifier ``fc`` is never copied (a new task has new classes), and
attention gates are absent from foreign files, so both keep their fresh initialisation. Pure torch.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from darnet_pl.models.darnet import DARNet
from darnet_pl.utils.torch_files import load_safely

# (pattern, replacement) rewrites from a file's key (prefixes stripped) to a DARNet key; the first match wins and a
# key no rule matches has no counterpart. The classifier is mapped too, so that it is reported as replaced.
_BLOCK = r"^(layer[1-4]\.\d+)\."
LAYOUTS: dict[str, tuple[tuple[str, str], ...]] = {
    "torchvision r3d_18": (
        (r"^(stem\.[01]\..+)$", r"\1"),
        (_BLOCK + r"conv([12])\.0\.", r"\1.conv\2."),
        (_BLOCK + r"conv([12])\.1\.", r"\1.bn\2."),
        (_BLOCK + r"downsample\.([01])\.", r"\1.shortcut.\2."),
        (r"^(fc\..+)$", r"\1"),
    ),
    "MedicalNet resnet_18": (
        (r"^conv1\.", "stem.0."),
        (r"^bn1\.", "stem.1."),
        (_BLOCK + r"((?:conv|bn)[12]\..+)$", r"\1.\2"),
        (_BLOCK + r"downsample\.([01])\.", r"\1.shortcut.\2."),
        (r"^(fc\..+)$", r"\1"),
    ),
    "DARNet": ((r"^(.+)$", r"\1"),),
}
PREFIXES = ("module.", "net.", "model.", "_orig_mod.")  # DataParallel, our LightningModule, others, torch.compile
CLASSIFIER = "fc."
STEM_CONV = "stem.0.weight"
# a convolution's key -> the prefix of the BatchNorm that normalises its output (skipped when the convolution is)
_NORM_OF_CONV = ((r"conv([12])\.weight$", r"bn\1."), (r"\.0\.weight$", ".1."))
_SHOWN_PER_REASON = 5


@dataclass(frozen=True)
class InitReport:
    """What :func:`load_pretrained` did: ``loaded`` of ``wanted`` model tensors (everything but the classifier; for
    foreign layouts also not the attention gates, which they lack), the file's ``skipped`` keys with their reasons,
    and the wanted model tensors the file had nothing for (``missing``), which keep their initialisation."""

    path: str
    layout: str
    loaded: int
    wanted: int
    skipped: tuple[tuple[str, str], ...]
    missing: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line, e.g. ``init_from r3d_18.pth: torchvision r3d_18 layout, loaded 120 of 120 tensors; skipped 2
        (fc.weight, fc.bias: classifier replaced)``."""
        line = f"init_from {Path(self.path).name}: {self.layout} layout, loaded {self.loaded} of {self.wanted} tensors"
        if self.skipped:
            groups: dict[str, list[str]] = {}
            for key, reason in self.skipped:
                groups.setdefault(reason, []).append(key)
            parts = [f"{_names(keys)}: {reason}" for reason, keys in groups.items()]
            line += f"; skipped {len(self.skipped)} ({'; '.join(parts)})"
        if self.missing:
            line += f"; {len(self.missing)} not in the file keep their initialisation ({_names(list(self.missing))})"
        return line


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN_PER_REASON])
    return shown + (f" and {len(keys) - _SHOWN_PER_REASON} more" if len(keys) > _SHOWN_PER_REASON else "")


def load_pretrained(model: DARNet, path: str | os.PathLike[str]) -> InitReport:
    """Copy the tensors of the weights file at ``path`` that fit ``model`` into it, in place.

    Raises FileNotFoundError for a missing file, and ValueError (one line naming the file) for a file that is not a
    torch archive, holds pickled objects that safe loading refuses, or fits fewer than half of the backbone tensors.
    """
    path = Path(path)
    tensors = _read_tensors(path)
    target = model.state_dict()
    backbone = [k for k in target if not k.startswith(CLASSIFIER) and not _is_attention(k)]
    layout, mapped = _detect(tensors, target)
    if layout is None:
        shown = ", ".join(list(tensors)[:3])
        raise ValueError(
            f"{path}: not a known weights layout ({', '.join(LAYOUTS)}): none of its {len(tensors)} tensors has a "
            f"counterpart in DARNet (keys: {shown}{', ...' if len(tensors) > 3 else ''})"
        )
    wanted = [k for k in target if not k.startswith(CLASSIFIER) and (layout == "DARNet" or not _is_attention(k))]
    plan: dict[str, tuple[str, torch.Tensor]] = {}  # DARNet key -> (file key, tensor to copy)
    skipped: dict[str, str] = {}
    for key, dst in mapped.items():
        if dst is None or dst not in target:
            skipped[key] = "no counterpart in DARNet"
        elif dst.startswith(CLASSIFIER):
            skipped[key] = "classifier replaced"
        elif (value := _adapt(dst, tensors[key], target[dst])) is None:
            skipped[key] = f"shape mismatch ({_shape(tensors[key])} in file vs {_shape(target[dst])} in model)"
        else:
            plan[dst] = (key, value)
    conv_of_norm = {_norm_prefix(d): key for key, d in mapped.items() if d is not None}
    for dst, (key, _) in list(plan.items()):  # a BatchNorm whose convolution was skipped does not fit either
        conv = conv_of_norm.get(dst.rsplit(".", 1)[0] + ".")
        if conv in skipped:
            skipped[key] = f"its convolution {conv} was not loaded"
            del plan[dst]
    loaded_backbone = sum(1 for k in backbone if k in plan)
    if loaded_backbone * 2 < len(backbone):
        example = next((f"; e.g. {k}: {r}" for k, r in skipped.items() if r.startswith("shape")), "")
        raise ValueError(
            f"{path}: does not fit this DARNet: as {layout} only {loaded_backbone} of its {len(backbone)} backbone "
            f"tensors can be loaded (width {model.width}){example}"
        )
    with torch.no_grad():
        for dst, (_, value) in plan.items():
            target[dst].copy_(value)
    targeted = set(plan) | {mapped[k] for k in skipped}
    missing = tuple(k for k in wanted if k not in targeted)
    ordered = tuple((k, skipped[k]) for k in tensors if k in skipped)
    return InitReport(str(path), layout, len(plan), len(wanted), ordered, missing)


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The file's tensors by key, from a bare state dict or a dict holding one under 'state_dict' or 'model'."""
    payload = load_safely(path, "weights file")
    if isinstance(payload, Mapping):
        for name in ("state_dict", "model"):
            if isinstance(payload.get(name), Mapping):
                payload = payload[name]
                break
    if not isinstance(payload, Mapping):
        raise ValueError(f"{path}: not a state dict (the file holds a {type(payload).__name__}, not a dict)")
    tensors = {_strip(str(k)): v for k, v in payload.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError(f"{path}: holds no tensors (keys: {', '.join(map(str, list(payload)[:5]))})")
    return tensors


def _strip(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    return key


def _map(rules: tuple[tuple[str, str], ...], key: str) -> str | None:
    for pattern, replacement in rules:
        if re.search(pattern, key):
            return re.sub(pattern, replacement, key, count=1)
    return None


def _detect(
    tensors: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> tuple[str | None, dict[str, str | None]]:
    """The layout whose mapping names the most non-classifier model tensors, with its key mapping (or None)."""
    best, best_hits, best_mapped = None, 0, {}
    for name, rules in LAYOUTS.items():
        mapped = {key: _map(rules, key) for key in tensors}
        hits = sum(1 for d in mapped.values() if d in target and not d.startswith(CLASSIFIER))
        if hits > best_hits:
            best, best_hits, best_mapped = name, hits, mapped
    return best, best_mapped


def _adapt(dst: str, value: torch.Tensor, current: torch.Tensor) -> torch.Tensor | None:
    """``value`` as it goes into ``current``: as is, an RGB stem summed for a 1-channel model, or None."""
    if value.shape == current.shape:
        return value
    if dst == STEM_CONV and value.dim() == 5 and value.shape[1] == 3 and current.shape[1] == 1:
        summed = value.sum(dim=1, keepdim=True)
        return summed if summed.shape == current.shape else None
    return None


def _is_attention(key: str) -> bool:
    return ".depth_attention." in key or ".channel_attention." in key


def _norm_prefix(conv_key: str) -> str | None:
    for pattern, replacement in _NORM_OF_CONV:
        if re.search(pattern, conv_key):
            return re.sub(pattern, replacement, conv_key)
    return None


def _shape(tensor: torch.Tensor) -> tuple[int, ...]:
    return tuple(tensor.shape)

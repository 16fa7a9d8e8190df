"""Is a checkpoint what it claims to be? Checked before any model is built from it.

A checkpoint's ``hyper_parameters`` say which DARNet to build (attention, width, input size, classes); its state
dict holds the tensors. Both come from a file that may be damaged, hand-edited or hostile: a claimed width of 10^9
makes ``DARNet(...)`` ask for hundreds of gigabytes before any shape check could fail, and a NaN weight (or BatchNorm
statistic) makes every probability NaN, whose argmax is a confident-looking first class. So, in this order, each
problem a one-line ``ValueError`` naming the file:

1. ``architecture_of``: the claims are plausible - a known attention variant, integer sizes within ``BOUNDS``,
   class names that are unique, non-empty and printable;
2. ``check_shapes``: every tensor has the shape the claimed model needs, and none is missing or extra. The model
   is built on PyTorch's ``meta`` device, which records shapes and allocates no memory;
3. ``check_finite``: every floating-point tensor is finite, and BatchNorm variances are not negative (the square
   root of one is NaN), reported for the first bad tensor in the file's order.

Plain torch and the model; the callers (``darnet_pl.runs.checkpoints``) turn the errors into ``CheckpointError``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from darnet_pl.data.records import CLASS_NAMES
from darnet_pl.models import DARNet
from darnet_pl.models.darnet import ATTENTION_VARIANTS

BOUNDS: Mapping[str, tuple[int, int]] = {
    "width": (1, 512),  # the paper's is 64; 512 is a 2.2-billion-parameter model
    "in_channels": (1, 16),
    "ca_reduction": (1, 4096),
    "input_side": (1, 1024),  # each of D, H, W
    "classes": (2, 256),
}
MAX_INPUT_VOXELS = 1 << 27
"""D x H x W of at most 512^3 voxels: the largest volume a model may claim to read."""
MAX_CLASS_NAME = 64


class ImplausibleCheckpoint(ValueError):
    """A checkpoint whose claims or tensors cannot be a DARNet's (the message is one line without the file)."""


@dataclass(frozen=True)
class Architecture:
    """The DARNet a checkpoint claims to hold, checked for plausibility."""

    attention: str
    width: int
    in_channels: int
    ca_reduction: int
    input_size: tuple[int, int, int]
    class_names: tuple[str, ...]

    def describe(self) -> str:
        return (
            f"DARNet(attention={self.attention}, width={self.width}, input_size={list(self.input_size)}, "
            f"{len(self.class_names)} classes)"
        )

    def build(self, device: str | torch.device = "cpu") -> DARNet:
        with torch.device(device):
            return DARNet(
                attention=self.attention,  # type: ignore[arg-type]
                in_channels=self.in_channels,
                num_classes=len(self.class_names),
                input_size=self.input_size,
                width=self.width,
                ca_reduction=self.ca_reduction,
            )


def _shown(value: Any) -> str:
    """A claimed value as a message shows it: sequences as lists, cut at 80 characters."""
    text = str(list(value)) if isinstance(value, list | tuple) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _integer(name: str, value: Any, bound: str) -> int:
    low, high = BOUNDS[bound]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ImplausibleCheckpoint(f"hyper_parameters.{name} is {value!r}: expected an integer from {low} to {high}")
    return value


def _class_names(value: Any) -> tuple[str, ...]:
    low, high = BOUNDS["classes"]
    if not isinstance(value, list | tuple) or not low <= len(value) <= high:
        raise ImplausibleCheckpoint(
            f"hyper_parameters.class_names is {_shown(value)}: expected a list of {low} to {high} class names"
        )
    seen: set[str] = set()
    for position, name in enumerate(value):
        if not isinstance(name, str) or not name.strip():
            raise ImplausibleCheckpoint(f"hyper_parameters.class_names[{position}] is {name!r}: an empty class name")
        if len(name) > MAX_CLASS_NAME or not name.isprintable():
            raise ImplausibleCheckpoint(
                f"hyper_parameters.class_names[{position}] is {name[:80]!r}: not a printable name of at most "
                f"{MAX_CLASS_NAME} characters"
            )
        if name in seen:
            raise ImplausibleCheckpoint(f"hyper_parameters.class_names names {name!r} twice")
        seen.add(name)
    return tuple(value)


def architecture_of(hp: Mapping[str, Any]) -> Architecture:
    """The plausible architecture a checkpoint's hyper-parameters claim (their defaults where a key is absent)."""
    attention = hp.get("attention", "dual")
    if attention not in ATTENTION_VARIANTS:
        raise ImplausibleCheckpoint(
            f"hyper_parameters.attention is {str(attention)[:80]!r}: expected one of {', '.join(ATTENTION_VARIANTS)}"
        )
    size = hp.get("input_size", (64, 224, 224))
    if not isinstance(size, list | tuple) or len(size) != 3:
        raise ImplausibleCheckpoint(f"hyper_parameters.input_size is {_shown(size)}: expected [D, H, W]")
    input_size = tuple(_integer(f"input_size[{i}]", s, "input_side") for i, s in enumerate(size))
    if math.prod(input_size) > MAX_INPUT_VOXELS:
        raise ImplausibleCheckpoint(
            f"hyper_parameters.input_size is {list(input_size)}: more than {MAX_INPUT_VOXELS} voxels (512^3)"
        )
    return Architecture(
        attention=str(attention),
        width=_integer("width", hp.get("width", 64), "width"),
        in_channels=_integer("in_channels", hp.get("in_channels", 1), "in_channels"),
        ca_reduction=_integer("ca_reduction", hp.get("ca_reduction", 16), "ca_reduction"),
        input_size=input_size,  # type: ignore[arg-type]
        class_names=_class_names(hp.get("class_names", CLASS_NAMES)),
    )


def _shape(value: Any) -> str:
    return str(list(value.shape)) if isinstance(value, torch.Tensor) else f"a {type(value).__name__}, not a tensor"


def check_shapes(weights: Mapping[str, Any], architecture: Architecture, prefix: str = "") -> None:
    """Every tensor of ``weights`` (keys without ``prefix``) has the shape of ``architecture``'s model, none missing
    or extra; nothing is allocated (the model is built on the meta device)."""
    expected = {name: list(t.shape) for name, t in architecture.build("meta").state_dict().items()}
    claimed = f"the weights do not fit the {architecture.describe()} the checkpoint claims"
    for name, value in weights.items():
        if name not in expected:
            raise ImplausibleCheckpoint(f"{claimed}: it holds {prefix}{name}, which that model has not")
        if not isinstance(value, torch.Tensor) or list(value.shape) != expected[name]:
            raise ImplausibleCheckpoint(f"{claimed}: {prefix}{name} is {_shape(value)}, expected {expected[name]}")
    missing = [name for name in expected if name not in weights]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ImplausibleCheckpoint(f"{claimed}: {prefix}{missing[0]} is missing{more}")


def check_finite(weights: Mapping[str, torch.Tensor], prefix: str = "") -> None:
    """The first floating-point tensor (in the file's order) holding NaN/Inf, or a negative BatchNorm variance."""
    for name, tensor in weights.items():
        if not tensor.is_floating_point():
            continue
        finite = torch.isfinite(tensor)
        if not bool(finite.all()):
            nan = int(torch.isnan(tensor).sum())
            inf = tensor.numel() - int(finite.sum()) - nan
            counts = ", ".join(f"{n} {what}" for n, what in ((nan, "NaN"), (inf, "Inf")) if n)
            raise ImplausibleCheckpoint(
                f"{prefix}{name} holds non-finite values ({counts} of {tensor.numel()}): the model would predict "
                "NaN; use another checkpoint (an earlier epoch) or retrain"
            )
        if name.endswith("running_var") and bool((tensor < 0).any()):
            raise ImplausibleCheckpoint(
                f"{prefix}{name} holds negative variances (lowest {float(tensor.min()):.3g}): BatchNorm would "
                "output NaN; use another checkpoint or retrain"
            )

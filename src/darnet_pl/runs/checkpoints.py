"""Loading trained DARNet checkpoints for inference, safely, with what is needed to use them correctly.

Safety: a checkpoint is read with ``torch.load(..., weights_only=True)`` only. That unpickler rebuilds tensors and
plain containers (dict, list, str, int, float, bool, None) and refuses anything that would import or call code, so
a crafted file cannot run commands. Our training checkpoints need nothing else: the Hydra configs are instantiated
with ``_convert_="all"``, so the model's and the data module's hyper-parameters are plain types, and Lightning's own
loop/callback state is plain too. A checkpoint that needs more (an OmegaConf container saved by other code, a
pickled object) is refused with one line naming the file and the offending type; it is never unpickled.

Checks: before any model is built, the architecture a checkpoint claims must be plausible and agree with the
shapes of its tensors, and every tensor must be finite (``darnet_pl.runs.checkpoint_checks``); each failure is one
line naming the file and the key or tensor. ``metadata_of`` runs them, so predict, evaluate, export and a resumed
run all refuse the same files the same way.

Metadata: the architecture (attention, width, input size, classes) comes from the module's ``hyper_parameters``;
the preprocessing from the data module's ``datamodule_hyper_parameters.source_description.preprocessing``, which
the cached sources (``ccii``, ``folder``) store. The synthetic source stores none: its phantoms are rendered
directly at the model size, in lung-window intensities and without a border, so the equivalent for files is
``Preprocessing(size=input_size, border_crop=0)`` with the default lung window (a uint8 NIfTI at that size passes
through unchanged); ``preprocessing_origin`` records which case applied.

Temperature: a run with ``model.temperature_scaling=true`` stores the temperature it fitted on the validation set as
a plain float under the checkpoint's top-level ``TEMPERATURE_KEY``; ``CheckpointMetadata.temperature`` is that
value (1.0 for checkpoints without one). Calibrated probabilities are ``softmax(logits / temperature)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from darnet_pl.data.preprocess import Preprocessing
from darnet_pl.models import DARNet
from darnet_pl.runs.checkpoint_checks import ImplausibleCheckpoint, architecture_of, check_finite, check_shapes
from darnet_pl.runs.jobs import best_checkpoint, resolve_checkpoints
from darnet_pl.utils.torch_files import UnsafeOrUnreadable, load_safely

MODEL_PREFIX = "net."
# the temperature fitted on the validation set (a positive float), at the checkpoint's top level
TEMPERATURE_KEY = "darnet_temperature"


class CheckpointError(ValueError):
    """A file that is not a usable DARNet checkpoint, or not the one expected; the message is one line."""


@dataclass(frozen=True)
class CheckpointMetadata:
    """What a caller needs to feed a checkpoint's model correctly and to label its outputs."""

    path: str
    class_names: tuple[str, ...]
    input_size: tuple[int, int, int]
    attention: str
    width: int
    in_channels: int
    ca_reduction: int
    preprocessing: dict[str, Any]
    preprocessing_origin: str
    source: dict[str, Any] = field(default_factory=dict)
    epoch: int | None = None
    global_step: int | None = None
    temperature: float = 1.0  # divide the logits by it for calibrated probabilities (1.0: none was fitted)

    def preprocessing_settings(self) -> Preprocessing:
        settings = dict(self.preprocessing)
        settings["size"] = tuple(settings["size"])
        return Preprocessing(**settings)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (lists for tuples), e.g. for an exported model's sidecar file."""
        data = asdict(self)
        data["class_names"] = list(self.class_names)
        data["input_size"] = list(self.input_size)
        return data


def read_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with one-line errors that name the file."""
    path = Path(path)
    try:
        payload = load_safely(path, "checkpoint", map_location)
    except UnsafeOrUnreadable as error:
        raise CheckpointError(str(error)) from None
    if not isinstance(payload, Mapping):
        raise CheckpointError(f"{path}: not a Lightning checkpoint (holds a {type(payload).__name__}, not a dict)")
    return dict(payload)


def _require(mapping: Mapping[str, Any], key: str, path: Path) -> Any:
    if key not in mapping:
        raise CheckpointError(f"{path}: not a DARNet Lightning checkpoint (no '{key}')")
    return mapping[key]


def preprocessing_of(checkpoint: Mapping[str, Any], input_size: Sequence[int]) -> tuple[dict[str, Any], str]:
    """The preprocessing settings a checkpoint's model was trained with, and where they came from."""
    data = checkpoint.get("datamodule_hyper_parameters") or {}
    source = data.get("source_description") or {}
    size = [int(s) for s in input_size]
    if isinstance(source.get("preprocessing"), Mapping):
        settings = dict(source["preprocessing"])
        settings.pop("version", None)
        return settings, "checkpoint"
    if source.get("source") == "synthetic":
        return {**_defaults(size), "border_crop": 0}, "synthetic"
    return _defaults(size), "default"


def _defaults(size: list[int]) -> dict[str, Any]:
    settings = Preprocessing(size=tuple(size)).to_dict()
    settings.pop("version")
    return settings


def temperature_of(checkpoint: Mapping[str, Any], path: str | os.PathLike[str]) -> float:
    """The checkpoint's fitted temperature (``TEMPERATURE_KEY``), 1.0 where it has none."""
    value = checkpoint.get(TEMPERATURE_KEY, 1.0)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < float(value) < float("inf"):
        raise CheckpointError(f"{path}: {TEMPERATURE_KEY}={value!r} is not a positive number")
    return float(value)


def metadata_of(checkpoint: Mapping[str, Any], path: str | os.PathLike[str]) -> CheckpointMetadata:
    """``CheckpointMetadata`` from a loaded checkpoint dictionary, after checking that the checkpoint is what it
    claims (``darnet_pl.runs.checkpoint_checks``): a plausible architecture, tensors of its shapes, all finite.

    Nothing is allocated for a model here, so a file claiming a huge width is refused in one line, not by the
    memory allocator; and every caller (predict, evaluate, export, a resumed run) gets the same checks.
    """
    path = Path(path)
    hp = _require(checkpoint, "hyper_parameters", path)
    if not isinstance(hp, Mapping):
        raise CheckpointError(f"{path}: hyper_parameters is a {type(hp).__name__}, expected a dict")
    try:
        architecture = architecture_of(hp)
        weights = model_state(checkpoint, path)
        check_shapes(weights, architecture, prefix=MODEL_PREFIX)
        check_finite(weights, prefix=MODEL_PREFIX)
    except ImplausibleCheckpoint as error:
        raise CheckpointError(f"{path}: {error}") from None
    try:
        preprocessing, origin = preprocessing_of(checkpoint, architecture.input_size)
        data = checkpoint.get("datamodule_hyper_parameters") or {}
        source = {k: v for k, v in (data.get("source_description") or {}).items() if k != "preprocessing"}
        meta = CheckpointMetadata(
            path=str(path),
            class_names=architecture.class_names,
            input_size=architecture.input_size,
            attention=architecture.attention,
            width=architecture.width,
            in_channels=architecture.in_channels,
            ca_reduction=architecture.ca_reduction,
            preprocessing=preprocessing,
            preprocessing_origin=origin,
            source=dict(source),
            epoch=checkpoint.get("epoch"),
            global_step=checkpoint.get("global_step"),
            temperature=temperature_of(checkpoint, path),
        )
        prep = meta.preprocessing_settings()
    except (TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"{path}: unusable hyper-parameters ({exc})") from None
    if prep.size != meta.input_size:
        raise CheckpointError(
            f"{path}: the data were preprocessed to {list(prep.size)} but the model takes {list(meta.input_size)}"
        )
    return meta


def check_expected(
    meta: CheckpointMetadata,
    expect_attention: str | None = None,
    expect_input_size: Sequence[int] | None = None,
    expect_class_names: Sequence[str] | None = None,
    expect_width: int | None = None,
) -> None:
    """Refuse a checkpoint of another variant, input size, label set or width than the caller is built for."""
    if expect_attention is not None and meta.attention != expect_attention:
        raise CheckpointError(
            f"{meta.path}: a DARNet(attention={meta.attention!r}) checkpoint, expected attention={expect_attention!r}"
        )
    if expect_input_size is not None and tuple(int(s) for s in expect_input_size) != meta.input_size:
        raise CheckpointError(
            f"{meta.path}: model input size {list(meta.input_size)}, expected {[int(s) for s in expect_input_size]}"
        )
    if expect_class_names is not None and tuple(expect_class_names) != meta.class_names:
        raise CheckpointError(f"{meta.path}: classes {list(meta.class_names)}, expected {list(expect_class_names)}")
    if expect_width is not None and int(expect_width) != meta.width:
        raise CheckpointError(f"{meta.path}: a DARNet of width {meta.width}, but this run builds width {expect_width}")


def model_state(checkpoint: Mapping[str, Any], path: Path) -> dict[str, torch.Tensor]:
    """The DARNet weights of a DARNetModule state dict (the ``net.`` entries, prefix removed)."""
    state = _require(checkpoint, "state_dict", path)
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: state_dict is a {type(state).__name__}, expected a dict")
    weights = {k[len(MODEL_PREFIX) :]: v for k, v in state.items() if isinstance(k, str) and k.startswith(MODEL_PREFIX)}
    if not weights:
        raise CheckpointError(f"{path}: the state_dict holds no DARNet weights (no '{MODEL_PREFIX}*' entries)")
    return weights


def load_for_inference(
    path: str | os.PathLike[str],
    map_location: str | torch.device = "cpu",
    *,
    expect_attention: str | None = None,
    expect_input_size: Sequence[int] | None = None,
    expect_class_names: Sequence[str] | None = None,
) -> tuple[DARNet, CheckpointMetadata]:
    """The checkpoint's DARNet in eval mode on ``map_location``, and its metadata.

    Raises ``FileNotFoundError`` for a missing file and ``CheckpointError`` (a ValueError, one line naming the
    file) for anything else: not a checkpoint, pickled objects, another variant/size/classes than expected,
    weights that do not fit the architecture.
    """
    path = Path(path)
    checkpoint = read_checkpoint(path, map_location)
    meta = metadata_of(checkpoint, path)
    check_expected(meta, expect_attention, expect_input_size, expect_class_names)
    model = DARNet(
        attention=meta.attention,  # type: ignore[arg-type]
        in_channels=meta.in_channels,
        num_classes=len(meta.class_names),
        input_size=meta.input_size,
        width=meta.width,
        ca_reduction=meta.ca_reduction,
    )
    try:
        model.load_state_dict(model_state(checkpoint, path), strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise CheckpointError(f"{path}: the weights do not fit DARNet({meta.attention}): {detail[:300]}") from None
    model.to(map_location)
    model.eval()
    return model, meta


__all__ = [  # best_checkpoint and resolve_checkpoints live in runs.jobs (which jobs a folder hands over)
    "MODEL_PREFIX",
    "TEMPERATURE_KEY",
    "CheckpointError",
    "CheckpointMetadata",
    "best_checkpoint",
    "check_expected",
    "load_for_inference",
    "metadata_of",
    "model_state",
    "preprocessing_of",
    "read_checkpoint",
    "resolve_checkpoints",
    "temperature_of",
]

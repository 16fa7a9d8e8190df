"""The checkpoints the model-level checks run: loaded safely, checked against the audited data, fed its scans.

Checkpoints come through ``darnet_pl.runs.checkpoints`` (``weights_only=True``; a run or sweep folder gives the best
checkpoint of every job in it) and must agree on classes, input size and preprocessing, as an ensemble of
``darnet-predict`` must. A scan reaches a model as it reaches ``darnet-predict``'s: read with the checkpoint's
preprocessing; the synthetic phantoms are rendered by their source, which must render them at the model's size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from darnet_pl.data.records import ScanRecord


@dataclass(frozen=True)
class CheckpointInput:
    """A picklable record -> volume function: the scan read with the checkpoint's preprocessing."""

    prep: Any

    def __call__(self, record: ScanRecord) -> np.ndarray:
        from darnet_pl.data.readers.load import load_volume
        from darnet_pl.data.readers.scans import collecting_notes

        with collecting_notes():  # a reader's remarks (a gap, a stray file) do not matter here
            return load_volume(record, self.prep)


def load_models(paths: Sequence[str], class_names: Sequence[str], device: Any) -> list[tuple[Any, Any]]:
    """(DARNet in eval mode, CheckpointMetadata) of every checkpoint ``paths`` name; ValueError (one line) for a
    checkpoint of other classes than the data's, or checkpoints that disagree."""
    from darnet_pl.inference.predict import check_agreement
    from darnet_pl.runs.checkpoints import load_for_inference, resolve_checkpoints

    loaded = [load_for_inference(path, map_location=device) for path in resolve_checkpoints(paths)]
    for _, meta in loaded:
        if tuple(meta.class_names) != tuple(class_names):
            raise ValueError(f"{meta.path}: classes {list(meta.class_names)}, but the data has {list(class_names)}")
    check_agreement([meta for _, meta in loaded])
    return loaded


def input_loader(source: Any, meta: Any) -> Callable[[ScanRecord], np.ndarray]:
    """How the checkpoint's model sees a scan of ``source``: the source's own renderer for a source without files
    (its size must be the model's), else the scan read with the checkpoint's preprocessing."""
    if not hasattr(source, "plan"):
        size = tuple(int(s) for s in getattr(source, "size", ()))
        if size != tuple(meta.input_size):
            raise ValueError(
                f"data.size={list(size)}: {meta.path} takes {list(meta.input_size)}; audit with "
                f"data.size=[{','.join(map(str, meta.input_size))}]"
            )
        return source.volume_loader()
    return CheckpointInput(meta.preprocessing_settings())


def pick_device(name: str | None) -> Any:
    """``audit.device``: null for CUDA where available, else the CPU."""
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"audit.device={name}: CUDA is not available here (use audit.device=cpu)")
    return torch.device(str(name))

"""A planted shortcut: a mark that is not the disease, on a share of one class's patients.

Real datasets carry such marks (CC-CCII supplied most of its Normal scans lung-segmented); planting one in the
phantoms gives the shortcut audit a case with a known answer: a model trained on a cohort with the mark learns it,
a model trained without does not. ``frame`` draws a bright ring around every slice (the outer 1/16 of the slice);
``segmented`` blacks out everything but the lungs, as CC-CCII's pre-segmented scans.

Which patients carry the mark is fixed by their rank within the class, not drawn: patient ``i`` (0-based) of the
class is marked when ``floor((i + 1) * share) > floor(i * share)``, so every prefix of the cohort holds the share
(rounded down) and a larger cohort marks the same patients as a smaller one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from darnet_pl.data.records import CLASS_NAMES

SHORTCUT_KINDS = ("frame", "segmented")
FRAME_FRACTION = 1 / 16
"""Width of the frame, as a fraction of the slice's smaller side (at least one voxel)."""


@dataclass(frozen=True)
class PlantedShortcut:
    """``kind`` on ``share`` of the patients of ``class_name``."""

    class_name: str
    share: float = 0.5
    kind: str = "frame"

    def __post_init__(self) -> None:
        if self.class_name not in CLASS_NAMES:
            raise ValueError(f"shortcut class_name={self.class_name!r}: expected one of {', '.join(CLASS_NAMES)}")
        if isinstance(self.share, bool) or not isinstance(self.share, int | float) or not 0 < self.share <= 1:
            raise ValueError(f"shortcut share={self.share!r}: expected a share of the class's patients in (0, 1]")
        if self.kind not in SHORTCUT_KINDS:
            raise ValueError(f"shortcut kind={self.kind!r}: expected one of {', '.join(SHORTCUT_KINDS)}")

    def marks(self, label: int, patient_index: int) -> bool:
        """Whether the patient with this cohort index (``synthetic_cohort``'s ``3 * i + label``) carries the mark."""
        if CLASS_NAMES[label] != self.class_name:
            return False
        rank = patient_index // len(CLASS_NAMES)
        return math.floor((rank + 1) * self.share) > math.floor(rank * self.share)

    def apply(self, volume: np.ndarray, lungs: np.ndarray | None = None) -> np.ndarray:
        """The (D, H, W) volume in [0, 1] with the mark (``lungs``: the lung mask, needed by ``segmented``)."""
        marked = np.array(volume, copy=True)
        if self.kind == "segmented":
            if lungs is None:
                raise ValueError("a segmented shortcut needs the lung mask")
            marked[~lungs] = 0.0
            return marked
        ring = max(1, round(min(marked.shape[1:]) * FRAME_FRACTION))
        marked[:, :ring], marked[:, -ring:] = 1.0, 1.0
        marked[:, :, :ring], marked[:, :, -ring:] = 1.0, 1.0
        return marked

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def planted_shortcut(settings: PlantedShortcut | dict[str, Any] | None) -> PlantedShortcut | None:
    """The shortcut of a config entry: None, or ``{class_name, share, kind}`` (``class_name: null``: none)."""
    if settings is None or isinstance(settings, PlantedShortcut):
        return settings
    if not isinstance(settings, dict):
        raise ValueError(f"shortcut={settings!r}: expected null or {{class_name, share, kind}}")
    unknown = sorted(set(settings) - {"class_name", "share", "kind"})
    if unknown:
        raise ValueError(f"shortcut.{unknown[0]}: unknown key (expected class_name, share, kind)")
    if settings.get("class_name") is None:
        return None
    return PlantedShortcut(**settings)

"""Preprocessing settings and the resampling arithmetic shared by every scan reader.

The paper crops a fixed in-plane border, resizes the whole scan to 64x224x224 (trilinear) and scales
intensities to [0, 1]. The readers here do the same arithmetic in a cheaper order: the depth sampling
positions are computed first, so only the slices they touch are decoded, and each of those is cropped and
resized in-plane before the depth interpolation. Trilinear interpolation is separable, so the result equals a
trilinear resize of the whole stack (``resize_volume_reference``, the straightforward pipeline) up to float
rounding (at most 1 gray level).

Conventions (``align_corners=False``, as ``torch.nn.functional.interpolate``): output sample ``i`` of
``n_out`` sits at input position ``(i + 0.5) * n_in / n_out - 0.5``; linear interpolation clamps at the edges,
no antialiasing. ``depth_interpolation="nearest"`` takes the nearest slice instead (``nearest-exact``);
in-plane stays bilinear.

The border crop is given in pixels of a ``reference_width``-wide slice (48 of 512 in the paper) and scales
with the slice: a 256x256 slice loses 24 px on each side, a 512x400 one 48 px vertically and 38 px
horizontally.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

PREPROCESSING_VERSION = 1
"""Bumped whenever the arithmetic changes, so caches built by older code are not reused."""

DEPTH_INTERPOLATIONS = ("linear", "nearest")


@dataclass(frozen=True)
class Preprocessing:
    """Everything that decides what a cached volume contains; its hash names the cache folder.

    ``size`` is the output (depth, height, width). ``border_crop`` pixels (of a ``reference_width``-wide
    slice, scaled proportionally for other widths; 0 = no crop) are removed on each in-plane side before
    resizing. ``window_level``/``window_width`` map Hounsfield units to [0, 1] for NIfTI/DICOM CT (lung window
    by default); CC-CCII slice images are already windowed 8-bit pictures and are only scaled.
    """

    size: tuple[int, int, int] = (64, 224, 224)
    border_crop: int = 48
    reference_width: int = 512
    window_level: float = -600.0
    window_width: float = 1500.0
    depth_interpolation: str = "linear"

    def __post_init__(self) -> None:
        size = tuple(int(s) for s in self.size)
        if len(size) != 3 or min(size) < 1:
            raise ValueError(f"size must be three positive integers (depth, height, width), got {self.size!r}")
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "border_crop", int(self.border_crop))
        object.__setattr__(self, "reference_width", int(self.reference_width))
        object.__setattr__(self, "window_level", float(self.window_level))
        object.__setattr__(self, "window_width", float(self.window_width))
        if self.reference_width < 1:
            raise ValueError(f"reference_width must be positive, got {self.reference_width}")
        if not 0 <= 2 * self.border_crop < self.reference_width:
            raise ValueError(
                f"border_crop={self.border_crop} must be >= 0 and leave something of a "
                f"{self.reference_width}-pixel slice"
            )
        if not (self.window_width > 0 and math.isfinite(self.window_width) and math.isfinite(self.window_level)):
            raise ValueError(f"window width must be positive and finite, got {self.window_width}")
        if self.depth_interpolation not in DEPTH_INTERPOLATIONS:
            raise ValueError(
                f"depth_interpolation={self.depth_interpolation!r}: expected one of {DEPTH_INTERPOLATIONS}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able settings, with the algorithm version; written as ``settings.json`` beside the cache."""
        return {
            "version": PREPROCESSING_VERSION,
            "size": list(self.size),
            "border_crop": self.border_crop,
            "reference_width": self.reference_width,
            "window_level": self.window_level,
            "window_width": self.window_width,
            "depth_interpolation": self.depth_interpolation,
        }

    def cache_key(self) -> str:
        """Stable, readable folder name: ``64x224x224-crop48-<10 hex digits of the settings hash>``."""
        digest = hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:10]
        d, h, w = self.size
        return f"{d}x{h}x{w}-crop{self.border_crop}-{digest}"

    def crop_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the kept region of a ``height`` x ``width`` slice."""
        fraction = self.border_crop / self.reference_width
        cy = min(math.floor(height * fraction + 0.5), (height - 1) // 2)
        cx = min(math.floor(width * fraction + 0.5), (width - 1) // 2)
        return cx, cy, width - cx, height - cy


@dataclass(frozen=True)
class AxisPlan:
    """Resampling of one axis: output ``i`` = ``w0[i] * input[lower[i]] + w1[i] * input[upper[i]]``."""

    lower: np.ndarray
    upper: np.ndarray
    w0: np.ndarray
    w1: np.ndarray

    @property
    def needed(self) -> list[int]:
        """The input positions the plan reads: along depth, the only slices a reader has to decode."""
        used = set(self.lower.tolist())
        used.update(self.upper[self.w1 > 0].tolist())
        return sorted(used)


def sampling_plan(n_in: int, n_out: int, mode: str = "linear") -> AxisPlan:
    """Sampling positions along one axis, with torch's ``align_corners=False`` conventions."""
    if n_in < 1 or n_out < 1:
        raise ValueError(f"cannot resample {n_in} samples to {n_out}")
    centres = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out)
    if mode == "nearest":
        lower = np.minimum(np.floor(centres).astype(np.intp), n_in - 1)
        return AxisPlan(lower, lower.copy(), np.ones(n_out, np.float32), np.zeros(n_out, np.float32))
    if mode != "linear":
        raise ValueError(f"depth_interpolation={mode!r}: expected one of {DEPTH_INTERPOLATIONS}")
    source = np.maximum(centres - 0.5, 0.0)
    lower = np.minimum(np.floor(source).astype(np.intp), n_in - 1)
    upper = np.minimum(lower + 1, n_in - 1)
    w1 = np.where(upper > lower, source - lower, 0.0).astype(np.float32)
    return AxisPlan(lower, upper, (1.0 - w1).astype(np.float32), w1)


class PlaneResizer:
    """Crop and bilinearly resize 2D slices of one shape (no antialiasing, as ``F.interpolate``).

    Separable: rows are gathered and blended first, then columns, on the cropped region only, so edge samples
    clamp to the kept region exactly like the reference resize of a cropped stack. Returns float32.
    """

    def __init__(self, shape: tuple[int, int], prep: Preprocessing) -> None:
        self.shape = tuple(shape)
        left, top, right, bottom = prep.crop_box(*shape)
        self.window = (slice(top, bottom), slice(left, right))
        self.rows = sampling_plan(bottom - top, prep.size[1])
        self.cols = sampling_plan(right - left, prep.size[2])
        self._wy = (self.rows.w0[:, None], self.rows.w1[:, None])
        self._wx = (self.cols.w0[None, :], self.cols.w1[None, :])

    def __call__(self, plane: np.ndarray) -> np.ndarray:
        if plane.shape != self.shape:
            raise ValueError(f"slice shape {plane.shape} differs from the scan's {self.shape}")
        region = plane[self.window]
        rows = _blend(region.take(self.rows.lower, axis=0), region.take(self.rows.upper, axis=0), *self._wy)
        return _blend(rows.take(self.cols.lower, axis=1), rows.take(self.cols.upper, axis=1), *self._wx)


def _blend(a: np.ndarray, b: np.ndarray, w0: np.ndarray, w1: np.ndarray) -> np.ndarray:
    """``w0 * a + w1 * b`` in float32, in place on ``a`` and ``b`` (fresh arrays from ``take``)."""
    out = a.astype(np.float32, copy=False)
    out *= w0
    other = b.astype(np.float32, copy=False)
    other *= w1
    out += other
    return out


def resample_planes(
    n_slices: int, load: Callable[[int], np.ndarray], prep: Preprocessing
) -> tuple[np.ndarray, list[int]]:
    """Resample a scan of ``n_slices`` slices, calling ``load(i)`` once for each slice the depth plan needs.

    ``load`` returns one 2D slice on the 0-255 scale (uint8 or float32); all slices must share one shape.
    Returns the uint8 (D, H, W) volume and the indices that were loaded.
    """
    plan = sampling_plan(n_slices, prep.size[0], prep.depth_interpolation)
    needed = plan.needed
    planes: dict[int, np.ndarray] = {}
    resize: PlaneResizer | None = None
    for index in needed:
        plane = load(index)
        if resize is None:
            resize = PlaneResizer(plane.shape, prep)
        planes[index] = resize(plane)
    out = np.empty(prep.size, dtype=np.float32)
    rows = zip(plan.lower.tolist(), plan.upper.tolist(), plan.w0.tolist(), plan.w1.tolist(), strict=True)
    for i, (lo, hi, w0, w1) in enumerate(rows):
        if w1 == 0.0:
            out[i] = planes[lo]
        else:
            np.multiply(planes[lo], np.float32(w0), out=out[i])
            out[i] += np.float32(w1) * planes[hi]
    return to_uint8(out), needed


def to_uint8(volume: np.ndarray) -> np.ndarray:
    """Round a 0-255 float volume to the uint8 the cache stores (dividing by 255 later gives [0, 1])."""
    return np.rint(np.clip(volume, 0.0, 255.0, out=np.empty_like(volume))).astype(np.uint8)


def window_to_255(volume: np.ndarray, level: float, width: float) -> np.ndarray:
    """Map Hounsfield units through the window ``[level - width/2, level + width/2]`` onto 0-255 (float32)."""
    low = level - width / 2.0
    scaled = (np.asarray(volume, dtype=np.float32) - np.float32(low)) * np.float32(255.0 / width)
    return np.clip(scaled, 0.0, 255.0, out=scaled)


def resize_volume_reference(volume: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """The straightforward resize: crop the whole (N, h, w) 0-255 stack, resize it in one go, round to uint8.

    ``linear`` is one trilinear ``torch.nn.functional.interpolate`` call, as the authors' pipeline;
    ``nearest`` resizes every slice bilinearly, then picks slices with ``nearest-exact``. Slow and memory
    hungry (the whole full-size stack in float), kept as the reference the fast readers are tested and
    benchmarked against.
    """
    import torch
    import torch.nn.functional as F

    _, h, w = volume.shape
    left, top, right, bottom = prep.crop_box(h, w)
    stack = torch.from_numpy(np.ascontiguousarray(volume[:, top:bottom, left:right])).to(torch.float32)
    if prep.depth_interpolation == "linear":
        out = F.interpolate(stack[None, None], size=prep.size, mode="trilinear", align_corners=False)[0, 0]
    else:
        planes = F.interpolate(stack[:, None], size=prep.size[1:], mode="bilinear", align_corners=False)[:, 0]
        out = F.interpolate(planes[None, None], size=prep.size, mode="nearest-exact")[0, 0]
    return to_uint8(out.numpy())

"""Preprocessing settings and the resampling arithmetic shared by every scan reader.

The paper crops a fixed in-plane border, resizes the whole scan to 64x224x224 and scales intensities to [0, 1].
``Preprocessing.depth_interpolation`` chooses how, with one meaning for every source (slice folders, NIfTI,
DICOM):

- ``"linear"`` (default): trilinear, the conventions of ``torch.nn.functional.interpolate`` with
  ``align_corners=False``: output sample ``i`` of ``n_out`` sits at input position ``(i + 0.5) * n_in / n_out -
  0.5``, linear interpolation clamps at the edges, no antialiasing. The readers compute the depth sampling
  positions first, so only the two slices around each output slice are decoded (a finding on a slice between
  them never reaches the model), and each is cropped and resized in-plane before the depth interpolation.
  Trilinear interpolation is separable, so the result equals a trilinear resize of the whole stack
  (``resize_volume_reference``, the straightforward pipeline) up to float rounding (at most 1 gray level).
- ``"nearest"``: the nearest slice along depth (``nearest-exact``), one decoded slice per output slice;
  in-plane stays bilinear as above.
- ``"antialias"``: the authors' ``skimage.transform.resize(volume, size, anti_aliasing=True)`` (linear order,
  ``mode="reflect"``): along every axis a Gaussian pre-filter with sigma = ``max(0, (n_in / n_out - 1) / 2)``
  (truncated at 4 sigma, mirrored edges: ``scipy.ndimage`` mode ``mirror``), then linear interpolation at the
  same ``(i + 0.5) * n_in / n_out - 0.5`` positions, mirroring (not clamping) positions outside the input.
  Every slice is read (decoded on ``decode_threads()`` threads); each is filtered and resampled in-plane right
  away, and its contribution to the output slices is added as it comes (filter and interpolation are linear
  and act on separate axes, so this order gives skimage's result up to float rounding, at most 1 gray level,
  while holding only the output volume in memory).

The border crop is given in pixels of a ``reference_width``-wide slice (48 of 512 in the paper) and scales
with the slice: a 256x256 slice loses 24 px on each side, a 512x400 one 48 px vertically and 38 px
horizontally.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import multiprocessing
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

PREPROCESSING_VERSION = 1
"""Bumped whenever the arithmetic changes, so caches built by older code are not reused."""

DEPTH_INTERPOLATIONS = ("linear", "nearest", "antialias")

DECODE_THREADS_ENV = "DARNET_DECODE_THREADS"
"""Environment variable: how many threads read the slices of one scan with ``antialias`` (default: see
``decode_threads``)."""


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
        return crop_box(height, width, self.border_crop, self.reference_width)


def crop_box(height: int, width: int, border_crop: int, reference_width: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) kept of a ``height`` x ``width`` slice when ``border_crop`` pixels of a
    ``reference_width``-wide slice are removed on each side, scaled to the slice (never all of it)."""
    fraction = border_crop / reference_width
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
    if mode == "antialias":
        raise ValueError("antialias reads every slice through a filter, not a 2-sample plan: see antialias_matrix")
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
    n_slices: int, load: Callable[[int], np.ndarray], prep: Preprocessing, threads: int | None = None
) -> tuple[np.ndarray, list[int]]:
    """Resample a scan of ``n_slices`` slices, calling ``load(i)`` once for each slice the depth plan needs.

    ``load`` returns one 2D slice on the 0-255 scale (uint8 or float32); all slices must share one shape.
    Returns the uint8 (D, H, W) volume and the indices that were loaded. ``antialias`` loads every slice, on
    ``threads`` threads (None: ``decode_threads()``), so ``load`` must be safe to call from several threads.
    """
    if prep.depth_interpolation == "antialias":
        return _resample_antialias(n_slices, load, prep, threads), list(range(n_slices))
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


@functools.lru_cache(maxsize=64)
def antialias_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float64 matrix of ``skimage.transform.resize(..., anti_aliasing=True)`` along one axis.

    A Gaussian with sigma = ``max(0, (n_in / n_out - 1) / 2)``, radius ``int(4 * sigma + 0.5)``
    (``scipy.ndimage.gaussian_filter1d``), then linear interpolation at ``(i + 0.5) * n_in / n_out - 0.5``
    (``scipy.ndimage.zoom(order=1, grid_mode=True)``), both extending the input by mirroring about the edge
    samples (ndimage ``mirror``, numpy.pad's and skimage's ``reflect``: ``d c b | a b c d | c b a``). Read-only.
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"cannot resample {n_in} samples to {n_out}")
    scale = n_in / n_out
    centres = (np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5
    lower = np.floor(centres)
    frac = centres - lower
    lower = lower.astype(np.intp)
    rows = np.arange(n_out)
    matrix = np.zeros((n_out, n_in))
    np.add.at(matrix, (rows, _mirror(lower, n_in)), 1.0 - frac)
    np.add.at(matrix, (rows, _mirror(lower + 1, n_in)), frac)
    sigma = max(0.0, (scale - 1.0) / 2.0)
    if sigma > 1e-15:  # ndimage.gaussian_filter skips axes with sigma <= 1e-15
        radius = int(4.0 * sigma + 0.5)
        offsets = np.arange(-radius, radius + 1)
        kernel = np.exp(-0.5 / (sigma * sigma) * offsets.astype(np.float64) ** 2)
        kernel /= kernel.sum()
        gaussian = np.zeros((n_in, n_in))
        samples = np.arange(n_in)
        for offset, weight in zip(offsets.tolist(), kernel.tolist(), strict=True):
            np.add.at(gaussian, (samples, _mirror(samples + offset, n_in)), weight)
        matrix = matrix @ gaussian
    matrix.setflags(write=False)
    return matrix


def _mirror(index: np.ndarray, n: int) -> np.ndarray:
    """Indices outside ``[0, n)`` reflected about the edge samples (ndimage ``mirror``), any number of times."""
    if n == 1:
        return np.zeros_like(index)
    period = 2 * n - 2
    index = np.abs(index) % period
    return np.where(index >= n, period - index, index)


def _sparse_rows(matrix: np.ndarray):
    """``matrix`` as a float32 CSR matrix (each row has a handful of taps: 6 for 416 -> 224)."""
    from scipy import sparse

    return sparse.csr_matrix(matrix.astype(np.float32))


class AntialiasPlaneResizer:
    """Crop a 2D slice and resize it in-plane as ``skimage.transform.resize(anti_aliasing=True)`` would.

    The Gaussian and the linear interpolation of each axis are one sparse (out, in) matrix, applied to rows, then
    to columns, of the cropped region: about 0.2 ms for 416x416 -> 224x224. Returns float32; ``transposed``
    gives the (W, H) transpose in C order (what the column step yields without a copy).
    """

    def __init__(self, shape: tuple[int, int], prep: Preprocessing) -> None:
        self.shape = tuple(shape)
        left, top, right, bottom = prep.crop_box(*shape)
        self.window = (slice(top, bottom), slice(left, right))
        self._rows = _sparse_rows(antialias_matrix(bottom - top, prep.size[1]))
        self._cols = _sparse_rows(antialias_matrix(right - left, prep.size[2]))

    def __call__(self, plane: np.ndarray) -> np.ndarray:
        return self.transposed(plane).T

    def transposed(self, plane: np.ndarray) -> np.ndarray:
        if plane.shape != self.shape:
            raise ValueError(f"slice shape {plane.shape} differs from the scan's {self.shape}")
        region = plane[self.window].astype(np.float32)
        rows = self._rows @ region  # (H, w), C order
        return np.asarray(self._cols @ rows.T)  # (W, H), C order


def decode_threads() -> int:
    """Threads that read one scan's slices with ``antialias``: ``$DARNET_DECODE_THREADS``, else up to 4 of the
    cores this process may use, or 1 inside a worker process (``ingest(workers=...)`` already fills the cores)."""
    value = os.environ.get(DECODE_THREADS_ENV, "").strip()
    if value:
        try:
            threads = int(value)
        except ValueError:
            raise ValueError(f"{DECODE_THREADS_ENV}={value!r}: expected a positive whole number") from None
        if threads < 1:
            raise ValueError(f"{DECODE_THREADS_ENV}={value!r}: expected a positive whole number")
        return threads
    if multiprocessing.parent_process() is not None:
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def _resample_antialias(
    n_slices: int, load: Callable[[int], np.ndarray], prep: Preprocessing, threads: int | None
) -> np.ndarray:
    """Every slice loaded (in parallel), resized in-plane, and added into the output slices it contributes to."""
    if n_slices < 1:
        raise ValueError("cannot resample a scan without slices")
    depth = antialias_matrix(n_slices, prep.size[0])
    contributions = []  # per input slice: (output slices, float32 weights), about n_in / n_out + 4 sigma of them
    for column in depth.T:
        (outputs,) = np.nonzero(column)
        contributions.append((outputs.tolist(), column[outputs].astype(np.float32).tolist()))
    first = load(0)
    resize = AntialiasPlaneResizer(first.shape, prep).transposed
    d, h, w = prep.size
    out = np.zeros((d, w, h), dtype=np.float32)  # slices transposed, as the in-plane step yields them (C order)
    scratch = np.empty((w, h), dtype=np.float32)

    def add(index: int, plane: np.ndarray) -> None:
        # numpy, not BLAS saxpy: a threaded BLAS on 50k elements is several times slower on a busy machine
        for i, weight in zip(*contributions[index], strict=True):
            np.multiply(plane, np.float32(weight), out=scratch)
            out[i] += scratch

    add(0, resize(first))
    del first
    threads = decode_threads() if threads is None else max(1, int(threads))
    if threads == 1 or n_slices < 3:
        for index in range(1, n_slices):
            add(index, resize(load(index)))
        return np.ascontiguousarray(to_uint8(out).transpose(0, 2, 1))
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="darnet-decode") as pool:
        pending: deque[Future] = deque()  # slices 1 + added, ... in order
        ahead = 2 * threads  # slices in flight: bounds the memory of decoded, not yet added, slices
        added = 0
        try:
            for index in range(1, n_slices):
                pending.append(pool.submit(lambda i: resize(load(i)), index))
                if len(pending) >= ahead:
                    added += 1
                    add(added, pending.popleft().result())
            while pending:
                added += 1
                add(added, pending.popleft().result())
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return np.ascontiguousarray(to_uint8(out).transpose(0, 2, 1))


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

    ``linear`` is one trilinear ``torch.nn.functional.interpolate`` call; ``nearest`` resizes every slice
    bilinearly, then picks slices with ``nearest-exact``; ``antialias`` makes the SciPy calls of the authors'
    ``skimage.transform.resize(volume, size, anti_aliasing=True)`` (float64 Gaussian filter, then ``zoom``,
    both in ndimage's ``mirror`` mode). Slow and memory hungry (the whole full-size stack in float), kept as the
    reference the fast readers are tested and benchmarked against.
    """
    _, h, w = volume.shape
    left, top, right, bottom = prep.crop_box(h, w)
    if prep.depth_interpolation == "antialias":
        from scipy import ndimage

        image = volume[:, top:bottom, left:right].astype(np.float64)
        factors = np.divide(image.shape, prep.size)
        image = ndimage.gaussian_filter(image, np.maximum(0.0, (factors - 1.0) / 2.0), mode="mirror")
        return to_uint8(ndimage.zoom(image, 1.0 / factors, order=1, mode="mirror", grid_mode=True))

    import torch
    import torch.nn.functional as F

    stack = torch.from_numpy(np.ascontiguousarray(volume[:, top:bottom, left:right])).to(torch.float32)
    if prep.depth_interpolation == "linear":
        out = F.interpolate(stack[None, None], size=prep.size, mode="trilinear", align_corners=False)[0, 0]
    else:
        planes = F.interpolate(stack[:, None], size=prep.size[1:], mode="bilinear", align_corners=False)[:, 0]
        out = F.interpolate(planes[None, None], size=prep.size, mode="nearest-exact")[0, 0]
    return to_uint8(out.numpy())

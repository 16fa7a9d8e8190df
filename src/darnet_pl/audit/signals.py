"""Per-scan signals that are not the disease: how a scan was stored and framed, rather than what it shows.

A model can separate classes by such signals when they differ between classes (CC-CCII's Normal scans were often
supplied lung-segmented, one hospital's scans have another slice count or file type). File signals come from the
listing and one header (cheap); volume signals from a small low-resolution load through the ordinary reader, so
they see the scan as training does (same reader, same Hounsfield window), only smaller and uncropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from darnet_pl.data.preprocess import Preprocessing
from darnet_pl.data.readers.load import load_volume
from darnet_pl.data.readers.scans import ScanError, collecting_notes, is_ignored, scan_kind
from darnet_pl.data.records import ScanRecord
from darnet_pl.utils.worker_pool import worker_count, worker_pool

BORDER_FRACTION = 1 / 16
"""Width of the outer ring of each slice, as a fraction of the slice (4 px of a 64-px slice)."""


@dataclass
class ScanSignals:
    """The signals of one scan; a value is NaN (or None for text) where it could not be read, ``problem`` says why."""

    record: ScanRecord
    values: dict[str, float | str | None] = field(default_factory=dict)
    problem: str | None = None


def audit_preprocessing(prep: Preprocessing | None, size: Sequence[int]) -> Preprocessing:
    """The source's preprocessing (its window) at ``size`` and without the border crop: the border is a signal."""
    return replace(prep or Preprocessing(), size=tuple(int(s) for s in size), border_crop=0)


def file_signals(path: str) -> dict[str, float | str | None]:
    """``n_slices``, ``rows``, ``cols`` and ``file_type`` (png, jpg, nifti, dicom) from the listing and one header.

    A DICOM series is counted by its files (stray non-DICOM files included): reading every header is not cheap.
    """
    kind = scan_kind(path)
    if kind == "slices":
        from darnet_pl.data.readers.slices import list_slices, probe_slice

        slices = list_slices(path)
        width, height = probe_slice(slices[0])
        suffix = slices[0].suffix.lower().lstrip(".")
        file_type = "jpg" if suffix == "jpeg" else suffix
        return {"n_slices": len(slices), "rows": height, "cols": width, "file_type": file_type}
    if kind == "nifti":
        return {**_nifti_shape(path), "file_type": "nifti"}
    return {**_dicom_shape(path), "file_type": "dicom"}


def _nifti_shape(path: str) -> dict[str, float]:
    """(slices, rows, cols) in the reader's orientation, from the header alone (no voxel is read)."""
    import nibabel as nib
    from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

    from darnet_pl.data.readers.volumes import DISPLAY_AXES

    try:
        image = nib.load(path)
        shape = tuple(int(s) for s in image.shape[:3])
        ornt = ornt_transform(io_orientation(image.affine), axcodes2ornt(DISPLAY_AXES))
    except Exception as exc:  # nibabel raises many types for damaged files
        raise ScanError(path, f"unreadable NIfTI header ({type(exc).__name__})") from None
    if len(shape) != 3 or np.isnan(ornt).any():
        raise ScanError(path, f"not a usable 3D volume: shape {tuple(image.shape)}")
    oriented = [0, 0, 0]
    for axis, extent in enumerate(shape):
        oriented[int(ornt[axis, 0])] = extent
    return {"n_slices": oriented[0], "rows": oriented[1], "cols": oriented[2]}


def _dicom_shape(path: str) -> dict[str, float]:
    import pydicom

    files = sorted(p for p in Path(path).iterdir() if p.is_file() and not is_ignored(p.name))
    try:
        header = pydicom.dcmread(files[0], stop_before_pixels=True)
        rows, cols = int(header.Rows), int(header.Columns)
    except Exception as exc:
        raise ScanError(files[0], f"unreadable DICOM header ({type(exc).__name__})") from None
    return {"n_slices": len(files), "rows": rows, "cols": cols}


def volume_signals(volume: np.ndarray, bins: int = 16) -> dict[str, float]:
    """Background and intensity signals of a uint8 (D, H, W) volume.

    ``zero_fraction``: exactly-black voxels (masked or padded scans); ``border_mean``: mean of the outer ring of
    every slice on [0, 1] (the frame, table and air around the body); ``hist_<i>``: normalised histogram.
    """
    volume = np.asarray(volume)
    _, height, width = volume.shape
    ring = max(1, round(min(height, width) * BORDER_FRACTION))
    border = np.ones((height, width), dtype=bool)
    border[ring : height - ring, ring : width - ring] = False
    counts = np.bincount((volume.ravel().astype(np.int64) * bins) // 256, minlength=bins)
    signals = {"zero_fraction": float(np.mean(volume == 0)), "border_mean": float(volume[:, border].mean() / 255)}
    signals.update({f"hist_{i}": float(c) / volume.size for i, c in enumerate(counts)})
    return signals


def scan_signals(
    record: ScanRecord,
    prep: Preprocessing,
    known: Mapping[str, float],
    bins: int,
    loader: Callable[[ScanRecord], np.ndarray] | None = None,
) -> ScanSignals:
    """All signals of one scan; a scan that cannot be read keeps what was read before, and the reason.

    ``known``: signals the source knows of this scan (``known_signals``). ``loader``: a source without files (the
    synthetic phantoms) hands its volumes over instead; they have no file signals.
    """
    result = ScanSignals(record, {column: float(value) for column, value in known.items()})
    try:
        if loader is not None:
            result.values.update(volume_signals(as_uint8(loader(record)), bins))
            return result
        if record.path is None:
            raise ScanError(record.key, "the record has no path to read")
        result.values.update(file_signals(record.path))
        with collecting_notes():  # a reader's remarks (a gap, a stray file) do not matter here
            result.values.update(volume_signals(load_volume(record, prep), bins))
    except ScanError as error:
        result.problem = str(error)
    return result


def as_uint8(volume: np.ndarray) -> np.ndarray:
    """A volume in [0, 1] (the phantoms) on the readers' uint8 scale; uint8 as it is."""
    volume = np.asarray(volume)
    if volume.dtype == np.uint8:
        return volume
    return np.rint(np.clip(volume, 0.0, 1.0) * 255.0).astype(np.uint8)


def known_signals(source: Any, records: Sequence[ScanRecord]) -> dict[str, dict[str, float]]:
    """Signal -> scan key -> value, for what the source itself knows about its scans.

    ``segmented``: supplied lung-segmented, from CC-CCII's cleaning list (``is_seg``; scans the list does not name
    stay unknown). ``planted``: the synthetic source's planted shortcut mark. Other sources know nothing of either.
    """
    known: dict[str, dict[str, float]] = {}
    if getattr(source, "cleaning_csv", None) is not None:
        cleaning: Mapping[str, Any] = source.cleaning
        known["segmented"] = {r.key: float(cleaning[r.key].is_seg) for r in records if r.key in cleaning}
    planted = getattr(source, "planted_flags", None)
    if callable(planted) and planted():
        flags = planted()
        known["planted"] = {r.key: float(flags[r.key]) for r in records if r.key in flags}
    return known


def collect_signals(
    records: Sequence[ScanRecord],
    prep: Preprocessing,
    known: Mapping[str, Mapping[str, float]],
    bins: int = 16,
    workers: int = -1,
    progress: bool = True,
    loader: Callable[[ScanRecord], np.ndarray] | None = None,
) -> list[ScanSignals]:
    """``scan_signals`` of every record, in order; ``workers`` worker processes (0: here, < 0: one per core, at most
    one per core; utils.worker_pool: stopped with the command); ``known``: ``known_signals``; ``loader``: see
    ``scan_signals`` (picklable, for the workers)."""
    from tqdm.auto import tqdm

    def of(record: ScanRecord) -> dict[str, float]:
        return {column: values[record.key] for column, values in known.items() if record.key in values}

    jobs = [(r, prep, of(r), bins, loader) for r in records]
    workers = worker_count(workers, len(jobs), "audit.workers")
    bar = tqdm(total=len(jobs), disable=not progress, unit="scan", desc="audit", dynamic_ncols=True)
    results: list[ScanSignals] = []
    try:
        if workers == 0 or len(jobs) <= 1:
            for job in jobs:
                results.append(scan_signals(*job))
                bar.update(1)
            return results
        with worker_pool(workers) as pool:  # a stop (Ctrl-C, SIGTERM) stops the workers too
            for result in pool.map(scan_signals, *zip(*jobs, strict=True), chunksize=4):
                results.append(result)
                bar.update(1)
        return results
    finally:
        bar.close()

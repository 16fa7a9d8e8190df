"""Scans in Hounsfield units: NIfTI files and DICOM series folders, windowed to 8 bits.

Both are brought to the orientation of CC-CCII's slice images before resampling, so that a model trained on
one reads the other the same way: depth runs from the top of the body down (slice 0 is superior), rows from
anterior to posterior, columns from the patient's right to left (the radiological view of an axial slice).
File order and voxel-axis order mean nothing here: the affine (NIfTI) or
ImagePositionPatient/ImageOrientationPatient (DICOM) decides.

A NIfTI stored as uint8 without scaling is taken as already-windowed 8-bit data and only scaled; anything else
is taken as Hounsfield units and windowed (``Preprocessing.window_level``/``window_width``). The windowed 0-255
volume is then resampled exactly as a slice folder is (``preprocess.resample_planes``), so each
``depth_interpolation`` - ``antialias`` included, which filters every slice - means the same for every source.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from darnet_pl.data.preprocess import Preprocessing, resample_planes, window_to_255
from darnet_pl.data.readers.scans import ScanError, check_slice_size, is_ignored, note

DISPLAY_AXES = ("I", "P", "L")
"""Voxel axes of the result: towards Inferior (D), Posterior (H), patient's Left (W)."""


def orient_dhw(data: np.ndarray, affine_ras: np.ndarray) -> np.ndarray:
    """Reorder/flip the axes of ``data`` to run superior->inferior, anterior->posterior, right->left.

    ``affine_ras`` maps voxel indices to RAS+ world coordinates (NIfTI's convention). Only axis permutations
    and flips are applied (the closest canonical orientation, as ``nibabel.as_closest_canonical``); no
    resampling.
    """
    from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

    current = io_orientation(affine_ras)
    if np.isnan(current).any():
        raise ValueError("the affine has no usable orientation (a zero or degenerate axis)")
    return apply_orientation(data, ornt_transform(current, axcodes2ornt(DISPLAY_AXES)))


def read_nifti(path: str | os.PathLike[str], prep: Preprocessing, expected_slices: int | None = None) -> np.ndarray:
    """uint8 (D, H, W) volume of ``prep.size`` from a .nii/.nii.gz file."""
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise ScanError(path, "not found")
    try:
        image = nib.load(path)
        shape = tuple(image.shape)
        if len(shape) > 3 and all(extent == 1 for extent in shape[3:]):
            shape = shape[:3]
        if len(shape) != 3:
            raise ScanError(path, f"not a 3D volume: shape {tuple(image.shape)}")
        data = np.asarray(image.get_fdata(dtype=np.float32)).reshape(shape)
        slope, inter = image.header.get_slope_inter()
    except ScanError:
        raise
    except Exception as exc:  # nibabel raises many types for damaged files (ImageFileError, EOFError, zlib.error)
        detail = str(exc).replace(str(path), "the file")
        raise ScanError(path, f"unreadable NIfTI ({type(exc).__name__}: {detail})") from None
    is_hu = not (image.get_data_dtype() == np.uint8 and slope in (None, 1.0) and inter in (None, 0.0))
    try:
        volume = orient_dhw(data, image.affine)
    except ValueError as exc:
        raise ScanError(path, str(exc)) from None
    return preprocess_volume(path, volume, prep, is_hu=is_hu, expected_slices=expected_slices)


def read_dicom_series(
    folder: str | os.PathLike[str], prep: Preprocessing, expected_slices: int | None = None
) -> np.ndarray:
    """uint8 (D, H, W) volume of ``prep.size`` from a folder holding one DICOM series (one file per slice).

    Slices are ordered by their position along the slice normal, not by file name; pixel values go through
    RescaleSlope/RescaleIntercept to Hounsfield units, then through the window.
    """
    import pydicom

    folder = Path(folder)
    files, headers = _dicom_headers(pydicom, folder)
    series = {str(getattr(ds, "SeriesInstanceUID", "")) for ds in headers}
    if len(series) > 1:
        raise ScanError(folder, f"the folder holds {len(series)} DICOM series: give one series per folder")
    for path, ds in zip(files, headers, strict=True):
        if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
            raise ScanError(path, "multi-frame DICOM is not supported: expected one file per slice")
        if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
            raise ScanError(path, "no ImagePositionPatient/ImageOrientationPatient: cannot order the slices")
    orientation = np.array([float(v) for v in headers[0].ImageOrientationPatient], dtype=np.float64)
    for path, ds in zip(files, headers, strict=True):
        if not np.allclose([float(v) for v in ds.ImageOrientationPatient], orientation, atol=1e-3):
            raise ScanError(path, "slice orientation differs from the rest of the series")
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in headers])
    order = np.argsort(positions @ normal, kind="stable")
    along = (positions @ normal)[order]
    if len(files) > 1:
        gaps = np.diff(along)
        if (gaps < 1e-3).any():
            i = int(np.argmin(gaps))
            names = f"{files[order[i]].name}, {files[order[i + 1]].name}"
            raise ScanError(folder, f"two slices at the same position ({names}): duplicate or mixed series")
        _note_gap(folder, gaps, [files[i].name for i in order])
    sizes = {(int(ds.Rows), int(ds.Columns)) for ds in headers}
    if len(sizes) > 1:
        raise ScanError(folder, f"mixed slice sizes: {sorted(sizes)}")
    if len(files) < 2:
        raise ScanError(folder, "a single slice is not a 3D scan")
    if expected_slices is not None and len(files) != expected_slices:
        raise ScanError(folder, f"slice count mismatch: expected {expected_slices}, the series has {len(files)}")
    stack = np.stack([_hounsfield(_read_dicom(pydicom, files[i], pixels=True), files[i]) for i in order])
    # voxel (column, row, slice) -> LPS world, then to RAS+ for the orientation helpers
    row_spacing, col_spacing = (float(v) for v in getattr(headers[0], "PixelSpacing", (1.0, 1.0)))
    step = (positions[order[-1]] - positions[order[0]]) / (len(files) - 1)
    affine = np.eye(4)
    affine[:3, 0] = row_dir * col_spacing
    affine[:3, 1] = col_dir * row_spacing
    affine[:3, 2] = step
    affine[:3, 3] = positions[order[0]]
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    try:
        volume = orient_dhw(stack.transpose(2, 1, 0), affine)
    except ValueError as exc:
        raise ScanError(folder, str(exc)) from None
    return preprocess_volume(folder, volume, prep, is_hu=True, expected_slices=None)


def preprocess_volume(
    path: str | os.PathLike[str],
    volume: np.ndarray,
    prep: Preprocessing,
    *,
    is_hu: bool,
    expected_slices: int | None = None,
) -> np.ndarray:
    """Check an oriented float (D, H, W) volume, window it, and resample it to ``prep.size`` as uint8.

    The resampling is the slice readers' (``resample_planes``): ``antialias`` filters every slice, ``linear``
    and ``nearest`` read only the slices their depth plan samples.
    """
    bad = int(volume.size - np.count_nonzero(np.isfinite(volume)))
    if bad:
        raise ScanError(path, f"{bad} voxel(s) are NaN or infinite")
    if volume.shape[0] < 2:
        raise ScanError(path, f"a single slice (shape {volume.shape} after orientation) is not a 3D scan")
    check_slice_size(path, volume.shape[1], volume.shape[2], prep)  # 1x1 "slices" included
    if expected_slices is not None and volume.shape[0] != expected_slices:
        raise ScanError(path, f"slice count mismatch: expected {expected_slices}, the volume has {volume.shape[0]}")
    if is_hu:
        scaled = window_to_255(volume, prep.window_level, prep.window_width)
    else:
        scaled = np.clip(volume, 0.0, 255.0).astype(np.float32)
    result, _ = resample_planes(scaled.shape[0], lambda index: scaled[index], prep)
    return result


GAP_FACTOR = 1.5
"""A step between neighbouring slices this many times the usual one means slices are missing."""


def _dicom_headers(pydicom, folder: Path) -> tuple[list[Path], list]:
    """The DICOM files of a series folder and their headers; files that are not DICOM are skipped with a note.

    A stray ``README.txt`` or ``notes.pdf`` beside the slices should not cost the whole series. A file that
    is DICOM but damaged is still refused: its slice would be missing from the volume.
    """
    try:
        candidates = sorted(p for p in folder.iterdir() if p.is_file() and not is_ignored(p.name))
    except OSError as exc:
        raise ScanError(folder, f"cannot list the folder ({exc.strerror or exc})") from None
    files, headers, others = [], [], []
    for path in candidates:
        header = _read_dicom(pydicom, path, pixels=False, missing_ok=True)
        if header is None:
            others.append(path.name)
        else:
            files.append(path)
            headers.append(header)
    if not files:
        detail = f" ({len(others)} other file(s): {', '.join(others[:3])})" if others else ""
        raise ScanError(folder, f"no DICOM files in the folder{detail}")
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        note(folder, f"skipped {len(others)} file(s) that are not DICOM: {shown}")
    return files, headers


def _note_gap(folder: Path, steps: np.ndarray, names: list[str]) -> None:
    """Note a jump in slice positions (slices missing from the series): the volume is resampled by slice number,
    so the anatomy around the gap is squeezed along depth; the user should know, and may fix the series."""
    if len(steps) < 2:
        return
    usual = float(np.median(steps))
    i = int(np.argmax(steps))
    if steps[i] <= GAP_FACTOR * usual + 1e-3:
        return
    note(
        folder,
        f"gap of {steps[i]:.1f} mm in the slice positions between {names[i]} and {names[i + 1]} "
        f"(the other slices are {usual:.1f} mm apart): slices missing? The volume is resampled by slice number, "
        "squeezed along depth at the gap",
    )


def _read_dicom(pydicom, path: Path, *, pixels: bool, missing_ok: bool = False):
    """The dataset of one file; ``missing_ok``: None for a file that is not DICOM at all (no DICOM header)."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=not pixels)
    except pydicom.errors.InvalidDicomError:
        if missing_ok:
            return None
        raise ScanError(path, "not a DICOM file (no DICOM header)") from None
    except Exception as exc:
        raise ScanError(path, f"unreadable DICOM file ({type(exc).__name__}: {exc})") from None


def _hounsfield(ds, path: Path) -> np.ndarray:
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # missing pixel data, or a compressed transfer syntax without its decoder
        raise ScanError(path, f"cannot decode the pixel data ({type(exc).__name__}: {exc})") from None
    if pixels.ndim != 2:
        raise ScanError(path, f"expected one grayscale slice per file, got pixel data of shape {pixels.shape}")
    slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
    intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
    return pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)

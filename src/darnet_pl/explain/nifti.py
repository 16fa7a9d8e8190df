"""Maps as NIfTI files that overlay the scan they explain in 3D Slicer, ITK-SNAP or any NIfTI viewer.

A map lives on the model's grid: the (D, H, W) volume of ``Preprocessing.size`` whose axes run towards inferior,
posterior and the patient's left (``DISPLAY_AXES``, docs/explanation/preprocessing.md). The file stores that
array as it is (axis 0 = D) and lets the affine say where each voxel is:

- input given as NIfTI: the input's own affine, composed with the axis reorientation the reader applied, the
  in-plane border crop and the resampling to the model grid (sample ``i`` of ``n_out`` taken at input position
  ``(i + 0.5) * n_in / n_out - 0.5``, the readers' ``align_corners=False`` convention). Loaded beside the input,
  the map falls on the anatomy it was computed from (up to the half-voxel clamping at the volume's edges);
- otherwise (DICOM series, slice folders, synthetic volumes): no world geometry is known to us, so the affine
  only encodes the axis directions with 1-unit voxels centred on the origin (a signed axis permutation, i.e. a
  diagonal affine in RAS order): the map then overlays the model-grid input written beside it
  (``write_model_grid_pair``), which is what the network actually saw.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from darnet_pl.data.preprocess import Preprocessing
from darnet_pl.data.readers.scans import is_nifti
from darnet_pl.data.readers.volumes import DISPLAY_AXES
from darnet_pl.utils.io import atomic_path


def diagonal_affine(size: Sequence[int], spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Voxel (d, h, w) -> RAS+ world for a model-grid array: d towards inferior, h posterior, w patient-left.

    In RAS+ world coordinates x grows towards the patient's right, y anterior, z superior, so each array axis
    maps onto one world axis with a negative step; the volume's centre sits at the origin.
    """
    sd, sh, sw = (float(s) for s in spacing)
    affine = np.zeros((4, 4))
    affine[2, 0] = -sd  # d (superior -> inferior) along -z
    affine[1, 1] = -sh  # h (anterior -> posterior) along -y
    affine[0, 2] = -sw  # w (patient right -> left) along -x
    affine[3, 3] = 1.0
    centre = (np.asarray(size, dtype=np.float64) - 1.0) / 2.0
    affine[:3, 3] = -affine[:3, :3] @ centre
    return affine


def reference_affine(path: str | os.PathLike[str], prep: Preprocessing) -> np.ndarray:
    """Affine of the model grid made from the NIfTI file at ``path`` by ``read_nifti`` with ``prep``."""
    import nibabel as nib
    from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

    image = nib.load(Path(path))
    shape = tuple(int(s) for s in image.shape[:3])
    transform = ornt_transform(io_orientation(image.affine), axcodes2ornt(DISPLAY_AXES))
    depth, height, width = apply_orientation(np.broadcast_to(np.float32(0), shape), transform).shape
    oriented_to_file = inv_ornt_aff(transform, shape)  # oriented voxel -> the file's voxel
    left, top, right, bottom = prep.crop_box(height, width)
    extents = np.array([depth, bottom - top, right - left], dtype=np.float64)
    step = extents / np.asarray(prep.size, dtype=np.float64)
    grid_to_oriented = np.diag([*step, 1.0])
    grid_to_oriented[:3, 3] = 0.5 * step - 0.5 + np.array([0.0, top, left])
    return image.affine @ oriented_to_file @ grid_to_oriented


def model_grid_affine(source: str | os.PathLike[str] | None, prep: Preprocessing) -> np.ndarray:
    """``reference_affine`` for a NIfTI input, ``diagonal_affine`` for anything else (or no file)."""
    if source is not None and is_nifti(Path(source).name) and Path(source).is_file():
        return reference_affine(source, prep)
    return diagonal_affine(prep.size)


def save_nifti(
    path: str | os.PathLike[str], volume: np.ndarray, affine: np.ndarray, reference: str | os.PathLike[str] | None
) -> Path:
    """Write a (D, H, W) array with ``affine`` atomically (.nii or .nii.gz from the name).

    With a NIfTI ``reference`` its sform/qform codes are kept (scanner or aligned space), so viewers put both in
    the same space; otherwise the code is 'aligned' (2).
    """
    import nibabel as nib

    code = 2
    if reference is not None and is_nifti(Path(reference).name) and Path(reference).is_file():
        header = nib.load(Path(reference)).header
        code = int(header["sform_code"]) or int(header["qform_code"]) or 2
    image = nib.Nifti1Image(np.asarray(volume), affine)
    image.set_sform(affine, code=code)
    image.set_qform(affine, code=code)
    suffix = ".nii.gz" if str(path).endswith(".gz") else ".nii"
    with atomic_path(path, suffix=suffix) as tmp:
        nib.save(image, tmp)
    return Path(path)


def write_model_grid_pair(
    folder: str | os.PathLike[str],
    volume: np.ndarray,
    heatmap: np.ndarray,
    prep: Preprocessing,
    source: str | os.PathLike[str] | None = None,
) -> tuple[Path, Path]:
    """``volume.nii.gz`` (the uint8 model input) and ``cam.nii.gz`` (float32 map) sharing one affine."""
    folder = Path(folder)
    affine = model_grid_affine(source, prep)
    image = np.asarray(volume)
    if image.dtype != np.uint8:
        image = np.rint(np.clip(image.astype(np.float32) * 255.0, 0.0, 255.0)).astype(np.uint8)
    volume_path = save_nifti(folder / "volume.nii.gz", image, affine, source)
    map_path = save_nifti(folder / "cam.nii.gz", np.asarray(heatmap, dtype=np.float32), affine, source)
    return volume_path, map_path

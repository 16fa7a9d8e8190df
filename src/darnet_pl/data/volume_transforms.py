"""The own-scan preprocessing (NIfTI, DICOM series) as one chain of MONAI dictionary transforms.

``volume_transform_configs(prep)`` is the single definition: a list of MONAI config items (``_target_`` plus
arguments, JSON-able) built from a ``Preprocessing``. Training (``data=folder`` caches through
``load_volume``), ``darnet-predict``/``darnet-evaluate`` (``load_volume``) and the exported MONAI bundle
(``configs/inference.json``, written from the same list by ``darnet_pl.inference.bundle``) all run it, so the three
cannot drift. The chain, for key ``image``:

1. ``LoadScand`` - NIfTI (nibabel) and DICOM series through this package's readers, not MONAI's ``NibabelReader``
   and ``PydicomReader`` (``darnet_pl.data.readers.volumes`` says why, with the figures); (1, X, Y, Z) float32
   MetaTensor with its RAS affine.
2. ``OrientDHWd`` - depth superior->inferior, rows anterior->posterior, columns right->left: the arithmetic of
   MONAI's ``Orientationd(axcodes="IPL")`` (identical arrays), as a numpy view instead of its whole-scan copy.
3. ``CheckScand`` - a single slice, degenerate slices, the slice count an index promised.
4. ``BorderCropd`` - the border crop scaled to the slice (``preprocess.crop_box``), a view; before the window,
   which then touches a third fewer voxels (both act voxel by voxel, so the order is free).
5. ``HounsfieldWindowd`` - [level - width/2, level + width/2] HU to 0-255, clipped (a NIfTI stored as unscaled
   uint8 is only clipped): the hand-written numpy window, not MONAI's ``ScaleIntensityRange``, which computes the
   same to float rounding but 13x slower (284 against 21 ms CPU for a 416x416x128 crop on one core).
6. The resize to ``prep.size``: ``linear`` is MONAI's ``Resized(mode="trilinear")`` - the same
   ``align_corners=False`` interpolation the hand-written separable plan computes (0 gray levels apart on random
   volumes, 120-300 slices to 64/16); ``nearest`` is ``Resized(mode="nearest-exact")`` along depth first, then
   trilinear in-plane on the slices it kept only, as the hand-written plan does (the steps act on separate axes,
   so the order changes nothing). ``antialias`` stays hand-written (``AntialiasResized``, the separable
   scikit-image filter of ``preprocess.antialias_matrix``): MONAI's ``Resized(anti_aliasing=True)`` filters with
   a zero-padded, erf-sampled Gaussian and is up to 80 gray levels off scikit-image at the volume's borders (mean
   0.8-4.8, up to 3 inside), where ours stays within 1 (``tests/data/test_antialias.py``).
7. ``QuantizeUint8d`` - rounded to uint8, what the cache stores and the model reads divided by 255.

Against the hand-written pipeline this chain replaced, on 512x512 Hounsfield-unit NIfTI scans of 40-300 slices, a
permuted-axes NIfTI, a uint8 NIfTI and a DICOM series, at 64x224x224 (crop 48) and 16x64x64: ``antialias`` gives
identical volumes; ``linear`` and ``nearest`` differ by at most 1 gray level, on up to 8.5% of the voxels at
64x224x224, 99.97% of them the rounding tie of air at exactly -1000 HU (59.5 gray levels, rounded either way by the
order of float operations), 0.03% on the uint8 scan, none at 16x64x64. Speed (``python -m darnet_pl.bench.volumes``,
CPU time per scan on one core, mean of the seven scans): linear 594 -> 491 ms, nearest 560 -> 486 ms, antialias
467 -> 390 ms.

Slice-image folders (CC-CCII) keep the streaming reader of ``darnet_pl.data.readers.slices``: it decodes only the
slices the depth plan needs and never holds the full-resolution stack (5.4 scans/s per core on CC-CCII-like
scans, 1.3x a decode-everything torch baseline and 4.1x the authors' pipeline; README "What preprocessing
does"), which a load-everything transform chain cannot be.

MONAI's ``Compose`` re-raises a transform's error as ``RuntimeError("applying transform ...")``; ``read_scan``
calls the transforms one by one, so a bad scan stays a one-line ``ScanError``.
"""

from __future__ import annotations

import os
import pydoc
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from darnet_pl.data.preprocess import Preprocessing, crop_box, resample_planes
from darnet_pl.data.readers.scans import ScanError, check_slice_size, scan_kind
from darnet_pl.data.readers.volumes import UNITS_KEY, load_dicom_series, load_nifti, orient_dhw

IMAGE_KEY = "image"
EXPECTED_SLICES_KEY = "expected_slices"
"""Optional entry of the data dictionary: the slice count a dataset index promises (checked after orienting)."""
_HERE = __name__


def _source(image: Any) -> str:
    meta = getattr(image, "meta", None) or {}
    return str(meta.get("filename_or_obj", "the scan"))


class LoadScand(MapTransform):
    """A NIfTI file or DICOM series folder path -> (1, X, Y, Z) float32 MetaTensor with its RAS affine; the path is
    also kept as ``<key>_meta_dict["filename_or_obj"]`` (where MONAI's writers, e.g. ``SaveClassificationd``, look)."""

    def __init__(self, keys: KeysCollection = IMAGE_KEY, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            path = str(d[key])
            d[key] = load_scan(path)
            d[f"{key}_meta_dict"] = {"filename_or_obj": path, UNITS_KEY: d[key].meta[UNITS_KEY]}
        return d


def load_scan(path: str | os.PathLike[str]):
    """The loader ``LoadScand`` applies: NIfTI or DICOM by what the path is (a slice-image folder is refused)."""
    kind = scan_kind(path)
    if kind == "nifti":
        return load_nifti(path)
    if kind == "dicom":
        return load_dicom_series(path)
    raise ScanError(path, "a slice-image folder: read it with darnet_pl's slice reader (load_volume), not LoadScand")


class OrientDHWd(MapTransform):
    """Reorient a (1, X, Y, Z) MetaTensor (RAS affine) to (1, D, H, W): depth superior->inferior, rows
    anterior->posterior, columns right->left (``readers.volumes.orient_dhw``), as a numpy view - no copy.

    The same arithmetic as MONAI's ``Orientationd(axcodes="IPL")`` (nibabel's closest-canonical axis permutation
    and flips; identical arrays on every orientation tested in tests/data/test_volume_transforms.py), which is not
    used because torch has no negative strides: its flip copies the whole scan (79 ms CPU for a 512x512x128 NIfTI on
    one core), where the view costs nothing and the window's pass that follows makes the one copy.
    The result is a numpy array; the source path stays in ``<key>_meta_dict``.
    """

    def __init__(self, keys: KeysCollection = IMAGE_KEY, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            affine = np.asarray(torch.as_tensor(image.affine), dtype=np.float64)
            voxels = torch.as_tensor(image).as_subclass(torch.Tensor).numpy()
            try:
                d[key] = orient_dhw(voxels[0], affine)[None]
            except ValueError as exc:
                raise ScanError(_source(image), str(exc)) from None
        return d


class CheckScand(MapTransform):
    """Refuse an oriented (1, D, H, W) scan of a shape no CT volume has, or with slices far smaller than the model's
    input (``model_size``; ``readers.scans.check_slice_size``, as for slice folders), in one line naming its file
    (NaN/inf voxels are refused by the loader, on the array it reads)."""

    def __init__(
        self, keys: KeysCollection = IMAGE_KEY, expected_key: str = EXPECTED_SLICES_KEY,
        model_size: Sequence[int] | None = None, allow_missing_keys: bool = False,
    ) -> None:  # fmt: skip
        super().__init__(keys, allow_missing_keys)
        self.expected_key = expected_key
        self.model_size = tuple(model_size) if model_size is not None else None

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        expected = d.get(self.expected_key)
        for key in self.key_iterator(d):
            shape = tuple(d[key].shape[1:])
            source = (d.get(f"{key}_meta_dict") or {}).get("filename_or_obj") or _source(d[key])
            if shape[0] < 2:
                raise ScanError(source, f"a single slice (shape {shape} after orientation) is not a 3D scan")
            if self.model_size is not None:
                check_slice_size(source, shape[1], shape[2], self.model_size)  # 1x1 "slices" included
            elif min(shape[1:]) < 2:
                raise ScanError(source, f"degenerate slices: shape {shape} after orientation")
            if expected is not None and shape[0] != int(expected):
                raise ScanError(source, f"slice count mismatch: expected {int(expected)}, the volume has {shape[0]}")
        return d


class HounsfieldWindowd(MapTransform):
    """Hounsfield units through the window [level - width/2, level + width/2] onto 0-255, clipped
    (``preprocess.window_to_255``); a scan loaded as already-windowed uint8 is only clipped to 0-255.

    The arithmetic of ``preprocess.window_to_255``, writing one C-ordered copy of the (oriented, cropped) view.
    Not MONAI's ``ScaleIntensityRange``, although it computes the same to float rounding: it makes five passes over
    the scan with a new tensor each (subtract, divide, multiply, add, clip): 284 ms CPU for a 416x416x128 crop on
    one core against 21 ms for this window - it would be the largest step of the whole chain.
    """

    def __init__(
        self, keys: KeysCollection = IMAGE_KEY, level: float = -600.0, width: float = 1500.0,
        allow_missing_keys: bool = False,
    ) -> None:  # fmt: skip
        super().__init__(keys, allow_missing_keys)
        self.level = float(level)
        self.width = float(width)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            units = (d.get(f"{key}_meta_dict") or {}).get(UNITS_KEY, "hounsfield")
            voxels = image if isinstance(image, np.ndarray) else torch.as_tensor(image).detach().cpu().numpy()
            out = np.empty(voxels.shape, dtype=np.float32)  # C order: the one copy of the (cropped) scan
            if units == "uint8":
                np.clip(voxels, 0.0, 255.0, out=out)
            else:
                low = self.level - self.width / 2.0
                np.subtract(voxels, np.float32(low), out=out)
                np.multiply(out, np.float32(255.0 / self.width), out=out)
                np.clip(out, 0.0, 255.0, out=out)
            d[key] = out
        return d


class BorderCropd(MapTransform):
    """Remove ``border_crop`` pixels of a ``reference_width``-wide slice (scaled to the slice) on each in-plane side
    of a (C, D, H, W) volume: a slice of the array (a view; MONAI's ``SpatialCrop`` would first turn the oriented
    numpy view into a tensor, copying it)."""

    def __init__(
        self, keys: KeysCollection = IMAGE_KEY, border_crop: int = 48, reference_width: int = 512,
        allow_missing_keys: bool = False,
    ) -> None:  # fmt: skip
        super().__init__(keys, allow_missing_keys)
        self.border_crop = int(border_crop)
        self.reference_width = int(reference_width)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            _, height, width = d[key].shape[1:]
            left, top, right, bottom = crop_box(height, width, self.border_crop, self.reference_width)
            d[key] = d[key][:, :, top:bottom, left:right]
        return d


class AntialiasResized(MapTransform):
    """Resize a (1, D, H, W) 0-255 volume as ``skimage.transform.resize(..., anti_aliasing=True)`` (the authors'
    resize; ``preprocess.resample_planes`` with ``antialias``), returned as uint8 values in float32."""

    def __init__(self, keys: KeysCollection, spatial_size: Sequence[int], allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.prep = Preprocessing(size=tuple(spatial_size), border_crop=0, depth_interpolation="antialias")

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            volume = np.asarray(torch.as_tensor(d[key])[0].cpu().numpy(), dtype=np.float32)
            resized, _ = resample_planes(volume.shape[0], lambda i, v=volume: v[i], self.prep)
            d[key] = torch.from_numpy(resized.astype(np.float32))[None]
        return d


class QuantizeUint8d(MapTransform):
    """Round a 0-255 volume to uint8 (clipped), as the cache stores it and ``darnet-predict`` reads it."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = torch.as_tensor(d[key]).clamp(0.0, 255.0).round().to(torch.uint8)
        return d


def resize_configs(prep: Preprocessing, key: str = IMAGE_KEY) -> list[dict[str, Any]]:
    """The resize step of ``prep.depth_interpolation`` (see the module docstring)."""
    size = list(prep.size)
    if prep.depth_interpolation == "antialias":
        return [{"_target_": f"{_HERE}.AntialiasResized", "keys": key, "spatial_size": size}]
    linear = {"_target_": "monai.transforms.Resized", "keys": key, "mode": "trilinear", "align_corners": False}
    if prep.depth_interpolation == "linear":
        return [{**linear, "spatial_size": size}]
    return [  # nearest: the nearest slices first (in-plane kept: -1), then bilinear in-plane on those only
        {"_target_": "monai.transforms.Resized", "keys": key, "spatial_size": [size[0], -1, -1],
         "mode": "nearest-exact"},
        {**linear, "spatial_size": size},
    ]  # fmt: skip


def volume_transform_configs(prep: Preprocessing, key: str = IMAGE_KEY) -> list[dict[str, Any]]:
    """The preprocessing of ``prep`` for NIfTI/DICOM scans as MONAI config items (``_target_`` + arguments).

    The output is the uint8 model grid, (1, D, H, W); the model reads it divided by 255.
    """
    return [
        {"_target_": f"{_HERE}.LoadScand", "keys": key},
        {"_target_": f"{_HERE}.OrientDHWd", "keys": key},
        {"_target_": f"{_HERE}.CheckScand", "keys": key, "model_size": list(prep.size)},
        {"_target_": f"{_HERE}.BorderCropd", "keys": key, "border_crop": prep.border_crop,
         "reference_width": prep.reference_width},
        {"_target_": f"{_HERE}.HounsfieldWindowd", "keys": key, "level": prep.window_level,
         "width": prep.window_width},
        *resize_configs(prep, key),
        {"_target_": f"{_HERE}.QuantizeUint8d", "keys": key},
    ]  # fmt: skip


def instantiate(config: Mapping[str, Any]) -> Any:
    """One config item (a ``_target_`` dotted path and keyword arguments) as its object."""
    target = pydoc.locate(str(config["_target_"]))
    if not callable(target):
        raise ValueError(f"_target_ {config['_target_']!r}: not an importable callable")
    return target(**{k: v for k, v in config.items() if k != "_target_"})


def volume_transforms(prep: Preprocessing, key: str = IMAGE_KEY) -> list[MapTransform]:
    """``volume_transform_configs(prep)`` instantiated, in order."""
    return [instantiate(config) for config in volume_transform_configs(prep, key)]


def read_scan(path: str | os.PathLike[str], prep: Preprocessing, expected_slices: int | None = None) -> np.ndarray:
    """The uint8 (D, H, W) model grid of a NIfTI file or DICOM series folder, through the transform chain."""
    data: dict[Hashable, Any] = {IMAGE_KEY: str(path)}
    if expected_slices is not None:
        data[EXPECTED_SLICES_KEY] = int(expected_slices)
    for transform in volume_transforms(prep):
        data = transform(data)
    return np.ascontiguousarray(torch.as_tensor(data[IMAGE_KEY])[0].numpy())

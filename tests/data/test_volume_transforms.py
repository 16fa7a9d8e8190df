"""The NIfTI/DICOM transform chain against MONAI's own transforms and the hand-written reference it replaced.

The reader tests (tests/data/readers) run the chain through ``load_volume`` unchanged: orientation, window and DICOM
ordering read the same gray levels as before. Here: the steps kept hand-written give what the MONAI transform they
stand in for gives (``Orientationd``, ``ScaleIntensityRange``), and MONAI's ``Resized`` gives the reference resize.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Orientationd, ScaleIntensityRange

from darnet_pl.data.preprocess import Preprocessing, resize_volume_reference, window_to_255
from darnet_pl.data.volume_transforms import (
    IMAGE_KEY,
    HounsfieldWindowd,
    OrientDHWd,
    read_scan,
    volume_transform_configs,
)


@pytest.mark.parametrize("axcodes", ["RAS", "LPS", "SLP", "AIR", "PIL"])
def test_orientation_view_equals_monai_orientationd(axcodes):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(5, 6, 7)).astype(np.float32)
    start = nib.orientations.axcodes2ornt("RAS")
    ornt = nib.orientations.ornt_transform(start, nib.orientations.axcodes2ornt(tuple(axcodes)))
    image = nib.Nifti1Image(data, np.diag([0.8, 0.9, 2.5, 1.0])).as_reoriented(ornt)
    affine = torch.as_tensor(image.affine)
    tensor = MetaTensor(torch.from_numpy(np.ascontiguousarray(image.dataobj, dtype=np.float32))[None], affine=affine)
    monai = Orientationd(IMAGE_KEY, axcodes="IPL", labels=(("L", "R"), ("P", "A"), ("I", "S")))
    expected = monai({IMAGE_KEY: tensor.clone()})[IMAGE_KEY].numpy()
    ours = OrientDHWd(IMAGE_KEY)({IMAGE_KEY: tensor})[IMAGE_KEY]
    np.testing.assert_array_equal(ours, expected)


def test_window_equals_monai_scale_intensity_range():
    hu = np.random.default_rng(1).uniform(-2000, 1500, size=(1, 8, 30, 30)).astype(np.float32)
    ours = HounsfieldWindowd(IMAGE_KEY, level=-600, width=1500)({IMAGE_KEY: hu})[IMAGE_KEY]
    monai = ScaleIntensityRange(a_min=-1350, a_max=150, b_min=0, b_max=255, clip=True)(torch.from_numpy(hu))
    np.testing.assert_allclose(ours, np.asarray(monai), atol=1e-4)
    np.testing.assert_array_equal(ours[0], window_to_255(hu[0], -600, 1500))


@pytest.mark.parametrize("mode", ["linear", "nearest"])
def test_monai_resize_matches_the_reference_resize(tmp_path, mode):
    """A uint8 NIfTI (no window) read through the chain = the straightforward torch resize of the cropped stack."""
    rng = np.random.default_rng(2)
    stack = np.clip(rng.normal(120, 50, size=(37, 80, 70)), 0, 255).astype(np.uint8)  # (D, H, W) as displayed
    path = tmp_path / "u8.nii"
    voxels = stack[::-1, ::-1, ::-1].transpose(2, 1, 0)  # (x: R->L reversed, y, z) so that RAS+ gives back `stack`
    nib.save(nib.Nifti1Image(np.ascontiguousarray(voxels), np.eye(4)), path)
    for size in ((16, 32, 24), (50, 90, 90)):
        prep = Preprocessing(size=size, border_crop=40, depth_interpolation=mode)
        reference = resize_volume_reference(stack.astype(np.float32), prep).astype(int)
        assert np.abs(read_scan(path, prep).astype(int) - reference).max() <= 1


def test_the_bundle_and_the_readers_share_one_list():
    prep = Preprocessing(size=(16, 32, 32), depth_interpolation="nearest")
    configs = volume_transform_configs(prep)
    assert [c["_target_"].rsplit(".", 1)[1] for c in configs] == [
        "LoadScand", "OrientDHWd", "CheckScand", "BorderCropd", "HounsfieldWindowd", "Resized", "Resized",
        "QuantizeUint8d",
    ]  # fmt: skip
    assert configs[-3]["spatial_size"] == [16, -1, -1] and configs[-3]["mode"] == "nearest-exact"

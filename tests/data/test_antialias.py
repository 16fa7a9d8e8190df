"""``depth_interpolation="antialias"``: the authors' ``skimage.transform.resize(volume, size, anti_aliasing=True)``.

The fast readers (slice folders, NIfTI, DICOM) must agree with scikit-image within 1 gray level after the cache's
uint8 rounding, read every slice (a finding on one slice between linear's samples still reaches the volume), and
name their own cache folder.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from darnet_pl.data.phantoms.dicom import save_ct_slice
from darnet_pl.data.preprocess import (
    DEPTH_INTERPOLATIONS,
    AntialiasPlaneResizer,
    Preprocessing,
    antialias_matrix,
    resample_planes,
    resize_volume_reference,
    sampling_plan,
    to_uint8,
    window_to_255,
)
from darnet_pl.data.readers import slices as slices_module
from darnet_pl.data.readers.load import load_volume
from darnet_pl.data.readers.scans import ScanError
from darnet_pl.data.readers.slices import read_slice_folder, read_slice_folder_baseline
from darnet_pl.data.readers.volumes import orient_dhw
from darnet_pl.data.records import ScanRecord


def smooth_noisy_scan(n_slices: int, size: int, seed: int = 0) -> np.ndarray:
    """uint8 (n_slices, size, size): random smooth waves, some near the output's Nyquist frequency (aliasing
    would show), plus pixel noise. Cheap enough for a 300x512x512 scan (float32 outer products, uint8 noise)."""
    rng = np.random.default_rng(seed)
    axes = [np.linspace(0.0, 1.0, n, dtype=np.float32) for n in (n_slices, size, size)]

    def wave(axis: int) -> np.ndarray:
        cycles = rng.uniform(0.5, 0.3 * len(axes[axis]))
        return np.sin(np.float32(2 * np.pi * cycles) * axes[axis] + np.float32(rng.uniform(0, 2 * np.pi)))

    image = np.full((n_slices, size, size), 108.0, np.float32)
    for _ in range(3):
        image += 25.0 * wave(0)[:, None, None] * wave(1)[None, :, None]
        image += 25.0 * (wave(1)[:, None] * wave(2)[None, :])[None]
        image += 10.0 * wave(0)[:, None, None] * wave(2)[None, None, :]
    image += rng.integers(0, 41, image.shape, dtype=np.uint8)
    return np.clip(np.rint(image, out=image), 0, 255, out=image).astype(np.uint8)


def skimage_reference(volume: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """The authors' converter: crop, ``resize(img, size, anti_aliasing=True)`` on [0, 1], then the cache's uint8."""
    transform = pytest.importorskip("skimage.transform")
    left, top, right, bottom = prep.crop_box(*volume.shape[1:])
    cropped = volume[:, top:bottom, left:right]
    if cropped.dtype == np.uint8:  # skimage's img_as_float: uint8 / 255
        resized = transform.resize(cropped, prep.size, anti_aliasing=True)
    else:  # a windowed 0-255 float volume, as the NIfTI/DICOM readers hand it over
        resized = transform.resize(cropped.astype(np.float64) / 255.0, prep.size, anti_aliasing=True)
    return to_uint8(resized * 255.0)


def max_diff(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def write_png_slices(folder: Path, volume: np.ndarray) -> Path:
    folder.mkdir(parents=True)
    for k, plane in enumerate(volume):
        Image.fromarray(plane).save(folder / f"{k + 1}.png")
    return folder


# ------------------------------------------------------------------------------------ the arithmetic


@pytest.mark.parametrize(
    ("n_in", "n_out"), [(300, 64), (416, 224), (690, 64), (26, 64), (2, 64), (7, 7), (10, 3), (10, 1), (1, 4)]
)
def test_axis_matrix_is_skimage_along_one_axis(n_in, n_out):
    transform = pytest.importorskip("skimage.transform")
    signal = np.random.default_rng(n_in).random(n_in)
    expected = transform.resize(signal, (n_out,), anti_aliasing=True)
    np.testing.assert_allclose(antialias_matrix(n_in, n_out) @ signal, expected, atol=1e-12)
    np.testing.assert_allclose(antialias_matrix(n_in, n_out).sum(axis=1), 1.0)  # a weighted mean: flat stays flat


@pytest.mark.parametrize(
    ("n_slices", "size", "out", "crop"),
    [
        (300, 128, (16, 64, 64), 12),  # strong downsampling along every axis
        (300, 512, (64, 224, 224), 48),  # the paper: crop 48 of 512, 300 slices -> 64x224x224
        (40, 128, (64, 224, 224), 12),  # upsampling: no filter, mirrored (not clamped) edges
        (37, 64, (16, 24, 20), 6),  # non-square output, odd factors
    ],
)
def test_antialias_matches_skimage_within_one_gray_level(n_slices, size, out, crop):
    volume = smooth_noisy_scan(n_slices, size, seed=n_slices + size)
    prep = Preprocessing(size=out, border_crop=crop, reference_width=size, depth_interpolation="antialias")
    expected = skimage_reference(volume, prep)
    ours, loaded = resample_planes(n_slices, lambda index: volume[index], prep, threads=1)
    assert loaded == list(range(n_slices))
    assert max_diff(ours, expected) <= 1
    assert np.count_nonzero(ours != expected) <= 1e-4 * ours.size  # only values at a rounding tie may differ
    threaded, _ = resample_planes(n_slices, lambda index: volume[index], prep, threads=3)
    np.testing.assert_array_equal(threaded, ours)  # threads change the order of reading, not the sums
    if size <= 128:
        assert max_diff(resize_volume_reference(volume, prep), expected) <= 1  # the SciPy reference, too


def test_plane_resizer_is_skimage_in_plane():
    transform = pytest.importorskip("skimage.transform")
    plane = smooth_noisy_scan(4, 96)[1]
    prep = Preprocessing(size=(1, 40, 56), border_crop=8, reference_width=96, depth_interpolation="antialias")
    resize = AntialiasPlaneResizer(plane.shape, prep)
    expected = transform.resize(plane[8:-8, 8:-8].astype(np.float64), (40, 56), anti_aliasing=True)
    np.testing.assert_allclose(resize(plane), expected, atol=1e-3)
    assert resize.transposed(plane).flags.c_contiguous and resize.transposed(plane).shape == (56, 40)
    with pytest.raises(ValueError, match="slice shape"):
        resize(plane[:-1])


# -------------------------------------------------------------------------------------- the setting


def test_antialias_setting_round_trips_and_names_its_own_cache():
    assert "antialias" in DEPTH_INTERPOLATIONS
    prep = Preprocessing(depth_interpolation="antialias")
    settings = prep.to_dict()
    assert settings["depth_interpolation"] == "antialias"
    assert Preprocessing(**{k: v for k, v in settings.items() if k != "version"}) == prep
    keys = {Preprocessing(depth_interpolation=mode).cache_key() for mode in DEPTH_INTERPOLATIONS}
    assert len(keys) == len(DEPTH_INTERPOLATIONS)
    assert prep.cache_key() == Preprocessing(depth_interpolation="antialias").cache_key()  # stable
    with pytest.raises(ValueError, match="antialias"):
        sampling_plan(300, 64, "antialias")


# ------------------------------------------------------------------------------------ slice folders


def test_antialias_reads_every_slice_and_keeps_a_one_slice_finding(tmp_path, monkeypatch):
    n_slices, size = 300, (16, 16)
    linear_plan = sampling_plan(n_slices, 64, "linear")
    finding = next(k for k in range(150, n_slices) if k not in linear_plan.needed)
    values = np.zeros(n_slices, np.uint8)
    values[finding] = 255
    folder = tmp_path / "scan"
    folder.mkdir()
    for k, value in enumerate(values):
        Image.fromarray(np.full(size, value, np.uint8)).save(folder / f"{k + 1}.png")
    decoded: list[str] = []
    real = slices_module.decode_slice
    monkeypatch.setattr(slices_module, "decode_slice", lambda path: decoded.append(path.name) or real(path))
    for mode in ("linear", "antialias"):
        decoded.clear()
        volume = read_slice_folder(folder, Preprocessing(size=(64, 8, 8), border_crop=0, depth_interpolation=mode))
        if mode == "linear":
            assert len(decoded) == 128 and f"{finding + 1}.png" not in decoded
            assert volume.max() == 0  # the finding never reaches the model
        else:
            assert sorted(decoded) == sorted(f"{k + 1}.png" for k in range(n_slices))  # each slice once
            assert volume.max() >= 30  # blurred along depth (sigma 1.8 slices), but there
            assert abs(int(np.argmax(volume[:, 4, 4])) - (finding + 0.5) * 64 / n_slices + 0.5) <= 1


def test_slice_folder_antialias_matches_skimage(tmp_path):
    volume = smooth_noisy_scan(90, 128, seed=3)
    folder = write_png_slices(tmp_path / "scan", volume)
    prep = Preprocessing(size=(32, 64, 64), border_crop=12, reference_width=128, depth_interpolation="antialias")
    expected = skimage_reference(volume, prep)
    assert max_diff(read_slice_folder(folder, prep), expected) <= 1
    assert max_diff(read_slice_folder_baseline(folder, prep), expected) <= 1
    # the cleaning hook (re-ordered, repeated slices left out) feeds the same filter
    positions = list(range(89, -1, -2))
    assert (
        max_diff(read_slice_folder(folder, prep, positions=positions), skimage_reference(volume[positions], prep)) <= 1
    )


def test_a_damaged_slice_fails_the_antialias_read(tmp_path):
    folder = write_png_slices(tmp_path / "scan", smooth_noisy_scan(40, 32))
    (folder / "23.png").write_bytes((folder / "23.png").read_bytes()[:60])  # truncated pixel data
    with pytest.raises(ScanError, match=r"23\.png"):
        read_slice_folder(folder, Preprocessing(size=(8, 16, 16), border_crop=0, depth_interpolation="antialias"))


# ------------------------------------------------------------------------------------- NIfTI, DICOM


def test_nifti_antialias_matches_skimage_of_the_windowed_volume(tmp_path):
    rng = np.random.default_rng(5)
    hu = (smooth_noisy_scan(64, 48, seed=5).astype(np.float32) - 128.0) * 8.0 - 600.0  # around the lung window
    hu += rng.normal(0.0, 30.0, hu.shape).astype(np.float32)
    data = np.ascontiguousarray(hu.transpose(2, 1, 0))  # stored (x, y, z), RAS affine
    affine = np.diag([0.7, 0.7, 1.25, 1.0])
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    prep = Preprocessing(size=(16, 40, 40), border_crop=4, reference_width=48, depth_interpolation="antialias")
    volume = load_volume(ScanRecord("CP", "p", "s", path=str(path)), prep)
    stored = np.asarray(nib.load(path).get_fdata(dtype=np.float32))
    oriented = window_to_255(orient_dhw(stored, affine), prep.window_level, prep.window_width)
    assert max_diff(volume, skimage_reference(oriented, prep)) <= 1
    linear = load_volume(ScanRecord("CP", "p", "s", path=str(path)), replace(prep, depth_interpolation="linear"))
    assert max_diff(volume, linear) > 1  # the setting changes what the NIfTI path computes


def test_dicom_antialias_matches_the_nifti_of_the_same_scan(tmp_path):
    from pydicom.uid import generate_uid

    hu = (smooth_noisy_scan(24, 20, seed=7).astype(np.float64) - 128.0) * 8.0 - 600.0  # (z, row, col)
    folder = tmp_path / "series"
    folder.mkdir()
    uid = generate_uid()
    for k, plane in enumerate(hu):  # slice k at z = 2.5 k (LPS, +z superior)
        save_ct_slice(folder / f"IM{k:03d}.dcm", plane, [-10.0, -10.0, 2.5 * k], uid, 0.7)
    prep = Preprocessing(size=(8, 12, 12), border_crop=2, reference_width=20, depth_interpolation="antialias")
    volume = load_volume(ScanRecord("CP", "p", "s", path=str(folder)), prep)
    # superior first (z descending), rows anterior->posterior, columns right->left: the stored order, z flipped
    stored = np.rint(hu + 1024.0) - 1024.0
    expected = skimage_reference(window_to_255(stored[::-1].astype(np.float32), -600.0, 1500.0), prep)
    assert max_diff(volume, expected) <= 1

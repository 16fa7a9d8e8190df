"""Scan readers: slice folders (fast and baseline), NIfTI, DICOM, the scan-list CSV and the dispatcher.

Every bad input must fail with a one-line ``ScanError`` that names the offending path and the cause.
"""

from __future__ import annotations

import io
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from darnet_pl.data.phantoms.dicom import save_ct_slice
from darnet_pl.data.preprocess import Preprocessing, sampling_plan
from darnet_pl.data.readers import slices as slices_module
from darnet_pl.data.readers.load import load_volume
from darnet_pl.data.readers.scans import ScanError, collecting_notes, scan_kind
from darnet_pl.data.readers.slices import list_slices, read_slice_folder, read_slice_folder_baseline
from darnet_pl.data.readers.volumes import orient_dhw
from darnet_pl.data.records import ScanRecord
from darnet_pl.data.sources.folder import read_scan_list

# --------------------------------------------------------------------------------------------- helpers


def write_slices(
    folder: Path,
    values: list[int] | np.ndarray,
    size: tuple[int, int] = (32, 32),
    ext: str = ".png",
    mode: str = "L",
    start: int = 1,
) -> Path:
    """Slices ``start``.. with constant gray level ``values[k]`` (or full 2D arrays when ``values`` is 3D)."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, value in enumerate(values):
        array = np.asarray(value, dtype=np.uint8)
        array = np.full((size[1], size[0]), array, dtype=np.uint8) if array.ndim == 0 else array
        image = Image.fromarray(array)
        if mode != "L":
            image = image.convert(mode)
        kwargs = {"quality": 100} if ext.lower() in (".jpg", ".jpeg") else {}
        image.save(folder / f"{k + start}{ext}", format="JPEG" if "jp" in ext.lower() else "PNG", **kwargs)
    return folder


def assert_scan_error(excinfo: pytest.ExceptionInfo[ScanError], path: Path | str, *causes: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: "), message
    for cause in causes:
        assert cause in message, message


def identity(shape: tuple[int, int, int]) -> Preprocessing:
    """No crop, output = input size: readers must return the slices untouched, in their order."""
    return Preprocessing(size=shape, border_crop=0)


# ----------------------------------------------------------------------------------- preprocessing


def test_preprocessing_validates_and_scales_the_crop():
    prep = Preprocessing()
    assert prep.crop_box(512, 512) == (48, 48, 464, 464)
    assert prep.crop_box(256, 256) == (24, 24, 232, 232)
    assert prep.crop_box(400, 512) == (48, 38, 464, 362)  # (left, top, right, bottom): proportional per axis
    assert Preprocessing(border_crop=0).crop_box(37, 53) == (0, 0, 53, 37)
    assert Preprocessing(size=[8, 16, 16]).size == (8, 16, 16)  # Hydra hands lists
    with pytest.raises(ValueError, match="border_crop"):
        Preprocessing(border_crop=256)
    with pytest.raises(ValueError, match="depth_interpolation"):
        Preprocessing(depth_interpolation="cubic")
    with pytest.raises(ValueError, match="size"):
        Preprocessing(size=(64, 224))


def test_sampling_plan_matches_torch_and_lists_needed_slices():
    torch = pytest.importorskip("torch")
    for n_in, n_out in [(120, 64), (30, 64), (64, 64), (500, 64), (7, 3)]:
        plan = sampling_plan(n_in, n_out, "linear")
        signal = np.random.default_rng(n_in).normal(size=n_in).astype(np.float32)
        ours = plan.w0 * signal[plan.lower] + plan.w1 * signal[plan.upper]
        ref = torch.nn.functional.interpolate(torch.from_numpy(signal)[None, None], size=n_out, mode="linear")
        np.testing.assert_allclose(ours, ref[0, 0].numpy(), atol=1e-5)
    assert sampling_plan(500, 64, "nearest").needed == sorted(set(sampling_plan(500, 64, "nearest").lower))
    assert len(sampling_plan(500, 64, "nearest").needed) == 64
    assert len(sampling_plan(500, 64, "linear").needed) == 128
    assert sampling_plan(64, 64, "linear").needed == list(range(64))


# ------------------------------------------------------------------------------------ slice folders


def test_slices_are_ordered_numerically(tmp_path):
    folder = write_slices(tmp_path / "scan", [10 * (k + 1) for k in range(12)])  # 1.png .. 12.png
    assert [p.name for p in list_slices(folder)][:4] == ["1.png", "2.png", "3.png", "4.png"]
    volume = read_slice_folder(folder, identity((12, 32, 32)))
    assert volume.dtype == np.uint8 and volume.shape == (12, 32, 32)
    assert volume[:, 5, 5].tolist() == [10 * (k + 1) for k in range(12)]
    # after depth resampling the order survives: 12 -> 6 slices averages neighbouring pairs
    halved = read_slice_folder(folder, identity((6, 32, 32)))
    assert halved[:, 0, 0].tolist() == [15, 35, 55, 75, 95, 115]


def test_zero_padded_numbers_order_too(tmp_path):
    folder = tmp_path / "scan"
    folder.mkdir()
    for number, value in [("009", 90), ("010", 100), ("0001", 10), ("2", 20)]:
        Image.fromarray(np.full((8, 8), value, np.uint8)).save(folder / f"{number}.png")
    assert read_slice_folder(folder, identity((4, 8, 8)))[:, 0, 0].tolist() == [10, 20, 90, 100]


@pytest.mark.parametrize("interpolation", ["linear", "nearest"])
def test_fast_reader_equals_the_baseline(tmp_path, interpolation):
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:64, 0:64]
    slices = [
        np.clip(120 + 80 * np.sin(x / (5 + k % 7)) * np.cos(y / 9) + rng.normal(0, 6, (64, 64)), 0, 255)
        for k in range(37)
    ]
    folder = write_slices(tmp_path / "scan", slices)
    for size in [(16, 24, 20), (50, 80, 70)]:  # downsampling and upsampling, non-square output
        prep = Preprocessing(size=size, border_crop=6, reference_width=64, depth_interpolation=interpolation)
        fast, slow = read_slice_folder(folder, prep), read_slice_folder_baseline(folder, prep)
        assert fast.shape == slow.shape == size
        assert np.abs(fast.astype(int) - slow.astype(int)).max() <= 1


def test_only_the_sampled_slices_are_decoded(tmp_path, monkeypatch):
    folder = write_slices(tmp_path / "scan", [k % 256 for k in range(300)], size=(8, 8))
    decoded = []
    real = slices_module.decode_slice
    monkeypatch.setattr(slices_module, "decode_slice", lambda path: decoded.append(path.name) or real(path))
    read_slice_folder(folder, Preprocessing(size=(16, 8, 8), border_crop=0, depth_interpolation="nearest"))
    assert len(decoded) == len(set(decoded)) == 16
    decoded.clear()
    read_slice_folder(folder, Preprocessing(size=(16, 8, 8), border_crop=0))
    assert len(decoded) == len(set(decoded)) == 32  # two neighbours per output slice, each decoded once


@pytest.mark.parametrize(
    ("ext", "mode"),
    [
        (".png", "L"),
        (".PNG", "RGB"),
        (".jpg", "L"),
        (".JPG", "RGB"),
        (".jpeg", "L"),
        (".png", "P"),
        (".png", "LA"),
    ],
)
def test_png_jpg_gray_rgb_and_extension_case(tmp_path, ext, mode):
    folder = write_slices(tmp_path / "scan", [40, 80, 120, 160], size=(24, 24), ext=ext, mode=mode)
    volume = read_slice_folder(folder, identity((4, 24, 24)))
    np.testing.assert_allclose(volume[:, 12, 12], [40, 80, 120, 160], atol=2)  # JPEG may move a level


def test_odd_slice_sizes_are_resized_and_the_crop_scales(tmp_path):
    value = np.tile((6 * np.arange(37)).astype(np.uint8), (53, 1))  # 37 wide, 53 high; gray = 6 * column
    folder = write_slices(tmp_path / "scan", [value] * 5)
    volume = read_slice_folder(folder, Preprocessing(size=(3, 10, 10), border_crop=48))
    assert volume.shape == (3, 10, 10)
    # 48/512 of 37 columns is 3.47 -> 3 cropped on each side; 31 kept columns sampled at 10 positions
    columns = 3 + (np.arange(10) + 0.5) * 31 / 10 - 0.5
    np.testing.assert_allclose(volume[1, 4], 6 * columns, atol=0.51)


def test_baseline_and_fast_reader_agree_on_odd_sizes(tmp_path):
    rng = np.random.default_rng(1)
    folder = write_slices(tmp_path / "scan", [rng.integers(0, 255, (53, 37)) for _ in range(9)])
    prep = Preprocessing(size=(5, 11, 7))
    fast, slow = read_slice_folder(folder, prep), read_slice_folder_baseline(folder, prep)
    assert np.abs(fast.astype(int) - slow.astype(int)).max() <= 1


# ----------------------------------------------------------------------- slice folders: bad input


def test_damaged_slice_is_named(tmp_path):
    folder = write_slices(tmp_path / "scan", [50] * 6)
    data = (folder / "3.png").read_bytes()
    (folder / "3.png").write_bytes(data[: len(data) // 2])  # header intact, pixel data cut
    with pytest.raises(ScanError) as excinfo:
        read_slice_folder(folder, identity((6, 32, 32)))
    assert_scan_error(excinfo, folder / "3.png", "damaged slice")


def test_non_image_with_an_image_name_is_named(tmp_path):
    folder = write_slices(tmp_path / "scan", [50] * 4)
    (folder / "2.png").write_bytes(b"this is not a png")
    with pytest.raises(ScanError) as excinfo:
        read_slice_folder(folder, Preprocessing(size=(1, 8, 8)))  # even where 2.png is not sampled
    assert_scan_error(excinfo, folder / "2.png", "not an image")


def test_empty_scan_folder(tmp_path):
    (tmp_path / "scan").mkdir()
    with pytest.raises(ScanError) as excinfo:
        list_slices(tmp_path / "scan")
    assert_scan_error(excinfo, tmp_path / "scan", "empty scan folder")


def test_non_numeric_slice_names(tmp_path):
    folder = write_slices(tmp_path / "scan", [50] * 3)
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(folder / "IM-0001.png")
    with pytest.raises(ScanError) as excinfo:
        list_slices(folder)
    assert_scan_error(excinfo, folder, "non-numeric slice name", "IM-0001.png")


def test_repeated_slice_number(tmp_path):
    folder = write_slices(tmp_path / "scan", [50] * 3)
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(folder / "01.jpg")
    with pytest.raises(ScanError) as excinfo:
        list_slices(folder)
    assert_scan_error(excinfo, folder, "slice number 1 appears more than once", "01.jpg", "1.png")


def test_unexpected_file_but_hidden_files_are_ignored(tmp_path):
    folder = write_slices(tmp_path / "scan", [50] * 3)
    (folder / ".DS_Store").write_bytes(b"\0")
    (folder / "._1.png").write_bytes(b"\0")  # macOS resource fork
    assert len(list_slices(folder)) == 3
    (folder / "notes.txt").write_text("hi")
    with pytest.raises(ScanError) as excinfo:
        list_slices(folder)
    assert_scan_error(excinfo, folder, "unexpected file", "notes.txt")


def test_mixed_slice_sizes(tmp_path):
    folder = write_slices(tmp_path / "scan", [50] * 4, size=(32, 32))
    write_slices(folder, [60], size=(16, 32), start=5)
    with pytest.raises(ScanError) as excinfo:
        read_slice_folder(folder, identity((5, 32, 32)))
    assert_scan_error(excinfo, folder, "mixed slice sizes", "32x32", "16x32", "5.png")


def test_slice_count_disagreeing_with_the_index(tmp_path):
    folder = write_slices(tmp_path / "scan", [50] * 4)
    with pytest.raises(ScanError) as excinfo:
        read_slice_folder(folder, identity((4, 32, 32)), expected_slices=5)
    assert_scan_error(excinfo, folder, "slice count mismatch", "says 5", "has 4")


@pytest.mark.parametrize("mode", ["I;16", "RGB16"])
def test_sixteen_bit_slices_are_refused(tmp_path, mode):
    folder = write_slices(tmp_path / "scan", [50] * 3)
    if mode == "I;16":
        Image.fromarray(np.full((32, 32), 40000, np.uint16)).save(folder / "2.png")
    else:  # a 16-bit RGB PNG, which Pillow would silently read as 8-bit: written by hand
        (folder / "2.png").write_bytes(_png_rgb16(32, 32))
    with pytest.raises(ScanError) as excinfo:
        read_slice_folder(folder, identity((3, 32, 32)))
    assert_scan_error(excinfo, folder / "2.png", "16-bit slice", "refused")


def test_single_slice_is_not_a_scan(tmp_path):
    folder = write_slices(tmp_path / "scan", [50])
    with pytest.raises(ScanError) as excinfo:
        read_slice_folder(folder, identity((1, 32, 32)))
    assert_scan_error(excinfo, folder, "single slice")


def _png_rgb16(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + b"\x12\x34" * 3 * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


# -------------------------------------------------------------------------------------------- NIfTI


def test_orientation_helper_gives_superior_anterior_right_first():
    data = np.arange(4 * 5 * 6).reshape(4, 5, 6)  # RAS voxel axes: x (to the right), y (anterior), z (superior)
    out = orient_dhw(data, np.eye(4))
    assert out.shape == (6, 5, 4)
    assert out[0, 0, 0] == data[3, 4, 5]  # most superior, most anterior, patient's right-most voxel


@pytest.mark.parametrize("axcodes", [("R", "A", "S"), ("L", "P", "S"), ("S", "L", "P"), ("A", "I", "R")])
def test_nifti_depth_order_is_superior_first_whatever_the_affine(tmp_path, axcodes):
    canonical = np.arange(4 * 5 * 6, dtype=np.uint8).reshape(4, 5, 6)
    image = nib.Nifti1Image(canonical, np.diag([0.8, 0.8, 2.5, 1.0]))
    ornt = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"), nib.orientations.axcodes2ornt(axcodes))
    reoriented = image.as_reoriented(ornt)
    assert nib.aff2axcodes(reoriented.affine) == axcodes
    path = tmp_path / "scan.nii.gz"
    nib.save(reoriented, path)
    volume = load_volume(ScanRecord("NCP", "p1", "s1", path=str(path)), identity((6, 5, 4)))
    expected = canonical[::-1, ::-1, ::-1].transpose(2, 1, 0)  # (S->I, A->P, R->L)
    np.testing.assert_array_equal(volume, expected)


def test_nifti_hounsfield_units_are_windowed(tmp_path):
    hu = np.array([-2000.0, -1350.0, -600.0, 150.0, 3000.0], dtype=np.float32)
    data = np.broadcast_to(hu[None, None, :], (4, 4, 5)).astype(np.int16)
    image = nib.Nifti1Image(data, np.eye(4))
    path = tmp_path / "ct.nii"
    nib.save(image, path)
    volume = load_volume(ScanRecord("CP", "p", "s", path=str(path)), identity((5, 4, 4)))
    # z is reversed (superior first): 3000 HU first; window [-1350, 150] -> [0, 255]
    assert volume[:, 0, 0].tolist() == [255, 255, 128, 0, 0]
    narrow = Preprocessing(size=(5, 4, 4), border_crop=0, window_level=-600, window_width=300)
    assert load_volume(ScanRecord("CP", "p", "s", path=str(path)), narrow)[:, 0, 0].tolist() == [
        255,
        255,
        128,
        0,
        0,
    ]


def test_nifti_scaling_slope_is_applied(tmp_path):
    raw = np.broadcast_to(np.array([0, 375, 750], np.int16)[None, None, :], (3, 3, 3)).copy()
    image = nib.Nifti1Image(raw, np.eye(4))
    image.header.set_slope_inter(2.0, -1350.0)  # HU = 2 * raw - 1350: -1350, -600, 150
    path = tmp_path / "scaled.nii.gz"
    nib.save(image, path)
    volume = load_volume(ScanRecord("CP", "p", "s", path=str(path)), identity((3, 3, 3)))
    assert volume[:, 1, 1].tolist() == [255, 128, 0]


@pytest.mark.parametrize(
    ("shape", "fill", "cause"),
    [
        ((4, 4, 3, 2), 0.0, "not a 3D volume"),
        ((4, 4), 0.0, "not a 3D volume"),
        ((6, 6, 1), 0.0, "single slice"),
        ((4, 4, 4), np.nan, "NaN or infinite"),
        ((4, 4, 4), np.inf, "NaN or infinite"),
    ],
)
def test_bad_nifti_volumes(tmp_path, shape, fill, cause):
    data = np.zeros(shape, np.float32)
    data[(0,) * len(shape)] = fill
    path = tmp_path / "bad.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    with pytest.raises(ScanError) as excinfo:
        load_volume(ScanRecord("CP", "p", "s", path=str(path)), identity((4, 4, 4)))
    assert_scan_error(excinfo, path, cause)


def test_damaged_and_missing_nifti(tmp_path):
    path = tmp_path / "broken.nii.gz"
    path.write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(ScanError) as excinfo:
        load_volume(ScanRecord("CP", "p", "s", path=str(path)), identity((4, 4, 4)))
    assert_scan_error(excinfo, path, "unreadable NIfTI")
    with pytest.raises(ScanError) as excinfo:
        load_volume(ScanRecord("CP", "p", "s", path=str(tmp_path / "gone.nii")), identity((4, 4, 4)))
    assert_scan_error(excinfo, tmp_path / "gone.nii", "not found")


# -------------------------------------------------------------------------------------------- DICOM


def write_dicom_series(
    folder: Path,
    hu_per_slice: list[float],
    rows: int = 6,
    cols: int = 7,
    series_uid: str | None = None,
    **extra,
) -> list[Path]:
    """Axial CT slices at z = 10 * k (LPS: +z is superior), saved under shuffled, meaningless file names."""
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    names = [f"IM{n:04d}.dcm" for n in np.random.default_rng(len(hu_per_slice)).permutation(len(hu_per_slice))]
    paths = []
    for k, (hu, name) in enumerate(zip(hu_per_slice, names, strict=True)):
        plane = np.full((rows, cols), hu)
        plane[0, 0] = 150  # anterior (row 0), patient's right (column 0): bright marker
        paths.append(save_ct_slice(folder / name, plane, [-100.0, -120.0, 10.0 * k], series_uid, 0.7, **extra))
    return paths


def test_dicom_series_is_ordered_by_position_not_by_name(tmp_path):
    hu = [-1350.0 + 150.0 * k for k in range(6)]  # HU grows with height
    write_dicom_series(tmp_path / "series", hu)
    record = ScanRecord("NCP", "p", "s", path=str(tmp_path / "series"))
    assert scan_kind(record.path) == "dicom"
    volume = load_volume(record, identity((6, 6, 7)))
    windowed = [round((h + 1350.0) / 1500.0 * 255.0) for h in hu]
    assert volume[:, 3, 3].tolist() == windowed[::-1]  # superior (highest z) first
    assert (volume[:, 0, 0] == 255).all() and (volume[:, 0, 1:] < 255).all()  # in-plane orientation kept


def test_dicom_series_problems(tmp_path):
    prep = identity((3, 6, 7))
    two = tmp_path / "two_series"
    write_dicom_series(two, [0.0, 0.0])
    (two / "IM0000.dcm").rename(two / "a.dcm")
    write_dicom_series(two, [0.0, 0.0])
    with pytest.raises(ScanError) as excinfo:
        load_volume(ScanRecord("CP", "p", "s", path=str(two)), prep)
    assert_scan_error(excinfo, two, "2 DICOM series")

    same = tmp_path / "same_position"
    paths = write_dicom_series(same, [0.0, 0.0, 0.0], ImagePositionPatient=[0.0, 0.0, 5.0])
    with pytest.raises(ScanError) as excinfo:
        load_volume(ScanRecord("CP", "p", "s", path=str(same)), prep)
    assert_scan_error(excinfo, same, "same position")

    stray = tmp_path / "stray"  # a file that is not DICOM is skipped with a note, the series still read
    write_dicom_series(stray, [0.0, 0.0, 0.0])
    (stray / "readme").write_text("not dicom")
    with collecting_notes() as notes:
        assert load_volume(ScanRecord("CP", "p", "s", path=str(stray)), prep).shape == (3, 6, 7)
    assert notes == [(str(stray), "skipped 1 file(s) that are not DICOM: readme")]

    single = tmp_path / "single"
    write_dicom_series(single, [0.0])
    with pytest.raises(ScanError) as excinfo:
        load_volume(ScanRecord("CP", "p", "s", path=str(single)), prep)
    assert_scan_error(excinfo, single, "single slice")
    assert len(paths) == 3


# ---------------------------------------------------------------------------- dispatcher and CSV list


def test_dispatcher_errors(tmp_path):
    prep = identity((2, 4, 4))
    with pytest.raises(ScanError) as excinfo:
        load_volume(ScanRecord("CP", "p", "s"), prep)
    assert "no path" in str(excinfo.value)
    (tmp_path / "scan.txt").write_text("x")
    with pytest.raises(ScanError) as excinfo:
        load_volume(ScanRecord("CP", "p", "s", path=str(tmp_path / "scan.txt")), prep)
    assert_scan_error(excinfo, tmp_path / "scan.txt", "unsupported file type")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScanError) as excinfo:
        load_volume(ScanRecord("CP", "p", "s", path=str(tmp_path / "empty")), prep)
    assert_scan_error(excinfo, tmp_path / "empty", "empty scan folder")
    with pytest.raises(ScanError) as excinfo:
        load_volume(ScanRecord("CP", "p", "s", path=str(tmp_path / "missing")), prep)
    assert_scan_error(excinfo, tmp_path / "missing", "not found")


def test_scan_list_csv_with_relative_paths(tmp_path):
    data = tmp_path / "mydata"
    write_slices(data / "slices" / "a", [10, 20, 30], size=(8, 8))
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3), np.int16), np.eye(4)), data / "b.nii.gz")
    write_dicom_series(data / "dicom_c", [0.0, 0.0, 0.0], rows=8, cols=8)
    (data / "list.csv").write_text(
        f"path,label,patient_id,scan_id\nslices/a,NCP,p1,\nb.nii.gz,CP,p2,\n{data / 'dicom_c'},Normal,p3,scan-c\n"
    )
    records = read_scan_list(data / "list.csv", class_names=("CP", "NCP", "Normal"))
    assert [(r.class_name, r.patient_id, r.scan_id) for r in records] == [
        ("NCP", "p1", "a"),
        ("CP", "p2", "b"),
        ("Normal", "p3", "scan-c"),
    ]
    assert Path(records[0].path) == data / "slices" / "a"
    prep = identity((3, 8, 8))
    assert [load_volume(r, prep).shape for r in records] == [(3, 8, 8)] * 3


@pytest.mark.parametrize(
    ("text", "where", "cause"),
    [
        ("path,label\nx,CP\n", "", "missing column(s) ['patient_id']"),
        ("path,label,patient_id\nx,,p\n", ":2", "empty label"),
        ("path,label,patient_id\nx,Flu,p\n", ":2", "label 'Flu'"),
        ("path,label,patient_id\nx.nii,CP,p\ny/x,CP,p\n", ":3", "listed twice (first on line 2)"),
    ],
)
def test_scan_list_csv_errors(tmp_path, text, where, cause):
    path = tmp_path / "list.csv"
    path.write_text(text)
    with pytest.raises(ScanError) as excinfo:
        read_scan_list(path, class_names=("CP", "NCP", "Normal"))
    assert_scan_error(excinfo, f"{path}{where}", cause)


def test_png_bytes_helper_is_a_real_png():
    image = Image.open(io.BytesIO(_png_rgb16(4, 3)))
    assert image.size == (4, 3)

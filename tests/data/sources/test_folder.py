"""The user's own scans: one CSV mixing NIfTI, DICOM and slice folders, through the cache and the data module."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from darnet_pl.data.datamodule import CTDataModule
from darnet_pl.data.phantoms.dicom import save_ct_slice
from darnet_pl.data.sources.cached import SourceError
from darnet_pl.data.sources.folder import FolderSource
from tests.helpers.ccii_tree import write_csv, write_scan

SIZE = (4, 8, 8)
PREP = {"size": list(SIZE), "border_crop": 0}
CLASSES = ("CP", "NCP", "Normal")


def write_nifti(path: Path, hu: float) -> Path:
    """A 10x10x6 volume in Hounsfield units, with a brighter top slice."""
    data = np.full((10, 10, 6), hu, np.float32)
    data[:, :, -1] = hu + 300.0
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.5, 1.0])), path)
    return path


def write_dicom(folder: Path, hu: float, n_slices: int = 5) -> Path:
    """One axial CT series, one file per slice, ordered by position (z = 5 * k)."""
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series = generate_uid()
    for k in range(n_slices):
        save_ct_slice(folder / f"IM{k:03d}.dcm", np.full((12, 12), hu), [0.0, 0.0, 5.0 * k], series, 0.7)
    return folder


def make_scans(base: Path) -> Path:
    """Nine patients, three per class, each class with one NIfTI, one DICOM series and one slice folder."""
    rows = []
    for c, cls in enumerate(CLASSES):
        hu = -900.0 + 200.0 * c
        write_nifti(base / "nifti" / f"{cls}_a.nii.gz", hu)
        write_dicom(base / "dicom" / f"{cls}_b", hu)
        write_scan(base / "slices" / f"{cls}_c", 5, size=16)
        rows += [
            (f"nifti/{cls}_a.nii.gz", cls, f"{cls}-p1", ""),
            (f"dicom/{cls}_b", cls, f"{cls}-p2", "s1"),
            (str(base / "slices" / f"{cls}_c"), cls, f"{cls}-p3", ""),
        ]
    return write_csv(base / "scans.csv", ("path", "label", "patient_id", "scan_id"), rows)


def folder_source(scan_list: Path, cache: Path, **kwargs) -> FolderSource:
    return FolderSource(scan_list, cache, preprocessing=PREP, workers=0, class_names=CLASSES, progress=False, **kwargs)


def test_nifti_dicom_and_slice_folders_through_the_datamodule(tmp_path):
    scan_list = make_scans(tmp_path / "data")
    src = folder_source(scan_list, tmp_path / "cache")
    dm = CTDataModule(
        src,
        size=SIZE,
        split="stratified",
        n_folds=2,
        batch_size=3,
        num_workers=0,
        persistent_workers=False,
        split_manifest_out=str(tmp_path / "split_manifest.csv"),
    )
    dm.prepare_data()
    dm.setup("fit")
    assert sum(len(v) for v in dm.subsets.values()) == 9
    assert (tmp_path / "split_manifest.csv").is_file()
    seen = set()
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        for batch in loader:
            image = batch["image"]
            assert isinstance(image, torch.Tensor) and image.dtype == torch.float32
            assert image.shape[1:] == (1, *SIZE)
            assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
            seen.update(batch["scan_id"])
    assert {"CP_a", "s1", "Normal_c"} <= seen  # scan ids from the file name, the CSV, the folder name
    report = json.loads(src.report_path.read_text())
    assert (report["converted"], report["n_failed"]) == (9, 0)
    volume = src.volume_loader()(next(r for r in src.records() if r.scan_id == "CP_a"))
    assert volume.shape == SIZE and volume[0].mean() > volume[-1].mean()  # top slice (brighter) first
    description = dm.hparams["source_description"]
    assert description["source"] == "folder" and description["scan_list"] == str(scan_list)


def test_bad_rows_are_reported_and_moved_scans_converted_again(tmp_path):
    base = tmp_path / "data"
    write_scan(base / "a", 4, size=16)
    write_scan(base / "b", 6, size=16)
    rows = [("a", "CP", "p1", "s"), ("missing.nii.gz", "NCP", "p2", "")]
    scan_list = write_csv(base / "scans.csv", ("path", "label", "patient_id", "scan_id"), rows)
    src = folder_source(scan_list, tmp_path / "cache")
    report = src.ingest(src.plan())
    assert report.converted == 1 and len(report.failed) == 1 and "not found" in report.failed[0].cause
    assert [r.key for r in src.records()] == ["CP__p1__s"]
    before = np.array(src.volume_loader()(src.records()[0]))
    write_csv(base / "scans.csv", ("path", "label", "patient_id", "scan_id"), [("b", "CP", "p1", "s")])
    again = src.ingest(src.plan())
    assert (again.converted, again.reused) == (1, 0)  # same key, other path: not the old volume
    after = np.array(src.volume_loader()(src.records()[0]))
    assert not np.array_equal(before, after)
    strict = folder_source(
        write_csv(base / "strict.csv", ("path", "label", "patient_id", "scan_id"), rows), tmp_path / "c2", strict=True
    )
    with pytest.raises(SourceError, match=r"missing\.nii\.gz: not found"):
        strict.prepare()


def test_scan_list_errors_are_one_line(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(FileNotFoundError, match=f"{missing}: scan list not found"):
        folder_source(missing, tmp_path / "cache").prepare()
    bad = write_csv(tmp_path / "bad.csv", ("path", "label", "patient_id"), [("x", "Flu", "p")])
    with pytest.raises(SourceError, match=rf"{bad}:2: label 'Flu' is not one of the classes"):
        folder_source(bad, tmp_path / "cache").prepare()
    other = write_csv(tmp_path / "other" / "bad.csv", ("path", "label", "patient_id"), [("x", "CP", "p")])
    assert folder_source(bad, tmp_path / "c").cache.directory != folder_source(other, tmp_path / "c").cache.directory

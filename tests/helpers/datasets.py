"""Small stand-ins for the data a README reader has: a CC-CCII download, a split file, a cleaning list, own scans.

Everything is tiny (a few 16x16 slices per scan) so that preparation and a ``debug=tiny`` training take seconds,
and laid out exactly as the README describes the real thing.
"""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np

from darnet_pl.data.phantoms.dicom import save_ct_slice
from tests.helpers.ccii_tree import make_ccii_tree, write_csv

CLASSES = ("CP", "NCP", "Normal")
CHUNKS = ("fold1", "fold2", "fold3", "fold4", "fold5", "test")


PAPER_SPLIT = (
    Path(__file__).resolve().parents[2] / "src" / "darnet_pl" / "resources" / "ccii" / "darnet_paper_split.csv"
)


def ccii_paper_subset(root: Path, patients_per_class_and_chunk: int = 2) -> Path:
    """A CC-CCII tree of real scan ids: the first patients of every class and chunk of the paper's split.

    Its scans are listed in the split shipped with the package, so ``+experiment=darnet`` (split=paper, the packaged
    split) trains on it as on the full download; the thousands of listed scans not on disk are dropped from the
    split with a warning, as for a partial download.
    """
    picked: dict[tuple[str, str], list[tuple[str, str, str, int]]] = {}
    with PAPER_SPLIT.open(newline="") as handle:
        for row in csv.DictReader(handle):
            group = picked.setdefault((row["class"], row["split"]), [])
            if row["patient_id"] in {p for _, p, _, _ in group}:
                continue
            if len(group) < patients_per_class_and_chunk:
                group.append((row["class"], row["patient_id"], row["scan_id"], 6 + len(group) % 3))
    make_ccii_tree(root, [scan for group in picked.values() for scan in group], size=16)
    return root


def chest_volume(seed: int, shape: tuple[int, int, int] = (12, 24, 24)) -> np.ndarray:
    """A rough Hounsfield-unit volume: body (soft tissue) with two darker lungs and noise."""
    rng = np.random.default_rng(seed)
    d, h, w = shape
    _, yy, xx = np.mgrid[0:d, 0:h, 0:w]
    volume = np.full(shape, -1000.0)
    body = ((yy - h / 2) / (h * 0.45)) ** 2 + ((xx - w / 2) / (w * 0.48)) ** 2 < 1
    volume[body] = 40.0
    for centre in (w * 0.3, w * 0.7):
        lung = ((yy - h / 2) / (h * 0.3)) ** 2 + ((xx - centre) / (w * 0.15)) ** 2 < 1
        volume[lung] = -800.0
    return volume + rng.normal(0, 30, shape)


def write_nifti(path: Path, hu: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(hu, np.int16).transpose(2, 1, 0), np.diag([0.8, 0.8, 2.5, 1.0])), path)
    return path


def write_dicom_series(folder: Path, hu: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k, plane in enumerate(hu):
        save_ct_slice(folder / f"IM{k:04d}.dcm", plane, (0.0, 0.0, -2.5 * k), "1.2.3.4.5", 0.8)
    return folder


def own_scans(folder: Path, patients_per_class: int = 7) -> Path:
    """``my_scans.csv`` (path,label,patient_id,scan_id) over NIfTI files and one DICOM series, as in the README."""
    rows = []
    for c, cls in enumerate(CLASSES):
        for j in range(patients_per_class):
            patient = f"{cls.lower()}{j:02d}"
            if cls == "CP" and j == 0:
                write_dicom_series(folder / "dicom" / patient / "series2", chest_volume(j))
                rows.append((f"dicom/{patient}/series2", cls, patient, "s2"))
                continue
            write_nifti(folder / "nifti" / f"{patient}.nii.gz", chest_volume(100 * c + j))
            rows.append((f"nifti/{patient}.nii.gz", cls, patient, ""))
    return write_csv(folder / "my_scans.csv", ("path", "label", "patient_id", "scan_id"), rows)

"""CC-CCII-shaped trees for the shortcut audit: real ids, real pre-segmented shares, planted partial shortcuts.

``real_scans`` picks whole patients of the packaged cleaning list (``he2020_CT_cleaned_v2.csv``) that the packaged
paper split also lists, so that ``data=ccii`` audits them with its defaults: the real ``is_seg`` flags and the real
split chunks. Per class, the share of pre-segmented scans is the list's own (CC-CCII: Normal about 62%, NCP 10%,
CP 0.3%). ``write_tree`` renders each scan as a few 32x32 slices of a chest-like phantom (body, two lungs, air),
blacked out outside the lungs where the scan was supplied segmented, with a slice count drawn from one
distribution for every class, and writes ``unzip_filenames.csv``. ``Plant`` marks part of one class another way
(a slice count, or JPEG files), the partial shortcuts a real collection has.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from darnet_pl.utils.package_files import RESOURCES_DIR
from tests.helpers.ccii_tree import CLASSES, INDEX_COLUMNS, scan_folder, write_cleaning_list, write_csv

CLEANING_LIST = RESOURCES_DIR / "ccii" / "he2020_CT_cleaned_v2.csv"
PAPER_SPLIT = RESOURCES_DIR / "ccii" / "darnet_paper_split.csv"
SIDE = 32
SLICES = (12, 30)
"""Slice counts of an unplanted scan: uniform over this inclusive range, the same for every class."""


@dataclass(frozen=True)
class RealScan:
    class_name: str
    patient_id: str
    scan_id: str
    segmented: bool


@dataclass(frozen=True)
class Plant:
    """A partial shortcut: ``share`` of the patients of ``class_name`` have ``slices`` slices, or JPEG files."""

    class_name: str
    share: float
    slices: int | None = None
    jpeg: bool = False


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def segmented_shares() -> dict[str, float]:
    """The packaged cleaning list's share of pre-segmented scans per class."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in _rows(CLEANING_LIST):
        counts[row["cls"]][0] += int(row["is_seg"])
        counts[row["cls"]][1] += 1
    return {c: seg / total for c, (seg, total) in counts.items()}


def real_scans(per_class: int, seed: int) -> list[RealScan]:
    """About ``per_class`` scans of each class, whole patients of the cleaning list that the paper split lists,
    with the list's share of pre-segmented scans in each class (rounded)."""
    split = {(r["class"], r["patient_id"], r["scan_id"]) for r in _rows(PAPER_SPLIT)}
    patients: dict[tuple[str, str], list[RealScan]] = defaultdict(list)
    for row in _rows(CLEANING_LIST):
        if (row["cls"], row["pid"], row["scan_id"]) in split:
            scan = RealScan(row["cls"], row["pid"], row["scan_id"], row["is_seg"] == "1")
            patients[(scan.class_name, scan.patient_id)].append(scan)
    rng = np.random.default_rng(seed)
    shares = segmented_shares()
    chosen: list[RealScan] = []
    for cls in CLASSES:
        want = {True: round(per_class * shares[cls]), False: per_class - round(per_class * shares[cls])}
        candidates = [scans for (c, _), scans in patients.items() if c == cls]
        for i in rng.permutation(len(candidates)):
            scans = candidates[i]
            need = {flag: sum(s.segmented == flag for s in scans) for flag in (True, False)}
            if all(need[flag] <= want[flag] for flag in need):
                chosen.extend(scans)
                want = {flag: want[flag] - need[flag] for flag in want}
            if not any(want.values()):
                break
    return chosen


def chest_slices(n_slices: int, segmented: bool, rng: np.random.Generator, side: int = SIDE) -> np.ndarray:
    """(n, side, side) uint8: air 0 around a soft-tissue body (about 170) holding two dark lungs (about 50), with
    noise and a random pose; ``segmented``: everything but the lungs black, as CC-CCII's pre-segmented scans."""
    yy, xx = np.mgrid[0:side, 0:side] / (side - 1) * 2 - 1
    cx, cy = rng.uniform(-0.08, 0.08, 2)
    body = ((xx - cx) / rng.uniform(0.75, 0.9)) ** 2 + ((yy - cy) / rng.uniform(0.55, 0.7)) ** 2 <= 1
    lungs = np.zeros_like(body)
    for side_x in (-0.38, 0.38):
        lungs |= ((xx - cx - side_x) / 0.28) ** 2 + ((yy - cy) / 0.42) ** 2 <= 1
    volume = np.zeros((n_slices, side, side), dtype=np.float64)
    for k in range(n_slices):
        image = np.where(body, 170.0, 0.0)
        image[lungs] = 50.0
        image += rng.normal(0, 12, (side, side)) * body
        if segmented:
            image[~lungs] = 0.0
        volume[k] = image
    return np.clip(np.rint(volume), 0, 255).astype(np.uint8)


def write_tree(
    root: Path, scans: Sequence[RealScan], seed: int, plants: Sequence[Plant] = (), segmented: Mapping[str, bool] | None
    = None,
) -> Path:  # fmt: skip
    """The tree at ``root`` (``<CLASS>/<CLASS>-1/<patient>/<scan>/<k>.png``) and its ``unzip_filenames.csv``;
    ``segmented``: scan id -> whether it is rendered segmented (default: the real flag)."""
    rng = np.random.default_rng(seed)
    planted = _planted(scans, plants)
    index = []
    for scan in scans:
        plant = planted.get(scan.patient_id)
        n = plant.slices if plant and plant.slices else int(rng.integers(SLICES[0], SLICES[1] + 1))
        is_seg = scan.segmented if segmented is None else segmented[scan.scan_id]
        folder = scan_folder(root, (scan.class_name, scan.patient_id, scan.scan_id, n))
        folder.mkdir(parents=True, exist_ok=True)
        suffix = "jpg" if plant and plant.jpeg else "png"
        for k, image in enumerate(chest_slices(n, is_seg, rng)):
            Image.fromarray(image).save(folder / f"{k + 1}.{suffix}")
        index.append((f"{scan.class_name}-1.zip", scan.class_name, scan.patient_id, scan.scan_id, n))
    write_csv(root / "unzip_filenames.csv", INDEX_COLUMNS, index)
    return root


def _planted(scans: Sequence[RealScan], plants: Sequence[Plant]) -> dict[str, Plant]:
    """Patient id -> its plant: the first ``share`` of each planted class's patients, in order of appearance."""
    out: dict[str, Plant] = {}
    for plant in plants:
        patients = list(dict.fromkeys(s.patient_id for s in scans if s.class_name == plant.class_name))
        out.update({p: plant for p in patients[: round(len(patients) * plant.share)]})
    return out


def null_cleaning_list(path: Path, scans: Sequence[RealScan], share: float, seed: int) -> dict[str, bool]:
    """A cleaning list marking ``share`` of every class's scans segmented, at random: a flag that says nothing about
    the class. Returns scan id -> flag (render the tree with it)."""
    rng = np.random.default_rng(seed)
    flags = {s.scan_id: bool(rng.random() < share) for s in scans}
    write_cleaning_list(
        path, [(s.class_name, s.patient_id, s.scan_id, int(flags[s.scan_id]), 0, "", "") for s in scans]
    )
    return flags

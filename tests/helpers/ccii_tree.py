"""Tiny CC-CCII-like trees for tests: slice folders whose slices are recognisable by their gray level.

Slice ``k`` (0-based position in numeric order) of every scan is a constant image of gray level
``slice_value(k)``, so a test can tell from a volume which slices it was built from and in which order; two
scans of as many slices are then the same volume. ``make_ccii_tree(distinct=True)`` marks each scan with its own
gray levels in two bottom blocks, so that no two scans are the same volume, whatever the crop (the centre and the
top rows keep ``slice_value``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from darnet_pl.data.records import ScanRecord

INDEX_COLUMNS = ("zip_file", "label", "patient_id", "scan_id", "n_slice")
MANIFEST_COLUMNS = ("class", "patient_id", "scan_id", "n_slice", "split")
CLEANING_COLUMNS = ("cls", "pid", "scan_id", "is_seg", "is_repeat", "repeat_ids", "re_order")

Scan = tuple[str, str, str, int]
"""(class, patient_id, scan_id, number of slices)."""


def slice_value(position: int) -> int:
    return 20 + 9 * position


def write_scan(folder: Path, n_slices: int, size: int = 8, mark: int | None = None) -> Path:
    """Slices ``1.png`` .. ``n.png`` (numbered from 1, as position 0 is the lowest number); ``mark`` (0..65535)
    is written into the bottom-right (``mark % 256``) and bottom-left (``mark // 256``) blocks of every slice, 3/8
    of the side each, making the scan's volume its own: the default border crop keeps most of them."""
    folder.mkdir(parents=True, exist_ok=True)
    block = size - size * 3 // 8
    for k in range(n_slices):
        image = np.full((size, size), slice_value(k), np.uint8)
        if mark is not None:
            image[block:, block:] = mark % 256
            image[block:, : size - block] = mark // 256
        Image.fromarray(image).save(folder / f"{k + 1}.png")
    return folder


def scan_folder(root: Path, scan: Scan) -> Path:
    cls, patient, scan_id, _ = scan
    return root / cls / f"{cls}-1" / patient / scan_id


def make_ccii_tree(
    root: Path, scans: Iterable[Scan], size: int = 8, index: bool = True, distinct: bool = False
) -> list[ScanRecord]:
    """``<root>/<CLASS>/<CLASS>-1/<patient>/<scan>/<k>.png`` for every scan, plus ``unzip_filenames.csv``;
    ``distinct``: every scan marked with its own corner pixels (see ``write_scan``)."""
    scans = list(scans)
    for number, scan in enumerate(scans):
        write_scan(scan_folder(root, scan), scan[3], size, mark=number + 1 if distinct else None)
    if index:
        write_csv(root / "unzip_filenames.csv", INDEX_COLUMNS, [(f"{c}-1.zip", c, p, s, n) for c, p, s, n in scans])
    return [ScanRecord(c, p, s, path=str(scan_folder(root, (c, p, s, n))), n_slices=n) for c, p, s, n in scans]


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_cleaning_list(path: Path, rows: Iterable[Sequence[object]]) -> Path:
    """A He et al.-style cleaning list: rows ``(cls, pid, scan_id, is_seg, is_repeat, repeat_ids, re_order)``."""
    return write_csv(path, CLEANING_COLUMNS, rows)


def write_manifest(path: Path, scans: Iterable[Scan], chunk_of: dict[str, str]) -> Path:
    """A paper-style split manifest; ``chunk_of`` maps a patient id to its chunk (``fold1`` .. ``test``)."""
    return write_csv(path, MANIFEST_COLUMNS, [(c, p, s, n, chunk_of[p]) for c, p, s, n in scans])

"""Tiny CC-CCII-like trees for tests: slice folders whose slices are recognisable by their gray level.

Slice ``k`` (0-based position in numeric order) of every scan is a constant image of gray level
``slice_value(k)``, so a test can tell from a volume which slices it was built from and in which order; two
scans of as many slices are then the same volume. ``make_ccii_tree(distinct=True)`` marks each scan with its own
gray levels in two bottom blocks, so that no two scans are the same volume, whatever the crop (the centre and the
top rows keep ``slice_value``).

The one home of the tests' small CC-CCII data: ``ccii_scans()`` makes the table of scans (three classes, patients
1..9 by default, ``CHUNKS`` their paper-style split), ``make_ccii_tree`` the tree, ``write_manifest`` and
``cleaning_rows``/``write_cleaning_list`` its split manifest and cleaning list, and ``ccii_source`` and
``paper_datamodule`` read it at ``SIZE``.
"""

from __future__ import annotations

import csv
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from darnet_pl.data.datamodule import CTDataModule
from darnet_pl.data.records import ScanRecord
from darnet_pl.data.sources.ccii import CCIISource

INDEX_COLUMNS = ("zip_file", "label", "patient_id", "scan_id", "n_slice")
MANIFEST_COLUMNS = ("class", "patient_id", "scan_id", "n_slice", "split")
CLEANING_COLUMNS = ("cls", "pid", "scan_id", "is_seg", "is_repeat", "repeat_ids", "re_order")

Scan = tuple[str, str, str, int]
"""(class, patient_id, scan_id, number of slices)."""

CLASSES = ("CP", "NCP", "Normal")

SIZE = (4, 8, 8)
"""The size (depth, height, width) the tests convert these trees to."""
PREP = {"size": list(SIZE), "border_crop": 0, "depth_interpolation": "nearest"}

CHUNKS = {str(patient): ("fold1", "fold2", "test")[(patient - 1) % 3] for patient in range(1, 10)}
"""The chunk of every patient of ``ccii_scans()`` (patients 1..9) in a paper-style split manifest: in each class the
first patient is in fold1, the second in fold2, the third in test."""


def ccii_scans(
    patients: Sequence[int] = (3, 3, 3),
    slices: int = 4,
    counts: Mapping[str, int] | None = None,
    scans_of: Mapping[str, int] | None = None,
) -> list[Scan]:
    """The table of a small CC-CCII tree: ``patients[c]`` patients of class ``CLASSES[c]``, numbered 1, 2, .. through
    the classes, each with one scan (``scans_of[patient_id]`` scans where given); scan ids run through each class from
    10 (CP), 20 (NCP) and 30 (Normal); every scan has ``slices`` slices, scan ``s`` ``counts[s]`` where given.

    ``ccii_scans()``: CP 1/10, 2/11, 3/12, NCP 4/20, 5/21, 6/22, Normal 7/30, 8/31, 9/32, of 4 slices each."""
    counts, scans_of = counts or {}, scans_of or {}
    scans: list[Scan] = []
    patient = 0
    for number, (cls, n_patients) in enumerate(zip(CLASSES, patients, strict=True), start=1):
        scan_id = 10 * number
        for _ in range(n_patients):
            patient += 1
            for _ in range(scans_of.get(str(patient), 1)):
                scans.append((cls, str(patient), str(scan_id), counts.get(str(scan_id), slices)))
                scan_id += 1
    return scans


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


def cleaning_row(scan: Sequence[object], is_seg: int = 0, repeat_ids: str = "", re_order: str = "") -> tuple:
    """The cleaning-list row of ``scan`` (its class, patient and scan id); ``is_repeat`` is 1 when ``repeat_ids`` is
    given (slice positions or ``discard``)."""
    cls, patient, scan_id = scan[:3]
    return (cls, patient, scan_id, is_seg, int(bool(repeat_ids)), repeat_ids, re_order)


def cleaning_rows(
    scans: Iterable[Scan], actions: Mapping[str, Mapping[str, object]], unlisted: Collection[str] = ()
) -> list[tuple]:
    """One cleaning-list row per scan but those whose scan id is in ``unlisted``, in the scans' order; ``actions``
    gives a scan id's ``is_seg``, ``repeat_ids`` and ``re_order`` (see ``cleaning_row``), nothing to do by default."""
    return [cleaning_row(scan, **actions.get(scan[2], {})) for scan in scans if scan[2] not in unlisted]


def write_cleaning_list(path: Path, rows: Iterable[Sequence[object]]) -> Path:
    """A He et al.-style cleaning list: rows ``(cls, pid, scan_id, is_seg, is_repeat, repeat_ids, re_order)``."""
    return write_csv(path, CLEANING_COLUMNS, rows)


def write_manifest(path: Path, scans: Iterable[Scan], chunk_of: dict[str, str]) -> Path:
    """A paper-style split manifest; ``chunk_of`` maps a patient id to its chunk (``fold1`` .. ``test``)."""
    return write_csv(path, MANIFEST_COLUMNS, [(c, p, s, n, chunk_of[p]) for c, p, s, n in scans])


def ccii_source(root: Path, cache: Path, **kwargs: object) -> CCIISource:
    """The CC-CCII source of the tree at ``root``: volumes of ``SIZE`` (no border crop) cached under ``cache``,
    converted in this process, without a progress bar."""
    return CCIISource(root, cache, preprocessing=PREP, workers=0, progress=False, **kwargs)


def paper_datamodule(source: CCIISource, manifest: Path) -> CTDataModule:
    """The data module of ``source`` split by ``manifest`` (paper-style), batches of 2, no worker processes."""
    return CTDataModule(
        source,
        size=SIZE,
        split="paper",
        split_manifest=str(manifest),
        batch_size=2,
        num_workers=0,
        persistent_workers=False,
    )

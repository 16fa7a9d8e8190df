"""Finding CC-CCII scans on disk and checking them against the dataset's index.

The download unpacks to ``<root>/<CLASS>/<archive-stem>/<patient_id>/<scan_id>/<slices>``, but people move
folders around, so nothing here relies on the archive level: a scan is any folder holding slice images, its
name is the scan id, its parent's name the patient id, and the class is the top-level folder it sits under.

With the index (``unzip_filenames.csv``: ``zip_file,label,patient_id,scan_id,n_slice``, found at the root
unless given), every scan must be listed with the same class and slice count, and every listed scan of the
wanted classes must be on disk. Whatever does not fit becomes a ``ScanProblem`` and is left out of the
records.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from darnet_pl.data.csv_tables import read_table
from darnet_pl.data.readers.scans import ScanError, ScanProblem, is_ignored, is_slice_image
from darnet_pl.data.records import CLASS_NAMES, ScanRecord

log = logging.getLogger(__name__)

INDEX_NAME = "unzip_filenames.csv"
INDEX_COLUMNS = ("zip_file", "label", "patient_id", "scan_id", "n_slice")
_SKIPPED_DIRS = frozenset({"__macosx"})


@dataclass(frozen=True)
class IndexEntry:
    """One row of the CC-CCII index."""

    label: str
    patient_id: str
    scan_id: str
    n_slice: int
    zip_file: str
    line: int

    @property
    def key(self) -> str:
        return ScanRecord(self.label, self.patient_id, self.scan_id).key


@dataclass(frozen=True)
class _Found:
    class_name: str
    patient_id: str
    scan_id: str
    folder: Path
    n_images: int

    @property
    def key(self) -> str:
        return ScanRecord(self.class_name, self.patient_id, self.scan_id).key


def read_ccii_index(
    path: str | os.PathLike[str],
) -> tuple[dict[tuple[str, str], IndexEntry], list[ScanProblem]]:
    """Index entries keyed by (patient_id, scan_id); malformed or repeated rows come back as problems."""
    path = Path(path)
    if not path.is_file():
        raise ScanError(path, "CC-CCII index not found")
    entries: dict[tuple[str, str], IndexEntry] = {}
    problems: list[ScanProblem] = []
    _, rows = read_table(path, INDEX_COLUMNS, ",".join(INDEX_COLUMNS), error=ScanError)
    for line, row in rows:
        label, patient, scan = row["label"], row["patient_id"], row["scan_id"]
        where = f"{path}:{line}"
        key = ScanRecord(label, patient, scan).key
        try:
            n_slice = int(row["n_slice"])
        except ValueError:
            problems.append(ScanProblem(key, where, f"index row has no valid n_slice ({row['n_slice']!r})"))
            continue
        if (patient, scan) in entries:
            first = entries[(patient, scan)]
            problems.append(
                ScanProblem(key, where, f"index lists patient {patient} scan {scan} twice (line {first.line})")
            )
            continue
        entries[(patient, scan)] = IndexEntry(label, patient, scan, n_slice, row["zip_file"], line)
    return entries, problems


def discover_ccii(
    root: str | os.PathLike[str],
    index_csv: str | os.PathLike[str] | None = None,
    *,
    use_index: bool = True,
    class_names: Sequence[str] = CLASS_NAMES,
) -> tuple[list[ScanRecord], list[ScanProblem]]:
    """Scan records under ``root`` (one per slice folder) and the problems found on the way.

    ``index_csv`` defaults to ``root/unzip_filenames.csv`` when that exists (``use_index=False`` ignores it).
    Records carry the index's ``n_slices``; they are ordered by class, patient and scan (numerically). Only
    the ``class_names`` folders are searched, and index rows of other classes are not expected on disk.
    """
    root = Path(root)
    if not root.is_dir():
        raise ScanError(root, "CC-CCII root folder not found")
    class_dirs = [(name, root / name) for name in class_names if (root / name).is_dir()]
    if not class_dirs:
        raise ScanError(root, f"no class folder ({', '.join(class_names)}) in the CC-CCII root")
    if index_csv is None and use_index and (root / INDEX_NAME).is_file():
        index_csv = root / INDEX_NAME
    found: dict[str, _Found] = {}
    problems: list[ScanProblem] = []
    for class_name, class_dir in class_dirs:
        for scan in _walk_class(class_name, class_dir, problems):
            if scan.key in found:
                first = found[scan.key].folder
                problems.append(ScanProblem(scan.key, str(scan.folder), f"duplicate of scan folder {first}; left out"))
            else:
                found[scan.key] = scan
    if index_csv is None or not use_index:
        records = [_record(scan, None) for scan in found.values()]
    else:
        records = _match_index(Path(index_csv), root, found, class_names, problems)
    order = {name: i for i, name in enumerate(class_names)}
    records.sort(key=lambda r: (order[r.class_name], _natural(r.patient_id), _natural(r.scan_id)))
    return records, problems


def _walk_class(class_name: str, class_dir: Path, problems: list[ScanProblem]) -> list[_Found]:
    """Every folder under ``class_dir`` that holds slice images; empty leaf folders are problems."""
    scans: list[_Found] = []
    for folder, dirnames, filenames in walk_once(class_dir, problems):
        dirnames[:] = sorted(d for d in dirnames if not is_ignored(d) and d.lower() not in _SKIPPED_DIRS)
        depth = len(folder.relative_to(class_dir).parts)
        n_images = sum(1 for name in filenames if is_slice_image(name))
        key = ScanRecord(class_name, folder.parent.name, folder.name).key if depth >= 2 else ""
        if n_images and depth < 2:
            problems.append(
                ScanProblem(
                    key,
                    str(folder),
                    f"slice images directly in {folder.name}/: expected {class_name}/"
                    "[<archive>/]<patient_id>/<scan_id>/<slices>; left out",
                )
            )
        elif n_images:
            scans.append(_Found(class_name, folder.parent.name, folder.name, folder, n_images))
        elif not dirnames and depth >= 1:
            others = [name for name in filenames if not is_ignored(name)]
            detail = f" ({len(others)} other file(s), e.g. {others[0]})" if others else ""
            problems.append(ScanProblem(key, str(folder), f"empty scan folder: no slice images{detail}"))
    return scans


def walk_once(top: Path, problems: list[ScanProblem]) -> Iterator[tuple[Path, list[str], list[str]]]:
    """``os.walk(top, followlinks=True)`` that enters every real folder once, top-down.

    Following links matters (datasets are often assembled from symlinked folders), but ``os.walk`` follows a
    link back to an ancestor again and again: two sibling links to ``.`` make the walk exponential, and it
    never ends. Here a folder already entered (the same device and inode) is skipped with a warning; so is one
    that cannot be listed (instead of ``os.walk``'s silent skip), which is also recorded as a problem.
    ``dirnames`` may be pruned in place, as with ``os.walk``.
    """
    entered: dict[tuple[int, int], Path] = {}
    pending = [top]
    while pending:
        folder = pending.pop()
        try:
            status = folder.stat()
            entries = list(os.scandir(folder))
        except OSError as exc:
            cause = f"cannot list the folder ({exc.strerror or exc}); left out"
            log.warning("%s: %s", folder, cause)
            problems.append(ScanProblem("", str(folder), cause))
            continue
        identity = (status.st_dev, status.st_ino)
        if identity in entered:
            log.warning("%s: %s; not followed", folder, _revisit(folder, entered[identity]))
            continue
        entered[identity] = folder
        dirnames = [entry.name for entry in entries if _is_dir(entry)]
        filenames = [entry.name for entry in entries if not _is_dir(entry)]
        yield folder, dirnames, filenames
        pending.extend(folder / name for name in reversed(dirnames))


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows links; a broken link is not a folder
    except OSError:
        return False


def _revisit(folder: Path, first: Path) -> str:
    """Why a folder is not walked again: a link back up the tree (a loop) or a second way to one folder."""
    if folder.is_relative_to(first):
        return f"symlink loop (the same folder as {first}, above it)"
    return f"the same folder as {first} (reached through a symlink), already searched"


def _match_index(
    index_csv: Path,
    root: Path,
    found: dict[str, _Found],
    class_names: Sequence[str],
    problems: list[ScanProblem],
) -> list[ScanRecord]:
    entries, index_problems = read_ccii_index(index_csv)
    problems.extend(index_problems)
    matched: set[tuple[str, str]] = set()
    records = []
    for scan in found.values():
        entry = entries.get((scan.patient_id, scan.scan_id))
        if entry is None:
            problems.append(ScanProblem(scan.key, str(scan.folder), f"not listed in the index {index_csv}; left out"))
            continue
        matched.add((scan.patient_id, scan.scan_id))
        if entry.label != scan.class_name:
            cause = f"found under {scan.class_name}/ but the index labels it {entry.label}"
            problems.append(ScanProblem(scan.key, str(scan.folder), cause))
        elif entry.n_slice != scan.n_images:
            cause = f"slice count mismatch: the index says {entry.n_slice}, the folder has {scan.n_images}"
            problems.append(ScanProblem(scan.key, str(scan.folder), cause))
        else:
            records.append(_record(scan, entry.n_slice))
    for ident, entry in entries.items():
        if ident not in matched and entry.label in class_names:
            cause = (
                f"listed in the index ({entry.zip_file}) but no folder {entry.patient_id}/{entry.scan_id} "
                f"was found under {root / entry.label}"
            )
            problems.append(ScanProblem(entry.key, str(root / entry.label), cause))
    return records


def _record(scan: _Found, n_slices: int | None) -> ScanRecord:
    return ScanRecord(scan.class_name, scan.patient_id, scan.scan_id, path=str(scan.folder), n_slices=n_slices)


def _natural(text: str) -> tuple[int, int, str]:
    return (0, int(text), "") if text.isdecimal() else (1, 0, text)

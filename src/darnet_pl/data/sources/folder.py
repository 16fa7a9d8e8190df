"""The user's own scans, listed in a CSV ``path,label,patient_id[,scan_id]`` and converted once into the cache.

``path`` is a NIfTI file, a DICOM series folder or a folder of numbered slice images; a relative path is
relative to the CSV's folder, so a data folder with its list can be moved as a whole. Whether each path exists
and reads is checked per scan at ingest, where a bad scan is reported and left out instead of stopping the
whole list.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from darnet_pl.data.csv_tables import read_table
from darnet_pl.data.preprocess import Preprocessing
from darnet_pl.data.readers.scans import NIFTI_SUFFIXES, ScanError
from darnet_pl.data.records import ScanRecord
from darnet_pl.data.sources.cached import CachedSource, Plan, SourceError, describe_preprocessing
from darnet_pl.utils.file_kinds import not_regular
from darnet_pl.utils.text import safe_name

REQUIRED_COLUMNS = ("path", "label", "patient_id")


def default_scan_id(path: str) -> str:
    """A scan id from its path: the file name without .nii/.nii.gz, or the folder name."""
    name = Path(path.rstrip("/\\")).name
    for suffix in sorted(NIFTI_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_scan_list(csv_path: str | os.PathLike[str], class_names: Sequence[str] | None = None) -> list[ScanRecord]:
    """Records from a scan-list CSV; refuses (``ScanError`` naming file and line) a list that is itself wrong:

    not UTF-8, missing columns, no rows at all, an empty path/label/patient, a label outside ``class_names``
    (when given), or one scan listed twice - an identical row, or two paths that would get the same scan id.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise ScanError(csv_path, not_regular(csv_path) or "scan list not found")
    _, rows = read_table(csv_path, REQUIRED_COLUMNS, "path,label,patient_id[,scan_id]", error=ScanError)
    if not rows:
        raise ScanError(csv_path, "no scans listed (only a header): add one row per scan, path,label,patient_id")
    base = csv_path.parent
    records: list[ScanRecord] = []
    seen: dict[str, tuple[int, ScanRecord]] = {}
    for line, row in rows:
        where = f"{csv_path}:{line}"
        for column in REQUIRED_COLUMNS:
            if not row.get(column):
                raise ScanError(where, f"empty {column}")
        if class_names is not None and row["label"] not in class_names:
            raise ScanError(where, f"label {row['label']!r} is not one of the classes {list(class_names)}")
        path = Path(row["path"])
        if not path.is_absolute():
            path = base / path
        record = ScanRecord(
            class_name=row["label"],
            patient_id=row["patient_id"],
            scan_id=row.get("scan_id") or default_scan_id(row["path"]),
            path=str(path),
        )
        if record.key in seen:
            raise ScanError(where, _listed_twice(record, *seen[record.key]))
        seen[record.key] = (line, record)
        records.append(record)
    return records


def _listed_twice(record: ScanRecord, first_line: int, first: ScanRecord) -> str:
    """Why a second row for one (label, patient, scan id) is refused, naming both paths when they differ."""
    ident = f"scan {record.patient_id}/{record.scan_id} ({record.class_name})"
    if first.path == record.path:
        return f"{ident} is listed twice (first on line {first_line})"
    return (
        f"{ident} is listed twice (first on line {first_line}) for two paths, {first.path} and {record.path}: "
        "give them distinct scan_id values"
    )


class FolderSource(CachedSource):
    """The user's own scans, listed in a CSV ``path,label,patient_id[,scan_id]`` (NIfTI, DICOM, slice folders).

    Converted once into the volume cache like CC-CCII. A row whose path changes between two preparations is
    converted again (its key stays the same, its volume would not).
    """

    name = "folder"
    reconvert_moved_scans = True

    def __init__(
        self,
        scan_list: str | os.PathLike[str],
        cache_dir: str | os.PathLike[str],
        preprocessing: Mapping[str, Any] | Preprocessing | None = None,
        workers: int = -1,
        strict: bool = False,
        class_names: Sequence[str] | None = None,
        progress: bool = True,
    ) -> None:
        super().__init__(cache_dir, preprocessing, workers, strict, progress)
        self.scan_list = Path(scan_list).expanduser()
        self.class_names = tuple(class_names) if class_names else None

    def namespace(self) -> str:
        """``scans-<list name>-<hash of its absolute path>``: one cache per scan list."""
        resolved = str(self.scan_list.resolve())
        return f"scans-{safe_name(self.scan_list.stem)}-{hashlib.sha256(resolved.encode()).hexdigest()[:8]}"

    def plan(self, dry_run: bool = False, listed: Sequence[ScanRecord] | None = None) -> Plan:
        if listed is not None:
            return Plan(list(listed))
        if (cause := not_regular(self.scan_list)) is not None:
            raise ValueError(f"{self.scan_list}: {cause} (data.scan_list=<CSV>)")
        if not self.scan_list.is_file():
            raise FileNotFoundError(f"{self.scan_list}: scan list not found (data.scan_list=<CSV>)")
        try:
            return Plan(read_scan_list(self.scan_list, self.class_names))
        except ScanError as error:
            raise SourceError(str(error)) from None

    def describe(self) -> dict:
        return {
            "source": self.name,
            "scan_list": str(self.scan_list),
            "preprocessing": describe_preprocessing(self.prep),
            "preprocessing_version": self.prep.to_dict()["version"],
            "cache_dir": str(self.cache_dir),
            "cache_key": self.cache_key,
        }

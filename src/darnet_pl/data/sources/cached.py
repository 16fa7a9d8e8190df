"""What the cached sources (CC-CCII, the user's folder) share: plan, convert into the cache, list what is usable.

A cached source is prepared once (``prepare``: list the scans, convert them into the ``VolumeCache``, write the
ingest report) and then read cheaply many times: ``records`` reads the ``records.csv`` that ``prepare`` wrote
next to the volumes (no walk of the data tree on every DDP rank), and ``volume_loader`` memory-maps the cached
uint8 volumes. Each source gets its own namespace under ``cache_dir`` (``<cache_dir>/<namespace>/<settings>/``),
so two datasets whose scans happen to share a ``CLASS__patient__scan`` key never read each other's volumes.

"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from darnet_pl.data.cache import (
    INGEST_REPORT_JSON,
    IngestError,
    IngestReport,
    VolumeCache,
    ingest,
)
from darnet_pl.data.preprocess import Preprocessing
from darnet_pl.data.readers.scans import ScanProblem
from darnet_pl.data.records import ScanRecord
from darnet_pl.utils.csv_cells import csv_writer, plain_rows
from darnet_pl.utils.io import atomic_path

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

RECORDS_NAME = "records.csv"
RECORD_COLUMNS = ("class", "patient_id", "scan_id", "path", "n_slices")
SELECTION_NAME = "selection_report.csv"
"""Scans left out on purpose, changed by a cleaning list, or kept although the list has no row for them (key, path,
action, detail), beside the report."""
NOT_IN_CLEANING_LIST = "not in cleaning list"
"""The selection report's action for a scan a cleaning list does not cover: kept, as downloaded."""


class SourceError(ValueError):
    """A data source that cannot be used as configured; one line, shown to the user as ``error: ...``."""


@dataclass
class Plan:
    """What a preparation will convert, worked out before any image is decoded.

    ``records``: scans to convert; ``problems``: scans found unusable while listing (carried into the ingest
    report); ``excluded``: key -> why a scan is left out on purpose (a cleaning list's discard mark, is_seg);
    ``positions``: key -> slice positions to build the scan from (cleaning); ``notes``: key -> what cleaning did;
    ``unlisted``: key -> why, for kept scans that a cleaning list in use has no row for (kept as they are).
    """

    records: list[ScanRecord]
    problems: list[ScanProblem] = field(default_factory=list)
    excluded: dict[str, str] = field(default_factory=dict)
    positions: dict[str, tuple[int, ...]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    unlisted: dict[str, str] = field(default_factory=dict)


class CachedVolumes:
    """Picklable volume loader for the data module: ``ScanRecord -> uint8 (D, H, W)``, memory-mapped."""

    def __init__(self, cache: VolumeCache) -> None:
        self.cache = cache

    def __call__(self, record: ScanRecord) -> np.ndarray:
        return self.cache.load(record, mmap=True)


def preprocessing_from(settings: Mapping[str, Any] | Preprocessing | None) -> Preprocessing:
    """``Preprocessing`` from a config mapping; an unknown key is a one-line error, not a TypeError."""
    if isinstance(settings, Preprocessing):
        return settings
    settings = dict(settings or {})
    known = set(Preprocessing.__dataclass_fields__)
    unknown = sorted(set(settings) - known)
    if unknown:
        raise SourceError(f"unknown preprocessing setting(s) {unknown}: expected some of {sorted(known)}")
    if "size" in settings:
        settings["size"] = tuple(settings["size"])
    return Preprocessing(**settings)


def describe_preprocessing(prep: Preprocessing) -> dict[str, Any]:
    """The constructor fields (``Preprocessing(**d)`` rebuilds it, e.g. at prediction time), version apart."""
    settings = prep.to_dict()
    settings.pop("version")
    return settings


class CachedSource:
    """Base of the cached sources. Subclasses set ``name`` and implement ``namespace`` and ``plan``."""

    name = "cached"
    reconvert_moved_scans = False
    """When a key's path differs from the last preparation, drop its cached volume so it is converted again."""

    def __init__(
        self,
        cache_dir: str | os.PathLike[str],
        preprocessing: Mapping[str, Any] | Preprocessing | None = None,
        workers: int = -1,
        strict: bool = False,
        progress: bool = True,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.prep = preprocessing_from(preprocessing)
        self.workers = int(workers)
        self.strict = bool(strict)
        self.progress = bool(progress)

    # ------------------------------------------------------------------ what subclasses provide

    def namespace(self) -> str:
        raise NotImplementedError

    def plan(self, dry_run: bool = False, listed: Sequence[ScanRecord] | None = None) -> Plan:
        """The scans to convert, without reading any image with ``dry_run`` (index files only); ``listed``
        replaces the source's own listing (a dry run from a split manifest)."""
        raise NotImplementedError

    def select(self, records: Sequence[ScanRecord]) -> tuple[list[ScanRecord], dict[str, str]]:
        """Records kept for training, and key -> reason for those left out on purpose (none here)."""
        return list(records), {}

    def describe(self) -> dict:
        raise NotImplementedError

    # ------------------------------------------------------------------ the cache

    @property
    def cache(self) -> VolumeCache:
        return VolumeCache(self.cache_dir / self.namespace(), self.prep)

    @property
    def cache_key(self) -> str:
        return f"{self.namespace()}/{self.prep.cache_key()}"

    @property
    def report_path(self) -> Path:
        return self.cache.directory / INGEST_REPORT_JSON

    @property
    def records_path(self) -> Path:
        return self.cache.directory / RECORDS_NAME

    # ------------------------------------------------------------------ the ScanSource protocol

    def prepare(self) -> None:
        """List and convert every scan (resumable: cached volumes are reused), then log a one-line summary."""
        plan = self.plan()
        report = self.ingest(plan)
        line = f"{self.name}: {report.summary()}; report: {self.report_path}"
        logger = logging.getLogger(type(self).__module__)
        (logger.warning if report.failed else logger.info)("%s", line)
        if plan.unlisted:
            logger.info("%s (listed in %s)", unlisted_line(plan.unlisted), self.cache.directory / SELECTION_NAME)

    def records(self) -> list[ScanRecord]:
        """The usable scans, as the last ``prepare`` left them in the cache (no walk of the data tree)."""
        path = self.records_path
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no prepared scans for this source and preprocessing; run `darnet-prepare` "
                "with the same data settings first (training prepares them too)"
            )
        kept, _ = self.select(read_records(path))
        return kept

    def volume_loader(self) -> CachedVolumes:
        return CachedVolumes(self.cache)

    def volume_hashes(self) -> dict[str, str]:
        """key -> content hash of every cached volume whose hash is recorded (``volume_hashes.csv``)."""
        return self.cache.volume_hashes()

    # ------------------------------------------------------------------ conversion

    def ingest(self, plan: Plan, progress: bool | None = None) -> IngestReport:
        """Convert the plan's scans into the cache, write the report, ``records.csv`` and the selection report.

        Scans with their own slice positions (cleaning) are read from those slices only. With ``strict`` the first
        problem raises ``SourceError`` (after the report is written).
        """
        progress = self.progress if progress is None else progress
        cache = self.cache
        if self.reconvert_moved_scans:
            forget_moved_scans(cache, plan.records, self.records_path)
        try:
            report = ingest(
                plan.records,
                cache,
                self.workers,
                self.strict,
                progress,
                problems=plan.problems,
                positions=plan.positions,
            )
        except IngestError as error:
            raise SourceError(f"{error} (strict: stopped at the first problem; report: {self.report_path})") from None
        usable: dict[str, ScanRecord] = {}
        for record in plan.records:  # the first record of a repeated key is the one ingest converted
            if record.key not in usable and cache.has(record):
                usable[record.key] = record
        write_records(self.records_path, list(usable.values()))
        write_selection_report(cache.directory / SELECTION_NAME, plan)
        if not usable:
            raise SourceError(_nothing_usable(report, self.report_path))
        return report


# ---------------------------------------------------------------------- helpers


def unlisted_line(unlisted: Mapping[str, str], examples: int = 3) -> str:
    """``N scan(s) are not in the cleaning list (kept as downloaded): e.g. <key>, <key>, <key>``."""
    keys = list(unlisted)
    shown = ", ".join(keys[:examples]) + (", ..." if len(keys) > examples else "")
    return f"{len(keys)} scan(s) are not in the cleaning list (kept as downloaded): e.g. {shown}"


def _nothing_usable(report: IngestReport, report_path: Path) -> str:
    """The error when an ingest leaves no scan to train on: a run would only fail later, less clearly."""
    if not report.failed:
        return f"{report_path}: no scan to convert"
    first = report.failed[0]
    return f"{report_path}: no usable scan, all {len(report.failed)} failed (e.g. {first.path}: {first.cause})"


def read_records(path: str | os.PathLike[str]) -> list[ScanRecord]:
    """Records from a ``records.csv`` written by ``write_records``."""
    with Path(path).open(newline="", encoding="utf-8") as handle:
        return [
            ScanRecord(
                class_name=row["class"],
                patient_id=row["patient_id"],
                scan_id=row["scan_id"],
                path=row["path"] or None,
                n_slices=int(row["n_slices"]) if row["n_slices"] else None,
            )
            for row in plain_rows(csv.DictReader(handle))
        ]


def write_records(path: str | os.PathLike[str], records: Sequence[ScanRecord]) -> Path:
    """The usable scans, atomically: readers on other ranks never see a half-written list."""
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv_writer(handle)
        writer.writerow(RECORD_COLUMNS)
        for r in records:
            writer.writerow([r.class_name, r.patient_id, r.scan_id, r.path or "", r.n_slices or ""])
    return Path(path)


def write_selection_report(path: Path, plan: Plan) -> None:
    """``selection_report.csv``: every scan left out on purpose, changed by cleaning or not covered by the cleaning
    list in use, and how."""
    paths = {r.key: r.path or "" for r in plan.records}
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv_writer(handle)
        writer.writerow(("key", "path", "action", "detail"))
        for key, reason in sorted(plan.excluded.items()):
            writer.writerow((key, "", "left out", reason))
        for key, note in sorted(plan.notes.items()):
            writer.writerow((key, paths.get(key, ""), "cleaned", note))
        for key, why in sorted(plan.unlisted.items()):
            writer.writerow((key, paths.get(key, ""), NOT_IN_CLEANING_LIST, why))


def forget_moved_scans(cache: VolumeCache, records: Sequence[ScanRecord], previous: Path) -> None:
    """Remove cached volumes whose key now points at another path than at the last preparation."""
    if not previous.is_file():
        return
    before = {r.key: r.path for r in read_records(previous)}
    for record in records:
        if record.key in before and before[record.key] != record.path and cache.has(record):
            log.info("%s: path changed (%s -> %s), converting it again", record.key, before[record.key], record.path)
            cache.path_for(record).unlink(missing_ok=True)

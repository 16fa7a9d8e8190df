"""The volume cache: every scan converted once to a fixed-size uint8 .npy, read back with mmap.

Decoding hundreds of slice images per scan every epoch would starve the GPU; a (64, 224, 224) uint8 volume is
3.2 MB and loads in well under a millisecond. The cache folder is named by the preprocessing settings' hash
(``VolumeCache.directory``), with the settings in ``settings.json``, so changing the size or the crop builds a
new cache instead of silently reusing volumes made with other settings.

``ingest`` fills the cache: in parallel, resumable (present volumes are reused), and accountable - every scan
that cannot be converted is listed with its path and cause in ``ingest_report.json`` and ``ingest_report.csv``
next to the volumes, and left out. Each volume is written under a temporary name and renamed, so an
interrupted run leaves no half-written entry that a later run would trust.

Every cached volume carries a content hash, the SHA-256 of its uint8 array bytes (``volume_digest``), kept in
``volume_hashes.csv`` beside the volumes (``key,sha256,file_bytes,mtime_ns``): computed as a volume is stored, and
for a volume cached before hashes were kept (or changed since its hash was taken: size or time differ) from the
file at the next ingest. The volume files themselves are unchanged, so older caches stay readable and are reused
as they are. The hashes find one volume cached under two keys, e.g. a scan supplied under two patient ids.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from darnet_pl.data.preprocess import Preprocessing
from darnet_pl.data.readers.load import load_volume
from darnet_pl.data.readers.scans import ScanError, ScanNote, ScanProblem, collecting_notes
from darnet_pl.data.records import ScanRecord
from darnet_pl.utils.csv_cells import csv_writer, plain_rows
from darnet_pl.utils.io import StorageError, atomic_path, storage_error, write_json_atomic, write_text_atomic
from darnet_pl.utils.worker_pool import completed, worker_count, worker_pool

log = logging.getLogger(__name__)

SETTINGS_NAME = "settings.json"
INGEST_REPORT_JSON = "ingest_report.json"
INGEST_REPORT_CSV = "ingest_report.csv"
VOLUME_HASHES_NAME = "volume_hashes.csv"
VOLUME_HASH_COLUMNS = ("key", "sha256", "file_bytes", "mtime_ns")


class IngestError(ScanError):
    """Raised by ``ingest(strict=True)`` at the first scan that cannot be converted: ``<path>: <cause>``."""


class Converted(NamedTuple):
    """What converting one scan gave: the problem that left it out (None: it is cached), notes on it, and the
    scan's key with the content hash of the volume stored (``volume_digest``; None when none was stored)."""

    problem: ScanProblem | None = None
    notes: tuple[ScanNote, ...] = ()
    key: str = ""
    digest: str | None = None


class VolumeHash(NamedTuple):
    """One row of ``volume_hashes.csv``: the volume's content hash, and the file's size and time when hashed."""

    sha256: str
    file_bytes: int
    mtime_ns: int


def volume_digest(volume: np.ndarray) -> str:
    """SHA-256 (hex) of a volume's uint8 array bytes in C order: equal volumes, equal digests, whatever the file."""
    return hashlib.sha256(np.ascontiguousarray(volume, dtype=np.uint8).data).hexdigest()


class VolumeCache:
    """Fixed-size uint8 (D, H, W) volumes under ``root/<prep.cache_key()>/<record.key>.npy``."""

    def __init__(self, root: str | os.PathLike[str], prep: Preprocessing) -> None:
        self.root = Path(root)
        self.prep = prep

    @property
    def directory(self) -> Path:
        return self.root / self.prep.cache_key()

    def path_for(self, record: ScanRecord) -> Path:
        return self.directory / f"{record.key}.npy"

    def has(self, record: ScanRecord) -> bool:
        return self.path_for(record).is_file()

    def load(self, record: ScanRecord, mmap: bool = True) -> np.ndarray:
        """The cached uint8 (D, H, W) volume; with ``mmap`` only the pages that are touched are read."""
        path = self.path_for(record)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: scan {record.key} is not in the cache (run the ingest first)")
        volume = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        if volume.dtype != np.uint8 or volume.shape != self.prep.size:
            raise ValueError(f"{path}: cached volume is {volume.dtype} {volume.shape}, expected uint8 {self.prep.size}")
        return volume

    def store(self, record: ScanRecord, volume: np.ndarray) -> Path:
        """Write one volume atomically (a temporary name, renamed once complete)."""
        if volume.dtype != np.uint8 or volume.shape != self.prep.size:
            raise ValueError(
                f"scan {record.key}: volume is {volume.dtype} {volume.shape}, expected uint8 {self.prep.size}"
            )
        self.prepare()
        path = self.path_for(record)
        try:
            with atomic_path(path, suffix=".npy") as tmp, tmp.open("wb") as handle:
                np.save(handle, np.ascontiguousarray(volume), allow_pickle=False)
        except OSError as error:  # the cache's problem (disk full, read-only), not the scan's: stops the ingest
            raise storage_error(path, error, "the cache volume") from None
        return path

    @property
    def hashes_path(self) -> Path:
        return self.directory / VOLUME_HASHES_NAME

    def read_hashes(self) -> dict[str, VolumeHash]:
        """``volume_hashes.csv`` as key -> ``VolumeHash`` (empty when there is none: a cache made before hashes)."""
        path = self.hashes_path
        if not path.is_file():
            return {}
        table: dict[str, VolumeHash] = {}
        with path.open(newline="", encoding="utf-8") as handle:
            for row in plain_rows(csv.DictReader(handle)):
                try:
                    table[row["key"]] = VolumeHash(row["sha256"], int(row["file_bytes"]), int(row["mtime_ns"]))
                except (KeyError, TypeError, ValueError):  # a damaged row: hashed again at the next ingest
                    continue
        return table

    def volume_hashes(self) -> dict[str, str]:
        """key -> content hash of every volume whose hash is recorded."""
        return {key: entry.sha256 for key, entry in self.read_hashes().items()}

    def write_hashes(self, table: Mapping[str, VolumeHash]) -> None:
        """Write ``volume_hashes.csv`` atomically (sorted by key)."""
        buffer = io.StringIO()
        writer = csv_writer(buffer)
        writer.writerow(VOLUME_HASH_COLUMNS)
        for key in sorted(table):
            writer.writerow((key, *table[key]))
        try:
            write_text_atomic(self.hashes_path, buffer.getvalue())
        except OSError as error:
            raise storage_error(self.hashes_path, error, "the volume hashes") from None

    def prepare(self) -> None:
        """Create the folder with its ``settings.json``; refuse a folder whose settings say otherwise."""
        settings = self.directory / SETTINGS_NAME
        expected = self.prep.to_dict()
        if settings.is_file():
            present = json.loads(settings.read_text(encoding="utf-8"))
            if present != expected:
                raise ValueError(f"{settings}: cache settings {present} differ from the requested {expected}")
            return
        try:
            write_json_atomic(settings, expected)
        except OSError as error:
            raise storage_error(settings, error, "the cache settings") from None


@dataclass
class IngestReport:
    """What an ingest did: volumes written now, volumes already present, and scans left out (with causes)."""

    converted: int = 0
    reused: int = 0
    failed: list[ScanProblem] = field(default_factory=list)
    elapsed_s: float = 0.0
    aborted: bool = False
    notes: list[ScanNote] = field(default_factory=list)
    digests: dict[str, str] = field(default_factory=dict)
    """key -> content hash of each volume written by this ingest (all hashes: ``VolumeCache.volume_hashes``)."""

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        text = f"ingest: {self.converted} converted, {self.reused} reused, {len(self.failed)} failed"
        if self.notes:
            text += f", {len(self.notes)} note(s) (in the report)"
        return text + (" (aborted)" if self.aborted else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "converted": self.converted,
            "reused": self.reused,
            "failed": [problem._asdict() for problem in self.failed],
            "n_failed": len(self.failed),
            "elapsed_s": round(self.elapsed_s, 3),
            "aborted": self.aborted,
            "notes": [entry._asdict() for entry in self.notes],
        }


def ingest(
    records: Sequence[ScanRecord],
    cache: VolumeCache,
    workers: int = 0,
    strict: bool = False,
    progress: bool = True,
    problems: Iterable[ScanProblem] = (),
    positions: Mapping[str, tuple[int, ...]] | None = None,
) -> IngestReport:
    """Convert every record that is not cached yet; report, and leave out, whatever cannot be converted.

    ``workers`` processes convert in parallel (0: in this process; negative: one per CPU core). ``problems``
    found before (e.g. by ``discover_ccii``) are carried into the report. ``positions`` (key -> slice positions,
    from a cleaning list) builds those scans from the chosen slices. With ``strict`` the first problem
    raises ``IngestError`` instead; the report of what was done so far is still written.
    """
    started = time.perf_counter()
    cache.prepare()
    report = IngestReport(failed=list(problems))
    try:
        if strict and report.failed:
            raise IngestError(report.failed[0].path, report.failed[0].cause)
        todo = _pending(records, cache, report)
        if strict and report.failed:
            raise IngestError(report.failed[0].path, report.failed[0].cause)
        jobs = [(record, cache, (positions or {}).get(record.key)) for record in todo]
        run_parallel(convert_one, jobs, workers, progress, recorder(report, strict))
        record_hashes(cache, records, report.digests, {r.key for r in todo})
    except BaseException:
        report.aborted = True
        try:  # keep the hashes of what was written before the stop; the rest are taken at the next ingest
            record_hashes(cache, records, report.digests, set(), hash_missing=False)
        except OSError as error:
            log.error("%s: cannot write the volume hashes (%s)", cache.directory, error.strerror or error)
        raise
    finally:
        report.elapsed_s = time.perf_counter() - started
        try:
            write_report(cache, report)
        except OSError as error:
            if not report.aborted:  # else the error that stopped the ingest is the one to show
                raise storage_error(cache.directory, error, "the ingest report") from None
            log.error("%s: cannot write the ingest report (%s)", cache.directory, error.strerror or error)
    return report


def record_hashes(
    cache: VolumeCache,
    records: Sequence[ScanRecord],
    digests: Mapping[str, str],
    converted: Collection[str],
    hash_missing: bool = True,
) -> None:
    """Bring ``volume_hashes.csv`` up to date for the cached volumes of ``records``.

    ``digests``: hashes of the volumes just written; an entry whose file still has the size and time it had when
    hashed is kept; any other cached volume (cached before hashes were kept, or changed since) is hashed from its
    file (``hash_missing``; else it stays without a hash). Entries of keys not in ``records`` stay as they were (a
    selection of the scans, e.g. ``exclude_segmented``, shares the cache), except those ``converted`` anew.
    Writes only when something changed.
    """
    before = cache.read_hashes()
    table = {key: entry for key, entry in before.items() if key not in converted or key in digests}
    hashed_now = 0
    for record in records:
        path = cache.path_for(record)
        try:
            stat = path.stat()
        except FileNotFoundError:
            table.pop(record.key, None)
            continue
        known = table.get(record.key)
        if record.key in digests:
            digest = digests[record.key]
        elif known is not None and (known.file_bytes, known.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
            continue
        elif hash_missing:
            try:
                digest = volume_digest(cache.load(record, mmap=True))
            except (OSError, ValueError) as error:  # unreadable: left without a hash, named in the log
                log.warning("%s: cannot hash the cached volume (%s)", path, error)
                table.pop(record.key, None)
                continue
            hashed_now += 1
        else:
            table.pop(record.key, None)
            continue
        table[record.key] = VolumeHash(digest, stat.st_size, stat.st_mtime_ns)
    if hashed_now:
        log.info("%s: content hashes taken of %d cached volume(s)", cache.directory, hashed_now)
    if table != before:
        cache.write_hashes(table)


def _pending(records: Sequence[ScanRecord], cache: VolumeCache, report: IngestReport) -> list[ScanRecord]:
    """Records still to convert; repeated keys would share one cache file and are reported instead."""
    seen: dict[str, ScanRecord] = {}
    todo = []
    for record in records:
        if record.key in seen:
            cause = f"scan key {record.key} repeated (also {seen[record.key].path}); left out"
            report.failed.append(ScanProblem(record.key, str(record.path), cause))
            continue
        seen[record.key] = record
        if cache.has(record):
            report.reused += 1
        else:
            todo.append(record)
    return todo


def recorder(report: IngestReport, strict: bool) -> Callable[[Converted], None]:
    """The accounting of each conversion's result: counted, or reported as failed; notes kept and shown.

    Notes are logged here, in the main process, where the user sees them (a spawned worker has no log setup).
    With ``strict`` the first failure raises ``IngestError``, which stops the run.
    """

    def record(result: Converted) -> None:
        for entry in result.notes:
            log.warning("%s: %s", entry.path, entry.note)
            report.notes.append(entry)
        if result.problem is None:
            report.converted += 1
            if result.digest is not None:
                report.digests[result.key] = result.digest
            return
        report.failed.append(result.problem)
        if strict:
            raise IngestError(result.problem.path, result.problem.cause)

    return record


def run_parallel(
    function: Callable[..., Converted],
    jobs: Sequence[tuple],
    workers: int,
    progress: bool,
    on_result: Callable[[Converted], None],
) -> None:
    """``function(*job)`` for every job, in ``workers`` worker processes (0: here; < 0: one per core; at most one
    per core, see ``utils.worker_pool``).

    ``on_result`` sees each result as it arrives; what it raises stops the run, as Ctrl-C and SIGTERM do: pending
    jobs are cancelled and the workers stopped before the exception goes on (nothing converts after the stop).
    """
    from tqdm.auto import tqdm

    workers = worker_count(workers, len(jobs), "data.source.workers")
    bar = tqdm(total=len(jobs), disable=not progress, unit="scan", desc="ingest", dynamic_ncols=True)
    try:
        if workers == 0 or len(jobs) <= 1:
            for job in jobs:
                on_result(function(*job))
                bar.update(1)
            return
        with worker_pool(workers) as pool:
            for future in completed([pool.submit(function, *job) for job in jobs]):
                bar.update(1)
                on_result(future.result())
    finally:
        bar.close()


def convert_one(record: ScanRecord, cache: VolumeCache, positions: Sequence[int] | None = None) -> Converted:
    """Read, preprocess and store one scan; a failure comes back as a problem, never as a partial file."""
    return guarded_conversion(record, lambda: load_volume(record, cache.prep, positions), cache)


def guarded_conversion(record: ScanRecord, read: Callable[[], np.ndarray], cache: VolumeCache) -> Converted:
    """``cache.store(record, read())`` with every failure but the cache's own turned into this scan's problem.

    A scan that cannot be read is one scan's problem, reported and left out; a cache that cannot be written
    (``StorageError``: disk full, read-only) stops the ingest. The reader's notes come back either way.
    """
    problem = digest = None
    with collecting_notes() as collected:
        try:
            volume = read()
            cache.store(record, volume)
            digest = volume_digest(volume)
        except ScanError as error:
            problem = ScanProblem.from_error(record.key, error)
        except StorageError:
            raise
        except MemoryError:
            problem = ScanProblem(record.key, str(record.path), "out of memory while converting")
        except Exception as exc:  # an unexpected failure is still one scan's problem, reported rather than fatal
            problem = ScanProblem(record.key, str(record.path), f"unexpected {type(exc).__name__}: {exc}")
    notes = tuple(ScanNote(record.key, path, text) for path, text in collected)
    return Converted(problem, notes, record.key, digest if problem is None else None)


def write_report(cache: VolumeCache, report: IngestReport) -> None:
    """``ingest_report.json`` (everything) and ``ingest_report.csv`` (one failed scan per row), atomically."""
    payload = {
        "cache": str(cache.directory),
        "settings": cache.prep.to_dict(),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **report.to_dict(),
    }
    write_json_atomic(cache.directory / INGEST_REPORT_JSON, payload)
    buffer = io.StringIO()
    writer = csv_writer(buffer)
    writer.writerow(ScanProblem._fields)
    writer.writerows(report.failed)
    write_text_atomic(cache.directory / INGEST_REPORT_CSV, buffer.getvalue())

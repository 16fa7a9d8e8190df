"""CC-CCII as a scan source: the downloaded slice folders, converted once into the volume cache.

``prepare`` finds the scans (``discover_ccii``, checked against the dataset's index) and converts them;
``records`` reads back what it left in the cache. The paper's protocol uses the scans as downloaded. He et al.'s
cleaning list (``he2020_CT_cleaned_v2.csv``) can be applied on top:

- ``apply_cleaning``: re-order slices, drop repeated/noisy slice ranges and leave out scans marked ``discard``.
  This changes the volumes, so cleaned volumes live in their own cache namespace, named after the list's
  content hash (``ccii-cleaned-<hash>``): cleaned and raw volumes are never mixed.
- ``exclude_segmented``: leave out the scans supplied already lung-segmented (``is_seg``), 606 of the 849
  Normal patients among them. A 3D model can learn that preprocessing difference instead of the disease, so
  results on raw CC-CCII deserve this control. It selects scans without changing any, so it shares the cache.

The list does not cover every scan (144 scans of the paper's split have no row in it). With either switch on,
such a scan is kept as downloaded, and said: ``Plan.unlisted`` lists it, ``darnet-prepare`` prints how many,
and ``selection_report.csv`` names each with the action "not in cleaning list".

The cleaning list itself is read by ``ccii_cleaning``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from darnet_pl.data.preprocess import Preprocessing
from darnet_pl.data.readers.scans import ScanError, ScanProblem
from darnet_pl.data.records import CLASS_NAMES, ScanRecord
from darnet_pl.data.sources.cached import CachedSource, Plan, SourceError, describe_preprocessing
from darnet_pl.data.sources.ccii_cleaning import CleaningEntry, read_cleaning_list
from darnet_pl.data.sources.ccii_index import INDEX_NAME, discover_ccii, read_ccii_index


class CCIISource(CachedSource):
    """CC-CCII slice folders under ``root`` (``<CLASS>/[<archive>/]<patient_id>/<scan_id>/<n>.png``).

    ``index_csv`` defaults to ``<root>/unzip_filenames.csv`` when present. ``cleaning_csv`` is He et al.'s list,
    needed by ``apply_cleaning`` and ``exclude_segmented`` (both off: the paper's protocol).
    """

    name = "ccii"

    def __init__(
        self,
        root: str | os.PathLike[str],
        cache_dir: str | os.PathLike[str],
        preprocessing: Mapping[str, Any] | Preprocessing | None = None,
        index_csv: str | os.PathLike[str] | None = None,
        workers: int = -1,
        strict: bool = False,
        cleaning_csv: str | os.PathLike[str] | None = None,
        exclude_segmented: bool = False,
        apply_cleaning: bool = False,
        class_names: Sequence[str] = CLASS_NAMES,
        progress: bool = True,
    ) -> None:
        super().__init__(cache_dir, preprocessing, workers, strict, progress)
        self.root = Path(root).expanduser()
        self.index_csv = Path(index_csv).expanduser() if index_csv else None
        self.cleaning_csv = Path(cleaning_csv).expanduser() if cleaning_csv else None
        self.exclude_segmented = bool(exclude_segmented)
        self.apply_cleaning = bool(apply_cleaning)
        self.class_names = tuple(class_names)
        if (self.apply_cleaning or self.exclude_segmented) and self.cleaning_csv is None:
            raise SourceError(
                "data.source.apply_cleaning / exclude_segmented need data.source.cleaning_csv="
                "<path to he2020_CT_cleaned_v2.csv>"
            )
        self.cleaning_digest = _digest(self.cleaning_csv) if self.cleaning_csv else None
        self._cleaning: dict[str, CleaningEntry] | None = None

    # ------------------------------------------------------------------ cleaning

    @property
    def cleaning(self) -> dict[str, CleaningEntry]:
        """The parsed cleaning list (empty without one), read once."""
        if self._cleaning is None:
            self._cleaning = read_cleaning_list(self.cleaning_csv) if self.cleaning_csv else {}
        return self._cleaning

    def namespace(self) -> str:
        """``ccii`` for the volumes as downloaded, ``ccii-cleaned-<list hash>`` for cleaned ones."""
        return f"ccii-cleaned-{self.cleaning_digest}" if self.apply_cleaning else "ccii"

    def select(self, records: Sequence[ScanRecord]) -> tuple[list[ScanRecord], dict[str, str]]:
        """Leave out discarded scans (``apply_cleaning``) and pre-segmented ones (``exclude_segmented``)."""
        if not (self.apply_cleaning or self.exclude_segmented):
            return list(records), {}
        kept, excluded = [], {}
        for record in records:
            entry = self.cleaning.get(record.key)
            if entry is not None and self.apply_cleaning and entry.discard:
                excluded[record.key] = f"marked discard in {self.cleaning_csv.name}"
            elif entry is not None and self.exclude_segmented and entry.is_seg:
                excluded[record.key] = f"supplied lung-segmented (is_seg in {self.cleaning_csv.name})"
            else:
                kept.append(record)
        return kept, excluded

    # ------------------------------------------------------------------ planning

    def check_root(self) -> None:
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"{self.root}: CC-CCII data root not found (set data.root=<folder holding CP/, NCP/, Normal/>)"
            )

    def index_path(self) -> Path | None:
        if self.index_csv is not None:
            return self.index_csv
        default = self.root / INDEX_NAME
        return default if default.is_file() else None

    def plan(self, dry_run: bool = False, listed: Sequence[ScanRecord] | None = None) -> Plan:
        """Discover the scans (with ``dry_run``: list them from the index alone; or take ``listed``, e.g. a split
        manifest's records), then apply the cleaning list's selection and slice positions."""
        self.check_root()
        try:
            if listed is not None:
                records, problems = list(listed), []
            else:
                records, problems = self._index_records() if dry_run else self._discover()
        except ScanError as error:
            raise SourceError(str(error)) from None
        if not records and listed is None:
            raise SourceError(self._no_scans(problems, dry_run))
        kept, excluded = self.select(records)
        plan = Plan(kept, problems, excluded)
        if self.apply_cleaning:
            self._plan_cleaning(plan, count_slices=not dry_run)
        if self.apply_cleaning or self.exclude_segmented:
            why = f"no row in {self.cleaning_csv.name}: kept as downloaded"
            plan.unlisted = {r.key: why for r in plan.records if r.key not in self.cleaning}
        return plan

    def _no_scans(self, problems: Sequence[ScanProblem], dry_run: bool) -> str:
        """Why there is nothing to prepare: an empty tree (or index) would otherwise "succeed" with 0 scans."""
        where = self.index_path() if dry_run else self.root
        found = "in the index" if dry_run else "under the class folders"
        text = f"{where}: no usable scan {found} (expected <CLASS>/[<archive>/]<patient_id>/<scan_id>/<n>.png)"
        if problems:
            text += f"; {len(problems)} problem(s), e.g. {problems[0].path}: {problems[0].cause}"
        return text

    def _discover(self) -> tuple[list[ScanRecord], list[ScanProblem]]:
        return discover_ccii(self.root, self.index_csv, class_names=self.class_names)

    def _index_records(self) -> tuple[list[ScanRecord], list[ScanProblem]]:
        index = self.index_path()
        if index is None:
            raise FileNotFoundError(
                f"{self.root}: no {INDEX_NAME} here; a dry run lists the scans from the index "
                "(data.source.index_csv=<path>)"
            )
        entries, problems = read_ccii_index(index)
        records = [
            ScanRecord(e.label, e.patient_id, e.scan_id, n_slices=e.n_slice)
            for e in entries.values()
            if e.label in self.class_names
        ]
        return records, problems

    def _plan_cleaning(self, plan: Plan, count_slices: bool) -> None:
        """Slice positions and notes for every kept scan the list changes; uncountable scans become problems."""
        from darnet_pl.data.readers.slices import list_slices

        kept = []
        for record in plan.records:
            entry = self.cleaning.get(record.key)
            if entry is None or not entry.changes_slices:
                kept.append(record)
                continue
            n_slices = record.n_slices
            if n_slices is None and count_slices:  # no index: count the folder (never convert it uncleaned)
                try:
                    n_slices = len(list_slices(record.path or ""))
                except ScanError as error:
                    plan.problems.append(ScanProblem.from_error(record.key, error))
                    continue
            if n_slices is None:
                plan.notes[record.key] = "to be cleaned (slice count not listed)"
                kept.append(record)
                continue
            positions, note = entry.positions(n_slices)
            if len(positions) < 2:  # e.g. repeat_ids covering the whole scan: nothing left to learn from
                plan.excluded[record.key] = f"fewer than 2 slices left by {self.cleaning_csv.name}"
                continue
            kept.append(record)
            plan.positions[record.key], plan.notes[record.key] = positions, note
        plan.records = kept

    # ------------------------------------------------------------------ description

    def describe(self) -> dict:
        return {
            "source": self.name,
            "root": str(self.root),
            "index_csv": str(self.index_csv) if self.index_csv else None,
            "preprocessing": describe_preprocessing(self.prep),
            "preprocessing_version": self.prep.to_dict()["version"],
            "cache_dir": str(self.cache_dir),
            "cache_key": self.cache_key,
            "cleaning_csv": str(self.cleaning_csv) if self.cleaning_csv else None,
            "cleaning_digest": self.cleaning_digest,
            "apply_cleaning": self.apply_cleaning,
            "exclude_segmented": self.exclude_segmented,
            "class_names": list(self.class_names),
        }


def _digest(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: cleaning list not found")
    return hashlib.sha256(path.read_bytes()).hexdigest()[:10]

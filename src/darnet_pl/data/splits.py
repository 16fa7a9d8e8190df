"""Patient-level splits: the paper's manifest, new stratified splits, and the leakage check.

A split assigns every scan one chunk name: ``fold1`` .. ``foldK`` (cross-validation chunks) or ``test`` (the fixed
independent test set). Fold ``k`` (0-based, as on the command line) validates on chunk ``fold{k+1}``, trains on the
other K-1 chunks and tests on ``test`` - the paper's protocol. Nothing here knows about images.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from darnet_pl.data.csv_tables import read_table
from darnet_pl.data.records import ScanRecord
from darnet_pl.utils.csv_cells import csv_writer
from darnet_pl.utils.io import atomic_path

TEST_CHUNK = "test"
MANIFEST_COLUMNS = ("class", "patient_id", "scan_id", "n_slice", "split")


class SplitError(ValueError):
    """A split that would leak patients, lose scans or contradict itself."""


def fold_chunk(fold: int) -> str:
    return f"fold{fold + 1}"


def subsets_for_fold(
    records: Sequence[ScanRecord], chunks: Mapping[str, str], fold: int
) -> dict[str, list[ScanRecord]]:
    """train / val / test record lists for a 0-based ``fold``; checks the result for patient leakage."""
    present = sorted({c for c in chunks.values() if c != TEST_CHUNK})
    val_chunk = fold_chunk(fold)
    if val_chunk not in present:
        raise SplitError(f"fold={fold} selects chunk {val_chunk!r}, but the split has chunks {present}")
    subsets: dict[str, list[ScanRecord]] = {"train": [], "val": [], "test": []}
    for record in records:
        chunk = chunks.get(record.key)
        if chunk is None:
            raise SplitError(f"scan {record.key} is not in the split manifest")
        name = "test" if chunk == TEST_CHUNK else "val" if chunk == val_chunk else "train"
        subsets[name].append(record)
    check_no_patient_leakage(subsets)
    return subsets


def check_no_patient_leakage(subsets: Mapping[str, Iterable[ScanRecord]]) -> None:
    """Fail loudly when any patient has scans in two subsets, or one patient id carries two classes."""
    where: dict[str, set[str]] = defaultdict(set)
    classes: dict[str, set[str]] = defaultdict(set)
    for name, records in subsets.items():
        for record in records:
            where[record.patient_id].add(name)
            classes[record.patient_id].add(record.class_name)
    leaked = sorted(p for p, names in where.items() if len(names) > 1)
    if leaked:
        example = leaked[0]
        raise SplitError(
            f"patient leakage: {len(leaked)} patient(s) have scans in more than one subset, "
            f"e.g. patient {example} in {sorted(where[example])}"
        )
    mixed = sorted(p for p, names in classes.items() if len(names) > 1)
    if mixed:
        raise SplitError(f"patient {mixed[0]} has scans labelled {sorted(classes[mixed[0]])}: one class per patient")


def stratified_patient_chunks(records: Sequence[ScanRecord], n_folds: int = 5, seed: int = 0) -> dict[str, str]:
    """A new seeded split: K+1 class-stratified, patient-grouped chunks; the last is the test set.

    Mirrors the paper's protocol (patients in 6 chunks, one held out for testing) with scikit-learn's
    StratifiedGroupKFold, so each chunk keeps the class mix and no patient is divided.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if n_folds < 2:
        raise SplitError(f"n_folds must be at least 2, got {n_folds}")
    check_no_patient_leakage({"all": records})  # one class per patient
    class_index = {name: i for i, name in enumerate(sorted({r.class_name for r in records}))}
    labels = np.array([class_index[r.class_name] for r in records])
    groups = np.array([r.patient_id for r in records])
    n_patients = len(set(groups.tolist()))
    if n_patients < n_folds + 1:
        raise SplitError(f"{n_patients} patients cannot fill {n_folds} folds plus a test chunk")
    splitter = StratifiedGroupKFold(n_splits=n_folds + 1, shuffle=True, random_state=seed)
    chunks: dict[str, str] = {}
    for chunk_index, (_, members) in enumerate(splitter.split(np.zeros(len(records)), labels, groups)):
        name = TEST_CHUNK if chunk_index == n_folds else fold_chunk(chunk_index)
        for i in members:
            chunks[records[i].key] = name
    return chunks


def _split_error(where: str, cause: str) -> SplitError:
    return SplitError(f"{where}: {cause}")


def read_split_manifest(path: str | os.PathLike[str]) -> tuple[list[ScanRecord], dict[str, str]]:
    """Records and chunk assignment from a manifest CSV (``class,patient_id,scan_id[,n_slice],split``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: split manifest not found")
    required = ("class", "patient_id", "scan_id", "split")
    _, rows = read_table(path, required, "class,patient_id,scan_id[,n_slice],split", error=_split_error)
    records, chunks = [], {}
    for line, row in rows:
        split = row["split"]
        if split != TEST_CHUNK and not (split.startswith("fold") and split[4:].isdigit()):
            raise SplitError(f"{path}:{line}: split {split!r} is neither 'test' nor 'foldK'")
        n_slice = row.get("n_slice")
        if n_slice and not n_slice.isdigit():
            raise SplitError(f"{path}:{line}: n_slice {n_slice!r} is not a number of slices")
        record = ScanRecord(
            class_name=row["class"],
            patient_id=row["patient_id"],
            scan_id=row["scan_id"],
            n_slices=int(n_slice) if n_slice else None,
        )
        if record.key in chunks:
            raise SplitError(f"{path}:{line}: scan {record.key} listed twice")
        records.append(record)
        chunks[record.key] = split
    by_chunk: dict[str, list[ScanRecord]] = defaultdict(list)
    for record in records:
        by_chunk[chunks[record.key]].append(record)
    check_no_patient_leakage(by_chunk)
    return records, chunks


@dataclass
class ChunkAssignment:
    """Which chunk each available scan is in, and what a manifest and the data disagree on.

    ``unplaced``: keys of scans the data has but the manifest lacks (training refuses them: a split must place
    every scan); ``absent``: keys the manifest lists but the data lacks (left out by cleaning or an exclusion, or
    failed at ingest: dropped from the split).
    """

    chunks: dict[str, str]
    unplaced: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    manifest: str | None = None


def assign_chunks(
    records: Sequence[ScanRecord],
    split: str,
    split_manifest: str | os.PathLike[str] | None = None,
    n_folds: int = 5,
    split_seed: int = 0,
) -> ChunkAssignment:
    """The one split policy, used by training and by ``darnet-prepare``'s summary alike.

    ``split="paper"``: the manifest's chunks, restricted to the scans available; otherwise a seeded stratified
    patient-level split into ``n_folds`` + 1 chunks.
    """
    if split == "paper":
        if not split_manifest:
            raise SplitError("data.split=paper needs data.split_manifest=<path to the split CSV>")
        _, manifest = read_split_manifest(split_manifest)
        available = {r.key for r in records}
        return ChunkAssignment(
            chunks={key: chunk for key, chunk in manifest.items() if key in available},
            unplaced=[r.key for r in records if r.key not in manifest],
            absent=[key for key in manifest if key not in available],
            manifest=str(split_manifest),
        )
    return ChunkAssignment(stratified_patient_chunks(records, n_folds=int(n_folds), seed=int(split_seed)))


def write_split_manifest(
    records: Sequence[ScanRecord], chunks: Mapping[str, str], path: str | os.PathLike[str]
) -> Path:
    """Write the manifest atomically, in the format ``read_split_manifest`` reads."""
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv_writer(handle)
        writer.writerow(MANIFEST_COLUMNS)
        for r in records:
            writer.writerow([r.class_name, r.patient_id, r.scan_id, r.n_slices or "", chunks[r.key]])
    return Path(path)


def split_summary(subsets: Mapping[str, Sequence[ScanRecord]], class_names: Sequence[str]) -> str:
    """A small table of scans (patients) per subset and class, printed before training and ingest."""
    header = ["subset", *class_names, "total"]
    rows = [header]
    for name, records in subsets.items():
        scans = Counter(r.class_name for r in records)
        patients = {c: len({r.patient_id for r in records if r.class_name == c}) for c in class_names}
        cells = [f"{scans.get(c, 0)} ({patients[c]})" for c in class_names]
        rows.append([name, *cells, f"{len(records)} ({len({r.patient_id for r in records})})"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    return "scans (patients)\n" + "\n".join(lines)


DuplicatePair = tuple[tuple[str, str], tuple[str, str]]
"""``((key a, subset a), (key b, subset b))``: two scans of different subsets whose volumes are identical."""


def duplicates_across_subsets(
    subsets: Mapping[str, Sequence[ScanRecord]], hashes: Mapping[str, str]
) -> list[DuplicatePair]:
    """Pairs of scans in different subsets with the same volume content hash (``hashes``: key -> hash).

    A scan supplied twice, e.g. under two patient ids, escapes the patient-level leakage check; its volume does not.
    Within a pair, and among pairs, subsets come in the order of ``subsets`` (e.g. train, val, test), then keys.
    Scans without a hash are not compared; duplicates within one subset are not reported.
    """
    order = {name: i for i, name in enumerate(subsets)}
    by_hash: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for name, records in subsets.items():
        for record in records:
            digest = hashes.get(record.key)
            if digest:
                by_hash[digest].append((record.key, name))
    pairs: list[DuplicatePair] = []
    for members in by_hash.values():
        members.sort(key=lambda member: (order[member[1]], member[0]))
        for i, first in enumerate(members):
            pairs.extend((first, second) for second in members[i + 1 :] if second[1] != first[1])
    return sorted(pairs, key=lambda pair: (order[pair[0][1]], order[pair[1][1]], pair[0][0], pair[1][0]))


def describe_duplicates(pairs: Sequence[DuplicatePair], limit: int = 20) -> str:
    """``duplicate volumes across subsets: <key a> (train) = <key b> (test); ...`` (the first ``limit`` pairs)."""
    shown = "; ".join(f"{a} ({subset_a}) = {b} ({subset_b})" for (a, subset_a), (b, subset_b) in pairs[:limit])
    more = f"; and {len(pairs) - limit} more pair(s)" if len(pairs) > limit else ""
    return f"duplicate volumes across subsets: {shown}{more}"

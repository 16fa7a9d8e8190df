"""Patient-level splits: the paper's Table I from its manifest, seeded stratified splits, leakage checks."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from darnet_pl.data.records import ScanRecord
from darnet_pl.data.splits import (
    SplitError,
    check_no_patient_leakage,
    read_split_manifest,
    stratified_patient_chunks,
    subsets_for_fold,
    write_split_manifest,
)


def _counts(records: list[ScanRecord]) -> dict[str, tuple[int, int]]:
    scans = Counter(r.class_name for r in records)
    return {c: (scans[c], len({r.patient_id for r in records if r.class_name == c})) for c in scans}


def test_paper_manifest_reproduces_table_i(ccii_metadata: Path) -> None:
    records, chunks = read_split_manifest(ccii_metadata / "darnet_paper_split.csv")
    assert len(records) == 4178
    for fold in range(5):
        subsets = subsets_for_fold(records, chunks, fold)
        training = subsets["train"] + subsets["val"]
        assert _counts(training) == {"CP": (1137, 789), "NCP": (1245, 764), "Normal": (856, 732)}
        assert _counts(subsets["test"]) == {"CP": (419, 175), "NCP": (299, 165), "Normal": (222, 117)}
        assert len(training) == 3238 and len({r.patient_id for r in training}) == 2285
        assert len(subsets["test"]) == 940 and len({r.patient_id for r in subsets["test"]}) == 457
    # every fold tests on the same independent test set; validation chunks are disjoint and cover training
    vals = [{r.key for r in subsets_for_fold(records, chunks, k)["val"]} for k in range(5)]
    assert sum(len(v) for v in vals) == 3238 and len(set().union(*vals)) == 3238


def _cohort(n_patients: int = 60) -> list[ScanRecord]:
    records = []
    for p in range(n_patients):
        cls = ("CP", "NCP", "Normal")[p % 3]
        for s in range(1 + p % 3):
            records.append(ScanRecord(cls, f"p{p}", f"p{p}-s{s}"))
    return records


def test_stratified_split_is_patient_grouped_seeded_and_stratified() -> None:
    records = _cohort()
    chunks = stratified_patient_chunks(records, n_folds=5, seed=7)
    assert chunks == stratified_patient_chunks(records, n_folds=5, seed=7)
    assert chunks != stratified_patient_chunks(records, n_folds=5, seed=8)
    assert set(chunks.values()) == {"fold1", "fold2", "fold3", "fold4", "fold5", "test"}
    for fold in range(5):
        subsets = subsets_for_fold(records, chunks, fold)
        assert sum(len(s) for s in subsets.values()) == len(records)
        for subset in subsets.values():
            assert set(r.class_name for r in subset) == {"CP", "NCP", "Normal"}


def test_manifest_round_trip(tmp_path: Path) -> None:
    records = _cohort(30)
    chunks = stratified_patient_chunks(records, n_folds=3, seed=0)
    path = write_split_manifest(records, chunks, tmp_path / "split.csv")
    read_records, read_chunks = read_split_manifest(path)
    assert [r.key for r in read_records] == [r.key for r in records]
    assert read_chunks == chunks


def test_leakage_is_refused() -> None:
    a, b = ScanRecord("CP", "7", "1"), ScanRecord("CP", "7", "2")
    with pytest.raises(SplitError, match="patient 7 in"):
        check_no_patient_leakage({"train": [a], "test": [b]})


def test_a_patient_in_two_classes_is_refused() -> None:
    with pytest.raises(SplitError, match="patient 7 has scans labelled"):
        check_no_patient_leakage({"train": [ScanRecord("CP", "7", "1"), ScanRecord("NCP", "7", "2")]})


def test_manifest_with_leak_fails_when_loaded(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("class,patient_id,scan_id,n_slice,split\nCP,1,10,50,fold1\nCP,1,11,50,test\n")
    with pytest.raises(SplitError, match="patient leakage"):
        read_split_manifest(path)


def test_bad_fold_and_bad_chunk_names(tmp_path: Path) -> None:
    records = _cohort(30)
    chunks = stratified_patient_chunks(records, n_folds=3, seed=0)
    with pytest.raises(SplitError, match="fold=3 selects chunk 'fold4'"):
        subsets_for_fold(records, chunks, 3)
    path = tmp_path / "bad.csv"
    path.write_text("class,patient_id,scan_id,split\nCP,1,10,train\n")
    with pytest.raises(SplitError, match=r"bad.csv:2: split 'train'"):
        read_split_manifest(path)

"""Content hashes of cached volumes (``volume_hashes.csv``): taken when a volume is stored, taken from the file for a
cache made before hashes were kept, and used to name one volume found in two subsets with both of its ids
(at the data module's setup and in ``darnet-prepare``'s summary)."""

from __future__ import annotations

import csv
import hashlib
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from darnet_pl.data.cache import VOLUME_HASHES_NAME, VolumeCache, ingest, volume_digest
from darnet_pl.data.datamodule import CTDataModule
from darnet_pl.data.preprocess import Preprocessing
from darnet_pl.data.sources.ccii import CCIISource
from darnet_pl.data.splits import describe_duplicates, duplicates_across_subsets
from tests.helpers.ccii_tree import (
    CHUNKS,
    SIZE,
    ccii_scans,
    ccii_source,
    make_ccii_tree,
    paper_datamodule,
    scan_folder,
    write_manifest,
)
from tests.helpers.prepare_run import prepare_output

SCANS = ccii_scans(counts={"10": 5, "21": 5, "31": 6})


def hash_table(cache: VolumeCache) -> dict[str, str]:
    with (cache.directory / VOLUME_HASHES_NAME).open(newline="") as handle:
        return {row["key"]: row["sha256"] for row in csv.DictReader(handle)}


def make_tree(tmp_path: Path, copy: tuple[str, str] | None = None) -> tuple[Path, Path]:
    """(root, manifest) of SCANS, every scan its own volume; ``copy=(a, b)``: patient b's scan folder replaced by a
    copy of patient a's (the same scan supplied under two patient ids)."""
    root = tmp_path / "CC-CCII"
    make_ccii_tree(root, SCANS, distinct=True)
    if copy is not None:
        by_patient = {scan[1]: scan for scan in SCANS}
        target = scan_folder(root, by_patient[copy[1]])
        shutil.rmtree(target)
        shutil.copytree(scan_folder(root, by_patient[copy[0]]), target)
    return root, write_manifest(tmp_path / "split.csv", SCANS, CHUNKS)


def source(root: Path, tmp_path: Path) -> CCIISource:
    return ccii_source(root, tmp_path / "cache")


def setup_warnings(src: CCIISource, manifest: Path, caplog: pytest.LogCaptureFixture) -> list[str]:
    dm = paper_datamodule(src, manifest)
    dm.prepare_data()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# ------------------------------------------------------------------------------------ the hash table


def test_every_stored_volume_gets_the_hash_of_its_array_bytes(tmp_path):
    root, _ = make_tree(tmp_path)
    src = source(root, tmp_path)
    report = src.ingest(src.plan())
    table = hash_table(src.cache)
    assert sorted(table) == sorted(report.digests) == sorted(r.key for r in src.records())
    for record in src.records():
        volume = np.load(src.cache.path_for(record), allow_pickle=False)
        assert table[record.key] == hashlib.sha256(volume.tobytes()).hexdigest() == volume_digest(volume)
    assert len(set(table.values())) == len(table)  # distinct scans, distinct volumes
    assert src.volume_hashes() == table


def test_an_old_cache_without_hashes_is_reused_and_hashed(tmp_path):
    root, _ = make_tree(tmp_path)
    src = source(root, tmp_path)
    src.ingest(src.plan())
    expected = hash_table(src.cache)
    (src.cache.directory / VOLUME_HASHES_NAME).unlink()  # as a cache made before hashes were kept
    stamps = {p.name: p.stat().st_mtime_ns for p in src.cache.directory.glob("*.npy")}
    assert src.volume_hashes() == {}
    again = src.ingest(src.plan())
    assert (again.converted, again.reused) == (0, len(SCANS))
    assert {p.name: p.stat().st_mtime_ns for p in src.cache.directory.glob("*.npy")} == stamps  # volumes untouched
    assert hash_table(src.cache) == expected


def test_a_volume_changed_since_it_was_hashed_is_hashed_again(tmp_path):
    root, _ = make_tree(tmp_path)
    src = source(root, tmp_path)
    src.ingest(src.plan())
    record = src.records()[0]
    changed = np.full(SIZE, 7, np.uint8)
    np.save(src.cache.path_for(record), changed, allow_pickle=False)
    src.ingest(src.plan())
    assert hash_table(src.cache)[record.key] == volume_digest(changed)


def test_an_ingest_of_some_scans_keeps_the_hashes_of_the_others(tmp_path):
    root, _ = make_tree(tmp_path)
    src = source(root, tmp_path)
    plan = src.plan()
    cache = src.cache
    ingest(plan.records, cache, progress=False)
    everything = hash_table(cache)
    ingest(plan.records[:2], cache, progress=False)  # e.g. exclude_segmented: the same cache, fewer scans
    assert hash_table(cache) == everything
    cache.path_for(plan.records[0]).unlink()
    ingest(plan.records[:2], cache, progress=False)  # converted again: the same volume, the same hash
    assert hash_table(cache) == everything


def test_duplicates_across_subsets_pairs_and_wording():
    from darnet_pl.data.records import ScanRecord

    a, b, c, d = (ScanRecord("CP", p, s) for p, s in (("1", "10"), ("2", "20"), ("3", "30"), ("4", "40")))
    subsets = {"train": [a, d], "val": [b], "test": [c]}
    hashes = {a.key: "h1", b.key: "h2", c.key: "h1", d.key: "h1"}
    pairs = duplicates_across_subsets(subsets, hashes)
    assert pairs == [(("CP__1__10", "train"), ("CP__3__30", "test")), (("CP__4__40", "train"), ("CP__3__30", "test"))]
    assert describe_duplicates(pairs) == (
        "duplicate volumes across subsets: CP__1__10 (train) = CP__3__30 (test); CP__4__40 (train) = CP__3__30 (test)"
    )
    assert describe_duplicates(pairs, limit=1).endswith("(test); and 1 more pair(s)")
    assert duplicates_across_subsets(subsets, {a.key: "h1", d.key: "h1"}) == []  # one subset: not reported
    assert duplicates_across_subsets(subsets, {}) == []


# ------------------------------------------------------------------------------------ the data module


def test_the_same_volume_in_train_and_test_is_a_warning_with_both_ids(tmp_path, caplog):
    root, manifest = make_tree(tmp_path, copy=("2", "3"))  # patient 2 (fold2: train in fold 0), patient 3 (test)
    said = setup_warnings(source(root, tmp_path), manifest, caplog)
    assert said == ["fold 0: duplicate volumes across subsets: CP__2__11 (train) = CP__3__12 (test)"]


def test_distinct_volumes_say_nothing(tmp_path, caplog):
    root, manifest = make_tree(tmp_path)
    assert setup_warnings(source(root, tmp_path), manifest, caplog) == []


def test_a_cache_without_hashes_says_nothing_and_still_trains(tmp_path, caplog):
    root, manifest = make_tree(tmp_path, copy=("2", "3"))
    src = source(root, tmp_path)
    src.prepare()
    (src.cache.directory / VOLUME_HASHES_NAME).unlink()
    dm = CTDataModule(src, size=SIZE, split="paper", split_manifest=str(manifest), num_workers=0)
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert not [r for r in caplog.records if "duplicate" in r.getMessage()]


# ------------------------------------------------------------------------------------ darnet-prepare


def test_prepare_names_both_ids_after_converting(tmp_path, capsys):
    args = ("data=ccii", "data.size=[4,8,8]", "data.source.preprocessing.border_crop=0")
    root, manifest = make_tree(tmp_path / "dup", copy=("2", "3"))  # fold2 and test
    cache = tmp_path / "dup" / "cache"
    dry = prepare_output(capsys, cache, *args, f"data.root={root}", f"data.split_manifest={manifest}", "+dry_run=true")
    assert "duplicate" not in dry
    line = "duplicate volumes across subsets: CP__2__11 (fold2) = CP__3__12 (test)"
    real = prepare_output(capsys, cache, *args, f"data.root={root}", f"data.split_manifest={manifest}")
    assert real.splitlines()[-1] == line
    dry = prepare_output(capsys, cache, *args, f"data.root={root}", f"data.split_manifest={manifest}", "+dry_run=true")
    assert "duplicate" not in dry  # a dry run reads the index files only, never the cache
    again = prepare_output(capsys, cache, *args, f"data.root={root}", f"data.split_manifest={manifest}")
    assert "ingest: 0 converted, 9 reused, 0 failed" in again and again.splitlines()[-1] == line

    root, manifest = make_tree(tmp_path / "distinct")
    clean = prepare_output(
        capsys, tmp_path / "distinct" / "cache", *args, f"data.root={root}", f"data.split_manifest={manifest}"
    )
    assert "usable: 9 scan(s)" in clean and "duplicate" not in clean


def test_the_hash_is_the_volume_not_the_settings(tmp_path):
    """Equal volumes under other settings have equal hashes: the hash says nothing of the cache folder."""
    volume = np.arange(4 * 8 * 8, dtype=np.uint8).reshape(SIZE)
    assert volume_digest(volume) == volume_digest(np.asfortranarray(volume))
    assert volume_digest(volume) != volume_digest(volume[::-1])
    cache = VolumeCache(tmp_path, Preprocessing(size=SIZE, border_crop=0))
    assert cache.volume_hashes() == {}

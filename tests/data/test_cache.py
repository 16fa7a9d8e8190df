"""The volume cache and ingest: keyed by settings, resumable, atomic, and accountable for every scan."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from darnet_pl.data import cache as cache_module
from darnet_pl.data.cache import INGEST_REPORT_CSV, INGEST_REPORT_JSON, IngestError, VolumeCache, ingest
from darnet_pl.data.preprocess import Preprocessing
from darnet_pl.data.readers.scans import ScanProblem
from darnet_pl.data.records import ScanRecord
from darnet_pl.data.sources.ccii_index import discover_ccii
from darnet_pl.utils.io import StorageError

PREP = Preprocessing(size=(4, 8, 8), border_crop=48)


def make_scan(folder: Path, n_slices: int, size: int = 16) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n_slices):
        Image.fromarray(np.full((size, size), 10 * k, np.uint8)).save(folder / f"{k + 1}.png")
    return folder


def make_records(root: Path, n: int = 3) -> list[ScanRecord]:
    records = []
    for i in range(n):
        folder = make_scan(root / "CP" / "CP-1" / str(i) / str(100 + i), 5 + i)
        records.append(ScanRecord("CP", str(i), str(100 + i), path=str(folder), n_slices=5 + i))
    return records


def leftovers(directory: Path) -> list[str]:
    """Anything in the cache folder that is neither a finished volume nor a settings/report file."""
    allowed = {"settings.json", INGEST_REPORT_JSON, INGEST_REPORT_CSV}
    return sorted(p.name for p in directory.iterdir() if p.name not in allowed and not p.name.endswith(".npy"))


def test_cache_key_is_stable_and_follows_the_settings():
    key = Preprocessing().cache_key()
    assert key == Preprocessing().cache_key()
    assert re.fullmatch(r"64x224x224-crop48-[0-9a-f]{10}", key)
    others = [
        Preprocessing(size=(32, 224, 224)),
        Preprocessing(border_crop=0),
        Preprocessing(window_level=-500.0),
        Preprocessing(window_width=1200.0),
        Preprocessing(depth_interpolation="nearest"),
        Preprocessing(reference_width=256),
    ]
    assert len({key, *(p.cache_key() for p in others)}) == len(others) + 1
    assert Preprocessing(size=[64, 224, 224], border_crop=48.0).cache_key() == key


def test_store_load_roundtrip_with_settings_file(tmp_path):
    cache = VolumeCache(tmp_path, PREP)
    assert cache.directory == tmp_path / PREP.cache_key()
    record = ScanRecord("NCP", "7", "70")
    volume = np.arange(4 * 8 * 8, dtype=np.uint8).reshape(4, 8, 8)
    assert not cache.has(record)
    assert cache.store(record, volume) == cache.path_for(record) == cache.directory / "NCP__7__70.npy"
    assert cache.has(record)
    loaded = cache.load(record)
    assert isinstance(loaded, np.memmap) and loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, volume)
    np.testing.assert_array_equal(cache.load(record, mmap=False), volume)
    assert json.loads((cache.directory / "settings.json").read_text()) == PREP.to_dict()
    with pytest.raises(ValueError, match="expected uint8"):
        cache.store(record, volume.astype(np.float32))
    with pytest.raises(FileNotFoundError, match="not in the cache"):
        cache.load(ScanRecord("NCP", "7", "71"))


def test_a_different_setting_builds_a_new_cache(tmp_path):
    records = make_records(tmp_path / "data", 2)
    first = ingest(records, VolumeCache(tmp_path / "cache", PREP), progress=False)
    bigger = Preprocessing(size=(4, 10, 10), border_crop=48)
    second = ingest(records, VolumeCache(tmp_path / "cache", bigger), progress=False)
    assert (first.converted, second.converted, second.reused) == (2, 2, 0)
    assert VolumeCache(tmp_path / "cache", bigger).load(records[0]).shape == (4, 10, 10)
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_settings_file_that_disagrees_is_refused(tmp_path):
    cache = VolumeCache(tmp_path, PREP)
    cache.prepare()
    (cache.directory / "settings.json").write_text(json.dumps({"size": [1, 2, 3]}))
    with pytest.raises(ValueError, match="differ"):
        cache.prepare()


def test_ingest_is_resumable(tmp_path):
    records = make_records(tmp_path / "data", 3)
    cache = VolumeCache(tmp_path / "cache", PREP)
    first = ingest(records, cache, progress=False)
    assert (first.converted, first.reused, first.failed) == (3, 0, [])
    second = ingest(records, cache, progress=False)
    assert (second.converted, second.reused, second.failed) == (0, 3, [])
    cache.path_for(records[1]).unlink()
    third = ingest(records, cache, progress=False)
    assert (third.converted, third.reused) == (1, 2)
    volume = cache.load(records[0])
    assert volume.shape == PREP.size and volume[0].max() < volume[-1].min()  # slice order kept


def test_bad_scans_are_reported_and_left_out(tmp_path):
    records = make_records(tmp_path / "data", 2)
    empty = tmp_path / "data" / "CP" / "CP-1" / "9" / "900"
    empty.mkdir(parents=True)
    wrong_count = ScanRecord("CP", "0", "100b", path=records[0].path, n_slices=99)
    bad = [ScanRecord("CP", "9", "900", path=str(empty)), wrong_count]
    earlier = ScanProblem("NCP__1__1", "/somewhere/NCP/1/1", "listed in the index but not found")
    cache = VolumeCache(tmp_path / "cache", PREP)
    report = ingest([*records, *bad], cache, progress=False, problems=[earlier])
    assert (report.converted, report.reused) == (2, 0)
    assert [p.key for p in report.failed] == ["NCP__1__1", "CP__9__900", "CP__0__100b"]
    failed = {p.key: p for p in report.failed}
    assert failed["CP__9__900"].path == str(empty) and "empty scan folder" in failed["CP__9__900"].cause
    assert "slice count mismatch" in failed["CP__0__100b"].cause
    assert not cache.has(bad[0]) and not cache.has(bad[1])

    saved = json.loads((cache.directory / INGEST_REPORT_JSON).read_text())
    assert saved["converted"] == 2 and saved["n_failed"] == 3 and saved["settings"] == PREP.to_dict()
    assert saved["failed"][1] == {
        "key": "CP__9__900",
        "path": str(empty),
        "cause": failed["CP__9__900"].cause,
    }
    with (cache.directory / INGEST_REPORT_CSV).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["key"] for row in rows] == ["NCP__1__1", "CP__9__900", "CP__0__100b"]
    assert rows[2]["path"] == records[0].path


def test_strict_mode_raises_at_the_first_problem(tmp_path):
    records = make_records(tmp_path / "data", 1)
    broken = make_scan(tmp_path / "data" / "CP" / "CP-1" / "5" / "50", 3)
    (broken / "2.png").write_bytes(b"garbage")
    cache = VolumeCache(tmp_path / "cache", PREP)
    with pytest.raises(IngestError) as excinfo:
        ingest([*records, ScanRecord("CP", "5", "50", path=str(broken))], cache, strict=True, progress=False)
    message = str(excinfo.value)
    assert "\n" not in message and message.startswith(f"{broken / '2.png'}: ") and "not an image" in message
    saved = json.loads((cache.directory / INGEST_REPORT_JSON).read_text())
    assert saved["aborted"] is True and saved["converted"] == 1
    with pytest.raises(IngestError, match="earlier"):
        ingest(records, cache, strict=True, progress=False, problems=[ScanProblem("k", "/p", "earlier")])


def test_no_partial_file_survives_a_failed_write(tmp_path, monkeypatch):
    records = make_records(tmp_path / "data", 2)
    cache = VolumeCache(tmp_path / "cache", PREP)

    def failing_save(handle, array, **kwargs):
        handle.write(b"\x93NUMPY partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_module.np, "save", failing_save)
    # a full disk is the cache's problem, not the scans': the ingest stops at once with one line naming the file
    with pytest.raises(StorageError, match=r"^\S+\.npy: cannot write the cache volume \(No space left on device\)$"):
        ingest(records, cache, progress=False)
    assert not any(cache.has(r) for r in records) and leftovers(cache.directory) == []
    saved = json.loads((cache.directory / INGEST_REPORT_JSON).read_text())
    assert saved["aborted"] is True and saved["failed"] == []  # no scan is blamed

    def interrupted_save(handle, array, **kwargs):
        handle.write(b"\x93NUMPY partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_module.np, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        ingest(records, cache, progress=False)
    assert not any(cache.has(r) for r in records) and leftovers(cache.directory) == []
    monkeypatch.undo()
    assert ingest(records, cache, progress=False).converted == 2


def test_repeated_keys_are_reported(tmp_path):
    records = make_records(tmp_path / "data", 1)
    twin = ScanRecord(records[0].class_name, records[0].patient_id, records[0].scan_id, path="/elsewhere")
    report = ingest([records[0], twin], VolumeCache(tmp_path / "cache", PREP), progress=False)
    assert report.converted == 1 and len(report.failed) == 1 and "repeated" in report.failed[0].cause


def test_parallel_ingest_of_a_discovered_tree(tmp_path):
    make_records(tmp_path / "data", 3)
    (tmp_path / "data" / "CP" / "CP-1" / "0" / "100" / "3.png").write_bytes(b"broken")
    records, problems = discover_ccii(tmp_path / "data")
    cache = VolumeCache(tmp_path / "cache", PREP)
    report = ingest(records, cache, workers=2, progress=True, problems=problems)
    assert (report.converted, len(report.failed)) == (2, 1)
    assert report.failed[0].path.endswith("3.png")
    serial = VolumeCache(tmp_path / "serial", PREP)
    ingest(records, serial, workers=0, progress=False)
    for record in records[1:]:
        np.testing.assert_array_equal(cache.load(record), serial.load(record))

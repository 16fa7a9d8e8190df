"""CC-CCII as a scan source: prepare/records/loader through the data module, resumable ingest, He et al.'s
cleaning (re-order, drop, discard, is_seg), its cache key, and the errors a user sees."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from darnet_pl.data.datamodule import CTDataModule
from darnet_pl.data.preprocess import Preprocessing
from darnet_pl.data.readers.scans import ScanError
from darnet_pl.data.readers.slices import read_slice_folder
from darnet_pl.data.records import ScanRecord
from darnet_pl.data.sources import ccii as ccii_module
from darnet_pl.data.sources.cached import RECORDS_NAME, SELECTION_NAME, SourceError
from darnet_pl.data.sources.ccii import CCIISource
from darnet_pl.data.sources.ccii_cleaning import CleaningListError, parse_positions, read_cleaning_list
from darnet_pl.data.splits import SplitError
from tests.helpers.ccii_tree import (
    CHUNKS,
    CLEANING_COLUMNS,
    PREP,
    SIZE,
    ccii_scans,
    ccii_source,
    cleaning_rows,
    make_ccii_tree,
    paper_datamodule,
    slice_value,
    write_csv,
    write_manifest,
    write_scan,
)

SCANS = ccii_scans(counts={"10": 5, "12": 6, "21": 5, "31": 6}, scans_of={"1": 2})
"""Patient 1 has two scans (CP 10 and 11), so CP's others are 2/12 and 3/13."""


def depth_profile(volume: np.ndarray) -> list[int]:
    return np.asarray(volume)[:, 3, 3].tolist()


# ------------------------------------------------------------------------------------ end to end


def test_paper_split_end_to_end_through_the_datamodule(tmp_path, caplog):
    root = tmp_path / "CC-CCII"
    make_ccii_tree(root, SCANS)
    (root / "NCP" / "NCP-1" / "5" / "21" / "2.png").write_bytes(b"damaged")  # sampled by depth 4 of 5: fails
    manifest = write_manifest(tmp_path / "split.csv", SCANS, CHUNKS)
    src = ccii_source(root, tmp_path / "cache")
    dm = paper_datamodule(src, manifest)
    dm.prepare_data()
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "1 scan(s) of the split manifest are not available" in warning
    assert "NCP__5__21" in warning and str(src.report_path) in warning
    assert {k: len(v) for k, v in dm.subsets.items()} == {"train": 2, "val": 4, "test": 3}
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        batch = next(iter(loader))
        image = batch["image"]
        assert isinstance(image, torch.Tensor) and image.dtype == torch.float32
        assert image.shape[1:] == (1, *SIZE) and 1 <= image.shape[0] <= 2
        assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    report = json.loads(src.report_path.read_text())
    assert (report["converted"], report["n_failed"]) == (9, 1)
    assert report["failed"][0]["path"].endswith("2.png")
    description = dm.hparams["source_description"]
    assert description["source"] == "ccii" and description["cache_key"] == src.cache_key
    assert Preprocessing(**description["preprocessing"]).cache_key() == src.prep.cache_key()


def test_available_scans_missing_from_the_manifest_are_an_error(tmp_path):
    root = tmp_path / "CC-CCII"
    make_ccii_tree(root, SCANS)
    manifest = write_manifest(tmp_path / "split.csv", SCANS[1:], CHUNKS)  # CP__1__10 not placed
    src = ccii_source(root, tmp_path / "cache")
    src.prepare()
    with pytest.raises(SplitError, match=r"1 scan\(s\) of the data are not in the split manifest, e.g. CP__1__10"):
        paper_datamodule(src, manifest).setup("fit")


def test_prepare_is_resumable_and_records_come_from_the_cache(tmp_path, monkeypatch):
    root = tmp_path / "CC-CCII"
    expected = make_ccii_tree(root, SCANS[:4])
    src = ccii_source(root, tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="no prepared scans"):
        src.records()
    first = src.ingest(src.plan())
    assert (first.converted, first.reused, first.failed) == (4, 0, [])
    stamps = {p.name: p.stat().st_mtime_ns for p in src.cache.directory.glob("*.npy")}
    second = src.ingest(src.plan())
    assert (second.converted, second.reused) == (0, 4)
    assert {p.name: p.stat().st_mtime_ns for p in src.cache.directory.glob("*.npy")} == stamps

    def no_walk(*args, **kwargs):
        raise AssertionError("records() must not walk the data tree")

    monkeypatch.setattr(ccii_module, "discover_ccii", no_walk)
    assert ccii_source(root, tmp_path / "cache").records() == expected
    assert (src.cache.directory / RECORDS_NAME).is_file()
    loader = src.volume_loader()
    volume = loader(expected[2])
    assert isinstance(volume, np.memmap) and volume.dtype == np.uint8 and volume.shape == SIZE
    np.testing.assert_array_equal(volume, read_slice_folder(expected[2].path, src.prep))


def test_strict_stops_at_the_first_problem_with_one_line(tmp_path):
    root = tmp_path / "CC-CCII"
    make_ccii_tree(root, SCANS[:2])
    (root / "CP" / "CP-1" / "1" / "11" / "1.png").write_bytes(b"damaged")
    src = ccii_source(root, tmp_path / "cache", strict=True)
    with pytest.raises(SourceError) as excinfo:
        src.prepare()
    message = str(excinfo.value)
    assert "\n" not in message and "1.png" in message and str(src.report_path) in message
    assert json.loads(src.report_path.read_text())["aborted"] is True


def test_missing_root_and_missing_cleaning_list_are_one_line_errors(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as excinfo:
        ccii_source(missing, tmp_path / "cache").prepare()
    assert str(excinfo.value).startswith(f"{missing}: CC-CCII data root not found")
    assert "\n" not in str(excinfo.value)
    with pytest.raises(SourceError, match="cleaning_csv"):
        ccii_source(tmp_path, tmp_path / "cache", apply_cleaning=True)
    with pytest.raises(FileNotFoundError, match="cleaning list not found"):
        ccii_source(tmp_path, tmp_path / "cache", cleaning_csv=tmp_path / "none.csv", exclude_segmented=True)


# ------------------------------------------------------------------------------------ cleaning

CLEAN_SCANS = ccii_scans(patients=(2, 3, 3), counts={"11": 6, "21": 5, "32": 3})
"""CP 1/10, 2/11; NCP 3/20, 4/21, 5/22; Normal 6/30, 7/31, 8/32."""
CLEANING_ROWS = cleaning_rows(
    CLEAN_SCANS,
    {
        "10": {"re_order": "2-3+0-1"},
        "11": {"repeat_ids": "1;3"},
        "20": {"re_order": "reverse"},
        "21": {"repeat_ids": "1;20", "re_order": "3-4+0-2+9"},  # a position past the end, repeat_ids overshooting
        "22": {"repeat_ids": "discard"},
        "30": {"is_seg": 1},
        "32": {"repeat_ids": "0-1"},  # all but one of its 3 slices: nothing left
    },
    unlisted={"31"},
)


def test_cleaning_reorders_drops_discards_and_excludes_segmented(tmp_path):
    root = tmp_path / "CC-CCII"
    records = {r.key: r for r in make_ccii_tree(root, CLEAN_SCANS)}
    cleaning = write_csv(tmp_path / "he2020.csv", CLEANING_COLUMNS, CLEANING_ROWS)
    src = ccii_source(root, tmp_path / "cache", cleaning_csv=cleaning, apply_cleaning=True)
    report = src.ingest(src.plan())
    assert (report.converted, report.failed) == (6, [])
    load = src.volume_loader()
    expected = {
        "CP__1__10": [2, 3, 0, 1],
        "CP__2__11": [0, 2, 4, 5],
        "NCP__3__20": [3, 2, 1, 0],
        "NCP__4__21": [3, 4, 0, 2],
        "Normal__6__30": [0, 1, 2, 3],
        "Normal__7__31": [0, 1, 2, 3],
    }
    kept = src.records()
    assert sorted(r.key for r in kept) == sorted(expected)
    for record in kept:
        assert depth_profile(load(record)) == [slice_value(k) for k in expected[record.key]], record.key
    with (src.cache.directory / SELECTION_NAME).open(newline="") as handle:
        selection = {row["key"]: row for row in csv.DictReader(handle)}
    assert selection["NCP__5__22"]["action"] == "left out" and "discard" in selection["NCP__5__22"]["detail"]
    assert "fewer than 2 slices" in selection["Normal__8__32"]["detail"]
    assert "past the last slice" in selection["NCP__4__21"]["detail"]
    assert selection["CP__1__10"]["detail"] == "slices re-ordered"
    assert selection["NCP__3__20"]["detail"] == "slices reversed"

    both = ccii_source(root, tmp_path / "cache", cleaning_csv=cleaning, apply_cleaning=True, exclude_segmented=True)
    assert "Normal__6__30" not in {r.key for r in both.records()}  # exclusion is applied when reading, too

    raw = ccii_source(root, tmp_path / "cache")
    raw.prepare()
    assert len(raw.records()) == len(CLEAN_SCANS)
    assert depth_profile(raw.volume_loader()(records["CP__1__10"])) == [slice_value(k) for k in range(4)]
    segmented = ccii_source(root, tmp_path / "cache", cleaning_csv=cleaning, exclude_segmented=True)
    assert segmented.cache.directory == raw.cache.directory  # selecting scans changes no volume
    assert {r.key for r in raw.records()} - {r.key for r in segmented.records()} == {"Normal__6__30"}


def test_the_cache_key_follows_the_cleaning(tmp_path):
    cleaning = write_csv(tmp_path / "he2020.csv", CLEANING_COLUMNS, CLEANING_ROWS)
    edited = write_csv(tmp_path / "edited.csv", CLEANING_COLUMNS, CLEANING_ROWS[:-1])
    raw = ccii_source(tmp_path, tmp_path / "cache")
    cleaned = ccii_source(tmp_path, tmp_path / "cache", cleaning_csv=cleaning, apply_cleaning=True)
    other = ccii_source(tmp_path, tmp_path / "cache", cleaning_csv=edited, apply_cleaning=True)
    keys = {raw.cache_key, cleaned.cache_key, other.cache_key}
    assert len(keys) == 3 and raw.cache_key.startswith("ccii/") and cleaned.cache_key.startswith("ccii-cleaned-")
    assert len({raw.cache.directory, cleaned.cache.directory, other.cache.directory}) == 3
    description = cleaned.describe()
    json.dumps(description)
    assert description["apply_cleaning"] is True and description["exclude_segmented"] is False
    assert description["cleaning_csv"] == str(cleaning) and description["cache_key"] == cleaned.cache_key


def test_cleaning_list_syntax(tmp_path):
    assert parse_positions("0-2;7; 9 - 10", ";", "x") == [0, 1, 2, 7, 9, 10]
    assert parse_positions("5+1-2", "+", "x") == [5, 1, 2]
    for bad in ("1,2", "3-1", "a", ""):
        with pytest.raises(CleaningListError, match="x: "):
            parse_positions(bad, ";", "x")
    broken = write_csv(tmp_path / "bad.csv", CLEANING_COLUMNS, [("CP", "1", "10", 0, 1, "4-2", "")])
    with pytest.raises(CleaningListError, match=rf"{broken}:2: range '4-2' runs backwards"):
        read_cleaning_list(broken)


def test_the_real_cleaning_list_parses_fully(ccii_metadata):
    entries = read_cleaning_list(ccii_metadata / "he2020_CT_cleaned_v2.csv")
    assert len(entries) == 4051
    assert sum(e.discard for e in entries.values()) == 39
    assert sum(e.reverse for e in entries.values()) == 98
    assert sum(e.is_seg for e in entries.values()) == 766
    assert sum(e.is_seg for k, e in entries.items() if k.startswith("Normal__")) == 606
    positions, note = entries["NCP__860__2382"].positions(212)  # re_order 200-211+0-175, repeat_ids 176-199
    assert positions == (*range(200, 212), *range(176)) and note.startswith("slices re-ordered")
    positions, note = entries["NCP__843__2358"].positions(279)  # repeat_ids runs past the last slice
    assert len(positions) == 279 - 43 - 13 - 99 and "past the last slice" in note


def test_read_slice_folder_positions_hook(tmp_path):
    folder = write_scan(tmp_path / "scan", 5)
    prep = Preprocessing(size=(3, 8, 8), border_crop=0)
    assert depth_profile(read_slice_folder(folder, prep, positions=[4, 0, 2])) == [slice_value(k) for k in (4, 0, 2)]
    with pytest.raises(ScanError, match="slice position 5 is outside the scan's 5 slices"):
        read_slice_folder(folder, prep, positions=[0, 5])
    with pytest.raises(ScanError, match="not a 3D scan"):
        read_slice_folder(folder, prep, positions=[1])


def test_records_keep_paths_and_slice_counts(tmp_path):
    root = tmp_path / "CC-CCII"
    make_ccii_tree(root, SCANS[:2], index=False)
    src = ccii_source(root, tmp_path / "cache")
    src.prepare()
    assert [(r.key, r.n_slices) for r in src.records()] == [("CP__1__10", None), ("CP__1__11", None)]
    assert all(isinstance(r, ScanRecord) and Path(r.path).is_dir() for r in src.records())


def test_the_data_configs_build_the_datamodule(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from darnet_pl.cli.train import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        ccii = compose(
            config_name="config",
            overrides=["+experiment=darnet", "data=ccii", f"data.root={tmp_path}", f"data.cache_dir={tmp_path}/c"],
        )
        folder = compose(
            config_name="config",
            overrides=["data=folder", f"data.scan_list={tmp_path}/list.csv", f"data.cache_dir={tmp_path}/c"],
        )
        prepare = compose(config_name="prepare", overrides=[f"data.root={tmp_path}", f"data.cache_dir={tmp_path}/c"])
    packaged = Path(ccii.data.split_manifest)  # the paper's split, shipped with the package
    assert ccii.data.split == "paper" and packaged.name == "darnet_paper_split.csv" and packaged.is_file()
    assert list(ccii.data.size) == [64, 224, 224]
    assert folder.data.split == "stratified" and prepare.data.source._target_.endswith("CCIISource")
    for cfg in (ccii, folder):
        dm = instantiate(cfg.data, _convert_="all")
        assert isinstance(dm, CTDataModule) and dm.size == (64, 224, 224)
        assert dm.source.prep.size == (64, 224, 224) and dm.source.prep.border_crop == 48
        assert dm.hparams.batch_size == 8 and dm.hparams.fold == 0
    assert dm.source.scan_list == tmp_path / "list.csv"


def test_cleaned_conversion_in_parallel_equals_serial(tmp_path):
    root = tmp_path / "CC-CCII"
    make_ccii_tree(root, CLEAN_SCANS)
    cleaning = write_csv(tmp_path / "he2020.csv", CLEANING_COLUMNS, CLEANING_ROWS)
    serial = ccii_source(root, tmp_path / "serial", cleaning_csv=cleaning, apply_cleaning=True)
    serial.prepare()
    parallel = CCIISource(
        root, tmp_path / "parallel", PREP, workers=2, progress=False, cleaning_csv=cleaning, apply_cleaning=True
    )
    report = parallel.ingest(parallel.plan())
    assert (report.converted, report.failed) == (6, [])
    assert parallel.records() == serial.records()
    for record in serial.records():
        np.testing.assert_array_equal(parallel.volume_loader()(record), serial.volume_loader()(record))

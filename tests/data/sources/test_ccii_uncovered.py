"""Scans that He et al.'s cleaning list does not cover: kept as downloaded, and said (plan, selection report,
``darnet-prepare``'s summary); on the real metadata 144 scans of the paper's split, and the shortcut control's
test set as the dry run prints it."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from darnet_pl.config.resolvers import packaged_file
from darnet_pl.data.sources.cached import NOT_IN_CLEANING_LIST, SELECTION_NAME
from darnet_pl.data.sources.ccii import CCIISource
from darnet_pl.data.sources.ccii_index import INDEX_NAME
from tests.helpers.ccii_tree import (
    CHUNKS,
    ccii_scans,
    ccii_source,
    cleaning_row,
    cleaning_rows,
    make_ccii_tree,
    write_cleaning_list,
    write_manifest,
)
from tests.helpers.prepare_run import prepare_output, row

SCANS = ccii_scans(counts={"11": 5})
ROWS = [
    *cleaning_rows(
        SCANS,
        {"20": {"re_order": "reverse"}, "21": {"repeat_ids": "discard"}, "31": {"is_seg": 1}},
        unlisted={"11", "30"},  # CP 2/11 and Normal 7/30: not in the list
    ),
    cleaning_row(("Normal", "99", "999")),  # a row for a scan the data has not: no matter
]
UNCOVERED = ["CP__2__11", "Normal__7__30"]
LINE = "2 scan(s) are not in the cleaning list (kept as downloaded): e.g. CP__2__11, Normal__7__30"
REAL_INDEX = Path(__file__).resolve().parents[3].parent / "shared" / "ccii" / INDEX_NAME


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(data root, cleaning list, split manifest) of a small tree that the list covers but for two scans."""
    root = tmp_path / "CC-CCII"
    make_ccii_tree(root, SCANS)
    cleaning = write_cleaning_list(tmp_path / "he2020.csv", ROWS)
    return root, cleaning, write_manifest(tmp_path / "split.csv", SCANS, CHUNKS)


def source(root: Path, tmp_path: Path, **kwargs) -> CCIISource:
    return ccii_source(root, tmp_path / "cache", **kwargs)


@pytest.mark.parametrize(
    "switches",
    [{"apply_cleaning": True}, {"exclude_segmented": True}, {"apply_cleaning": True, "exclude_segmented": True}],
)
def test_the_plan_names_the_scans_the_list_does_not_cover(tree, tmp_path, switches):
    root, cleaning, _ = tree
    for dry_run in (False, True):
        plan = source(root, tmp_path, cleaning_csv=cleaning, **switches).plan(dry_run=dry_run)
        assert list(plan.unlisted) == UNCOVERED
        assert set(UNCOVERED) <= {r.key for r in plan.records}  # kept
        assert plan.unlisted["CP__2__11"] == "no row in he2020.csv: kept as downloaded"


def test_without_either_switch_nothing_is_said(tree, tmp_path):
    root, cleaning, _ = tree
    assert source(root, tmp_path, cleaning_csv=cleaning).plan().unlisted == {}


def test_the_selection_report_lists_each_uncovered_scan(tree, tmp_path):
    root, cleaning, _ = tree
    src = source(root, tmp_path, cleaning_csv=cleaning, apply_cleaning=True, exclude_segmented=True)
    report = src.ingest(src.plan())
    assert (report.converted, report.failed) == (7, [])
    with (src.cache.directory / SELECTION_NAME).open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == ["key", "path", "action", "detail"]
    unlisted = [r for r in rows if r["action"] == NOT_IN_CLEANING_LIST == "not in cleaning list"]
    assert [r["key"] for r in unlisted] == UNCOVERED
    assert unlisted[0]["path"] == str(root / "CP" / "CP-1" / "2" / "11")
    assert unlisted[0]["detail"] == "no row in he2020.csv: kept as downloaded"
    actions = {r["key"]: r["action"] for r in rows}
    assert actions["NCP__5__21"] == actions["Normal__8__31"] == "left out" and actions["NCP__4__20"] == "cleaned"
    assert {r.key for r in src.records()} >= set(UNCOVERED)


def test_prepare_says_it_in_the_dry_run_and_the_real_run(tree, tmp_path, capsys):
    root, cleaning, manifest = tree
    common = (
        "data=ccii",
        f"data.root={root}",
        f"data.split_manifest={manifest}",
        f"data.source.cleaning_csv={cleaning}",
        "data.size=[4,8,8]",
        "data.source.preprocessing.border_crop=0",
    )
    cache = tmp_path / "cache"
    for switches in (("data.source.apply_cleaning=true",), ("data.source.exclude_segmented=true",)):
        dry = prepare_output(capsys, cache, *common, *switches, "+dry_run=true")
        assert LINE in dry.splitlines() and "dry run: nothing converted" in dry
    real = prepare_output(capsys, cache, *common, "data.source.exclude_segmented=true")
    assert LINE in real.splitlines() and "usable: 8 scan(s)" in real
    plain = prepare_output(capsys, cache, *common, "+dry_run=true")
    assert "not in the cleaning list" not in plain


def test_the_real_index_has_144_scans_the_list_does_not_cover(tmp_path):
    if not REAL_INDEX.is_file():
        pytest.skip(f"no CC-CCII index at {REAL_INDEX}")
    cleaning = packaged_file("ccii/he2020_CT_cleaned_v2.csv")
    src = source(tmp_path, tmp_path, index_csv=REAL_INDEX, cleaning_csv=cleaning, exclude_segmented=True)
    plan = src.plan(dry_run=True)
    assert len(plan.unlisted) == 144
    assert len(plan.records) == 4178 - 766


def test_the_shortcut_controls_test_set_as_the_dry_run_prints_it(tmp_path, capsys):
    """From the packaged split and cleaning list alone (the files of ../shared/ccii, as test_packaged_metadata
    checks), so it needs no download: the dry run lists the split manifest's scans and the list's is_seg marks."""
    control = prepare_output(
        capsys,
        tmp_path / "cache",
        "data=ccii",
        f"data.root={tmp_path}",
        "data.source.exclude_segmented=true",
        "+dry_run=true",
    )
    assert "144 scan(s) are not in the cleaning list (kept as downloaded): e.g. " in control
    assert "left out on purpose: 766 (766 supplied lung-segmented" in control
    assert row(control, "test").split()[1:] == ["417", "(175)", "280", "(152)", "154", "(49)", "851", "(376)"]
    assert row(control, "train").split()[-2:] == ["2561", "(1632)"]
    cleaned = prepare_output(
        capsys,
        tmp_path / "cache",
        "data=ccii",
        f"data.root={tmp_path}",
        "data.source.exclude_segmented=true",
        "data.source.apply_cleaning=true",
        "+dry_run=true",
    )
    assert "144 scan(s) are not in the cleaning list (kept as downloaded): e.g. " in cleaned
    assert "left out on purpose: 807 (766 supplied lung-segmented" in cleaned  # + 39 discards, 2 emptied scans
    assert row(cleaned, "test").split()[1:] == ["401", "(172)", "278", "(151)", "154", "(49)", "833", "(372)"]
    assert not (tmp_path / "cache").exists()

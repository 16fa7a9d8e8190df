"""CC-CCII discovery: the folder walk (with or without the archive level) and the check against the index,
including the dataset's real index (``../shared/ccii/unzip_filenames.csv``) on a tiny tree built from it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from darnet_pl.data.readers.scans import ScanError
from darnet_pl.data.sources.ccii_index import INDEX_NAME, discover_ccii, read_ccii_index

REAL_INDEX = Path(__file__).resolve().parents[3].parent / "shared" / "ccii" / INDEX_NAME
"""``<repo>/../shared/ccii/unzip_filenames.csv``, read in place (never copied into the repository)."""

_TINY_PNG: bytes | None = None


def make_scan(folder: Path, n_slices: int) -> Path:
    """A scan folder of ``n_slices`` tiny identical PNGs (discovery only counts them)."""
    global _TINY_PNG
    folder.mkdir(parents=True, exist_ok=True)
    if _TINY_PNG is None:
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / "1.png")
        _TINY_PNG = (folder / "1.png").read_bytes()
    for k in range(1, n_slices + 1):
        (folder / f"{k}.png").write_bytes(_TINY_PNG)
    return folder


def write_index(path: Path, rows: list[tuple[str, str, str, str, int]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["zip_file", "label", "patient_id", "scan_id", "n_slice"])
        writer.writerows(rows)
    return path


def causes(problems) -> dict[str, str]:
    return {p.key: p.cause for p in problems}


def test_discovery_with_and_without_the_archive_level(tmp_path):
    make_scan(tmp_path / "CP" / "CP-1" / "10" / "100", 3)
    make_scan(tmp_path / "CP" / "2" / "50", 2)  # no archive level
    make_scan(tmp_path / "NCP" / "moved" / "NCP-7" / "20" / "200", 4)  # one level deeper
    make_scan(tmp_path / "Normal" / "Normal-1" / "30" / "300", 5)
    make_scan(tmp_path / "Flu" / "Flu-1" / "40" / "400", 5)  # not a configured class: not searched
    records, problems = discover_ccii(tmp_path)
    assert problems == []
    assert [(r.class_name, r.patient_id, r.scan_id, r.n_slices) for r in records] == [
        ("CP", "2", "50", None),  # patients in numeric order: 2 before 10
        ("CP", "10", "100", None),
        ("NCP", "20", "200", None),
        ("Normal", "30", "300", None),
    ]
    assert records[1].path == str(tmp_path / "CP" / "CP-1" / "10" / "100")
    only_cp, _ = discover_ccii(tmp_path, class_names=("CP",))
    assert {r.class_name for r in only_cp} == {"CP"}


def test_discovery_reports_empty_misplaced_and_duplicate_folders(tmp_path):
    make_scan(tmp_path / "CP" / "CP-1" / "10" / "100", 3)
    (tmp_path / "CP" / "CP-1" / "10" / "101").mkdir()  # empty scan folder
    make_scan(tmp_path / "CP" / "11", 2)  # slices directly in a patient folder: no scan level
    make_scan(tmp_path / "CP" / "CP-2" / "10" / "100", 3)  # the same scan unpacked twice
    make_scan(tmp_path / "CP" / "__MACOSX" / "CP-1" / "10" / "100", 3)  # zip clutter, skipped
    records, problems = discover_ccii(tmp_path)
    assert [r.key for r in records] == ["CP__10__100"]
    by_path = {p.path: p.cause for p in problems}
    assert by_path[str(tmp_path / "CP" / "CP-1" / "10" / "101")].startswith("empty scan folder")
    assert "slice images directly in 11/" in by_path[str(tmp_path / "CP" / "11")]
    assert "duplicate of scan folder" in by_path[str(tmp_path / "CP" / "CP-2" / "10" / "100")]
    assert len(problems) == 3


def test_discovery_checks_the_index(tmp_path):
    make_scan(tmp_path / "CP" / "CP-1" / "10" / "100", 3)  # matches
    make_scan(tmp_path / "CP" / "CP-1" / "10" / "101", 4)  # index says 5
    make_scan(tmp_path / "CP" / "CP-1" / "12" / "120", 2)  # not in the index
    make_scan(tmp_path / "NCP" / "NCP-1" / "20" / "200", 2)  # index says Normal
    write_index(
        tmp_path / INDEX_NAME,
        [
            ("CP-1.zip", "CP", "10", "100", 3),
            ("CP-1.zip", "CP", "10", "101", 5),
            ("Normal-1.zip", "Normal", "20", "200", 2),
            ("NCP-3.zip", "NCP", "21", "210", 40),  # not on disk
        ],
    )
    records, problems = discover_ccii(tmp_path)  # the index at the root is found by itself
    assert [(r.key, r.n_slices) for r in records] == [("CP__10__100", 3)]
    found = causes(problems)
    assert found["CP__10__101"] == "slice count mismatch: the index says 5, the folder has 4"
    assert found["CP__12__120"].startswith("not listed in the index")
    assert found["NCP__20__200"] == "found under NCP/ but the index labels it Normal"
    assert found["NCP__21__210"].startswith("listed in the index (NCP-3.zip) but no folder 21/210")
    assert len(problems) == 4
    paths = {p.key: p.path for p in problems}
    assert paths["CP__10__101"] == str(tmp_path / "CP" / "CP-1" / "10" / "101")

    without, no_problems = discover_ccii(tmp_path, use_index=False)
    assert len(without) == 4 and no_problems == []
    elsewhere = write_index(tmp_path / "other.csv", [("CP-1.zip", "CP", "10", "100", 3)])
    records, problems = discover_ccii(tmp_path, index_csv=elsewhere, class_names=("CP",))
    assert [r.key for r in records] == ["CP__10__100"]
    assert {p.key for p in problems} == {"CP__10__101", "CP__12__120"}


def test_index_problems(tmp_path):
    index = write_index(tmp_path / "index.csv", [("a.zip", "CP", "1", "1", 3), ("a.zip", "CP", "1", "1", 3)])
    with index.open("a") as handle:
        handle.write("a.zip,CP,1,2,many\n")
    entries, problems = read_ccii_index(index)
    assert list(entries) == [("1", "1")]
    assert [p.path for p in problems] == [f"{index}:3", f"{index}:4"]
    assert "twice" in problems[0].cause and "n_slice" in problems[1].cause
    (tmp_path / "bad.csv").write_text("label,patient_id\nCP,1\n")
    with pytest.raises(ScanError, match="missing column"):
        read_ccii_index(tmp_path / "bad.csv")


def test_discovery_refuses_a_root_without_classes(tmp_path):
    with pytest.raises(ScanError) as excinfo:
        discover_ccii(tmp_path / "nowhere")
    assert str(excinfo.value) == f"{tmp_path / 'nowhere'}: CC-CCII root folder not found"
    with pytest.raises(ScanError, match="no class folder"):
        discover_ccii(tmp_path)


def test_discovery_against_the_real_index(tmp_path):
    if not REAL_INDEX.is_file():
        pytest.skip(f"CC-CCII index not found at {REAL_INDEX}")
    with REAL_INDEX.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_size = sorted(rows, key=lambda r: (int(r["n_slice"]), r["label"], r["scan_id"]))
    exact = by_size[:3]  # the shortest scans, written with their true slice count
    short = [r for r in rows if r["label"] == "NCP"][:1] + [r for r in rows if r["label"] == "Normal"][:1]
    for row in exact + short:
        n = int(row["n_slice"]) if row in exact else 4  # the others are written incomplete
        archive = row["zip_file"].removesuffix(".zip")
        make_scan(tmp_path / row["label"] / archive / row["patient_id"] / row["scan_id"], n)
    records, problems = discover_ccii(tmp_path, index_csv=REAL_INDEX)
    assert sorted(r.scan_id for r in records) == sorted(r["scan_id"] for r in exact)
    assert all(r.n_slices == int(next(x for x in exact if x["scan_id"] == r.scan_id)["n_slice"]) for r in records)
    mismatched = [p for p in problems if p.cause.startswith("slice count mismatch")]
    assert sorted(p.key.split("__")[2] for p in mismatched) == sorted(r["scan_id"] for r in short)
    assert all(
        f"the index says {int(r['n_slice'])}, the folder has 4"
        in causes(problems)[f"{r['label']}__{r['patient_id']}__{r['scan_id']}"]
        for r in short
    )
    missing = [p for p in problems if p.cause.startswith("listed in the index")]
    assert len(missing) == len(rows) - 5
    assert len(problems) == len(rows) - 3

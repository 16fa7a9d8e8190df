"""The CC-CCII metadata shipped with the package: the paper's split and He et al.'s cleaning list, unchanged."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from darnet_pl.config.resolvers import packaged_file

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "ccii"


@pytest.mark.parametrize("name", ["darnet_paper_split.csv", "he2020_CT_cleaned_v2.csv"])
def test_packaged_files_are_the_published_ones(name: str) -> None:
    packaged = Path(packaged_file(f"ccii/{name}"))
    if not (SHARED / name).is_file():
        pytest.skip(f"no reference copy at {SHARED}")
    assert packaged.read_bytes() == (SHARED / name).read_bytes()


def test_the_packaged_split_is_table_one() -> None:
    with open(packaged_file("ccii/darnet_paper_split.csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    test = Counter(r["class"] for r in rows if r["split"] == "test")
    train = [r for r in rows if r["split"] != "test"]
    assert (len(rows), len(train), dict(test)) == (4178, 3238, {"CP": 419, "NCP": 299, "Normal": 222})
    assert len({r["patient_id"] for r in train}) == 2285


def test_a_file_not_shipped_is_one_line() -> None:
    with pytest.raises(FileNotFoundError, match="not shipped with this installation"):
        packaged_file("ccii/nothing.csv")

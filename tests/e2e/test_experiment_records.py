"""Every recipe of conf/experiment/ has its record in experiments/<name>/README.md, with the command that runs it."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted(p.stem for p in (REPO_ROOT / "conf" / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_has_a_record_with_its_command(name: str) -> None:
    record = REPO_ROOT / "experiments" / name / "README.md"
    assert record.is_file(), f"no record for +experiment={name}: write {record.relative_to(REPO_ROOT)}"
    text = record.read_text(encoding="utf-8")
    assert f"python -m darnet_pl +experiment={name}" in text
    assert "Status:" in text or "Result" in text


def test_no_record_without_a_recipe() -> None:
    # benchmarks/ holds measured speed figures (JSON), not a recipe's record
    folders = sorted(p.name for p in (REPO_ROOT / "experiments").iterdir() if p.is_dir() and p.name != "benchmarks")
    assert folders == RECIPES


BENCHMARKS = REPO_ROOT / "experiments" / "benchmarks"


@pytest.mark.parametrize("record", sorted(p.name for p in BENCHMARKS.glob("*.json")))
def test_every_benchmark_record_says_what_produced_it_and_is_listed(record: str) -> None:
    import json

    data = json.loads((BENCHMARKS / record).read_text(encoding="utf-8"))
    assert {"command", "date", "commit", "machine", "result"} <= data.keys()
    assert data["command"].startswith("python -m darnet_pl.bench")
    assert f"({record})" in (BENCHMARKS / "README.md").read_text(encoding="utf-8"), "list it in the README's table"


def test_the_docs_cite_only_records_that_exist() -> None:
    import re

    pages = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]
    pattern = re.compile(r"experiments/benchmarks/([\w.+-]+\.json)")
    cited = {name for page in pages for name in pattern.findall(page.read_text(encoding="utf-8"))}
    assert cited, "the speed pages name their records"
    assert sorted(name for name in cited if not (BENCHMARKS / name).is_file()) == []

"""The commit a run and a benchmark record report: that of the checkout the package runs from, marked when the code
differs from it, and none for a copy that is not a checkout's ``src/darnet_pl``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from darnet_pl.utils import provenance


def git(where: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A repository holding the package at src/darnet_pl, one commit."""
    git(tmp_path, "init", "-q")
    (tmp_path / "src" / "darnet_pl").mkdir(parents=True)
    (tmp_path / "src" / "darnet_pl" / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text("seed: 1\n", encoding="utf-8")
    git(tmp_path, "add", "-A")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    return tmp_path


def test_a_clean_checkout_reports_its_commit(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(provenance, "PACKAGE_DIR", checkout / "src" / "darnet_pl")
    head = git(checkout, "rev-parse", "HEAD")
    assert provenance.source_commit() == head and len(head) == 40
    assert provenance.source_commit(short=True) == git(checkout, "rev-parse", "--short", "HEAD")


@pytest.mark.parametrize("changed", ["src/darnet_pl/__init__.py", "src/darnet_pl/new.py", "conf/config.yaml"])
def test_changed_or_new_code_is_marked(checkout: Path, monkeypatch: pytest.MonkeyPatch, changed: str) -> None:
    monkeypatch.setattr(provenance, "PACKAGE_DIR", checkout / "src" / "darnet_pl")
    (checkout / changed).write_text("x = 1\n", encoding="utf-8")
    assert provenance.source_commit() == git(checkout, "rev-parse", "HEAD") + "+changes"


def test_other_files_of_the_checkout_do_not_mark_it(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(provenance, "PACKAGE_DIR", checkout / "src" / "darnet_pl")
    (checkout / "notes.txt").write_text("a user's notes\n", encoding="utf-8")
    assert provenance.source_commit() == git(checkout, "rev-parse", "HEAD")


def test_a_copy_outside_a_checkout_or_elsewhere_in_one_has_no_commit(
    checkout: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = tmp_path_factory.mktemp("site-packages") / "darnet_pl"
    installed.mkdir()
    monkeypatch.setattr(provenance, "PACKAGE_DIR", installed)
    assert provenance.source_commit() is None
    vendored = checkout / "third_party" / "darnet_pl"  # the package copied into some other repository
    vendored.mkdir(parents=True)
    monkeypatch.setattr(provenance, "PACKAGE_DIR", vendored)
    assert provenance.source_commit() is None

"""Something costly (a trained sweep, trained models) made once per test run and then only read.

Under pytest-xdist every worker is its own process with its own session fixtures: a session fixture alone would
train once per worker. ``made_once`` builds into the folder the workers share (the parent of each worker's base
temporary folder), behind a file lock, so the first worker that needs it builds it and the others wait and read it.
Without xdist it is an ordinary folder of this session's temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock


def made_once(
    factory: pytest.TempPathFactory, name: str, make: Callable[[Path], dict[str, Any]]
) -> tuple[Path, dict[str, Any]]:
    """``(folder, facts)``: ``make(folder)`` run once for the whole test run (all xdist workers together) into an
    empty ``folder``; ``facts`` is what it returned (JSON), read back by the workers that did not make it."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        folder = factory.mktemp(name)
        return folder, make(folder)
    shared = factory.getbasetemp().parent  # the run's folder, above every worker's own (popen-gw0, popen-gw1, ...)
    folder, facts = shared / name, shared / f"{name}.json"
    with FileLock(str(shared / f"{name}.lock")):
        if not facts.is_file():
            if folder.exists():  # a worker failed to make it: start again from nothing
                shutil.rmtree(folder)
            folder.mkdir()
            facts.write_text(json.dumps(make(folder)), encoding="utf-8")  # written last: it says "made"
    return folder, json.loads(facts.read_text(encoding="utf-8"))

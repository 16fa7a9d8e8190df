"""The smoke experiment really learns: a full `+experiment=smoke` run through the entry point (minutes).

Not part of `make test` (CI time); run it with `make test-smoke`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.cli import run_cli


@pytest.mark.smoke
def test_smoke_experiment_reaches_the_target_auc(tmp_path: Path) -> None:
    result = run_cli("+experiment=smoke", "logger=csv", f"paths.log_dir={tmp_path}", cwd=tmp_path, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(next(tmp_path.rglob("test_metrics.json")).read_text())
    assert metrics["test/3class/auc_macro"] >= 0.95, metrics

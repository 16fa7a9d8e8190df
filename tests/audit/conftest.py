"""The audit's shared fixture: two tiny phantom models, trained once per session, one of them on a planted shortcut."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.cli import run_cli
from tests.helpers.user import explain

TRAIN = (
    "+experiment=smoke",
    "debug=tiny",
    "logger=none",
    "trainer.max_epochs=3",
    "synthetic_patients_per_class=12",
    "model.optimizer.lr=3e-3",
)
"""A tiny training (16x32x32, width 4, 12 patients per class, 3 epochs): enough to learn a frame, not the lungs.
Tested, as every run: the audit takes finished jobs only (runs.jobs)."""
SHORTCUT = "data.source.shortcut.class_name=Normal"
"""A bright frame on every slice of half of the Normal patients (conf/data/synthetic.yaml)."""


@pytest.fixture(scope="session")
def phantom_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Run folders of ``python -m darnet_pl`` trained with the planted shortcut (``planted``) and without
    (``clean``), each trained once for the session."""
    runs = {}
    for name, extra in (("planted", (SHORTCUT,)), ("clean", ())):
        cwd = tmp_path_factory.mktemp(f"phantom-{name}")
        result = run_cli(*TRAIN, *extra, f"paths.log_dir={cwd / 'outputs'}", cwd=cwd, timeout=900)
        assert result.returncode == 0, explain(result)
        runs[name] = cwd / "outputs"
    return runs

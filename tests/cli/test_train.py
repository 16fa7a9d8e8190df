"""The Hydra app: configs compose, and the real entry point runs end to end (fast_dev_run) and fails clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra.utils import instantiate

from tests.helpers.cli import compose_config, run_cli


def test_experiments_compose() -> None:
    smoke = compose_config("+experiment=smoke")
    assert smoke.trainer.accelerator == "cpu"
    assert list(smoke.data.size) == [16, 64, 64] and smoke.model.width == 16
    darnet = compose_config("+experiment=darnet")
    assert list(darnet.data.size) == [64, 224, 224]
    assert darnet.model.attention == "dual" and darnet.model.width == 64
    assert darnet.trainer.max_epochs == 80 and darnet.data.batch_size == 8
    assert darnet.model.optimizer._partial_ and darnet.model.optimizer.lr == 1e-3
    assert list(darnet.model.scheduler.milestones) == [30, 60] and darnet.model.scheduler.gamma == 0.1
    assert darnet.callbacks.model_checkpoint.monitor == "val/loss"


def test_model_config_instantiates_the_paper_model() -> None:
    cfg = compose_config("+experiment=darnet", "model.attention=ca")
    model = instantiate(cfg.model, input_size=[64, 224, 224], class_names=["CP", "NCP", "Normal"], _convert_="all")
    assert sum(p.numel() for p in model.net.parameters()) == 33_238_075
    optimizer = model.configure_optimizers()["optimizer"]
    assert type(optimizer).__name__ == "Adam" and optimizer.defaults["lr"] == 1e-3


def _run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("config_resolved.yaml"))


def test_fast_dev_run_through_the_entry_point(tmp_path: Path) -> None:
    args = ("+experiment=smoke", "debug=fdr", "logger=none", f"paths.log_dir={tmp_path}")
    first = run_cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_cli(*args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    runs = _run_dirs(tmp_path)
    assert len(runs) == 2, "two runs must get two output directories"
    for run in runs:
        metrics = json.loads((run / "test_metrics.json").read_text())
        assert "test/3class/auc_macro" in metrics and "test/2class/sensitivity" in metrics
        assert (run / ".hydra" / "config.yaml").is_file()
        assert (run / "split_manifest.csv").is_file()
        header = (run / "predictions.csv").read_text().splitlines()[0]
        assert header == "patient_id,scan_id,label,prob_CP,prob_NCP,prob_Normal"


def test_user_error_is_one_line_and_nonzero(tmp_path: Path) -> None:
    result = run_cli(
        "+experiment=smoke", "debug=fdr", "logger=none", "fold=7", f"paths.log_dir={tmp_path}", cwd=tmp_path
    )
    assert result.returncode != 0
    assert "error: fold=7 is out of range: folds are 0..4" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("multirun", [False, True])
def test_an_output_folder_that_cannot_be_written_is_one_line(tmp_path: Path, multirun: bool) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    sweep = ("fold=0,1", "-m") if multirun else ()
    result = run_cli("+experiment=smoke", "debug=fdr", f"paths.log_dir={blocker}/logs", *sweep, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {blocker}/logs/smoke/{'sweep' if multirun else 'runs'}: cannot write into this output folder "
        "(Not a directory); choose another with paths.log_dir=<folder>"
    ]


@pytest.mark.parametrize(
    ("override", "message"),
    [("model.atention=ca", "atention"), ("data=nosuchdata", "nosuchdata")],
)
def test_config_typos_are_refused(tmp_path: Path, override: str, message: str) -> None:
    result = run_cli("+experiment=smoke", override, f"paths.log_dir={tmp_path}", cwd=tmp_path, timeout=120)
    assert result.returncode != 0
    assert message in result.stderr
    assert not _run_dirs(tmp_path)

"""Training (`python -m darnet_pl`) against bad input and faults, through the real entry point, from an empty folder.

Each case checks what the user sees: the exit status, the one `error:` line naming the key or file, and what is
(not) left on disk.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers.faults import tmpfs
from tests.helpers.forked import run_forked
from tests.helpers.user import explain, user_env

pytestmark = pytest.mark.slow

TINY = ("+experiment=smoke", "debug=tiny", "logger=none")


def train(*args: str, cwd: Path, timeout: int = 300, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m darnet_pl <args>`` in ``cwd`` with the user's environment (plus ``env``)."""
    return run_forked("darnet_pl", *args, cwd=cwd, timeout=timeout, env=user_env(**env))


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, explain(result)
    return lines[0]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.batch_size=abc", "error: data.batch_size=abc: expected a positive integer"),
        ("data.batch_size=0", "error: data.batch_size=0: expected a positive integer"),
        ("trainer.max_epochs=abc", "error: trainer.max_epochs=abc: expected a positive integer (or -1: no limit)"),
        ("model.optimizer.lr=-1", "error: model.optimizer.lr=-1: expected a positive number"),
        ("data.size=[1,2]", "error: data.size=[1,2]: expected three positive integers [D,H,W]"),
        ("data.num_workers=two", "error: data.num_workers=two: expected 0 or a positive integer"),
        ("seed=1.5", "error: seed=1.5: expected an integer from 0 to 4294967295 (numpy's seed range)"),
        ("fold=7", "error: fold=7 is out of range: folds are 0..4"),
        ("fold=a..b", "error: fold=a..b: folds are whole numbers, e.g. fold=2, fold=0,1 or fold=0..4"),
    ],
)
def test_wrong_values_are_one_line_and_leave_nothing(tmp_path: Path, override: str, message: str) -> None:
    result = train(*TINY, override, cwd=tmp_path, timeout=120)
    assert result.returncode == 2, explain(result)
    assert error_line(result) == message
    assert not list(tmp_path.rglob("config_resolved.yaml")), "a stub run folder was left behind"
    assert not list(tmp_path.rglob("*.log")), "a stub run folder was left behind"


def test_a_wrong_fold_range_in_a_sweep_is_refused_before_any_job(tmp_path: Path) -> None:
    result = train(*TINY, "fold=a..b", "-m", cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert error_line(result) == "error: fold=a..b: folds are whole numbers, e.g. fold=2, fold=0,1 or fold=0..4"
    assert not (tmp_path / "outputs").exists()


@pytest.fixture(scope="module")
def trained_checkpoint(tiny_sweep) -> Path:
    """last.ckpt of a real ``+experiment=smoke debug=tiny`` training: fold 0 of the shared tiny sweep."""
    assert tiny_sweep.result.returncode == 0, explain(tiny_sweep.result)
    return tiny_sweep.job(0) / "checkpoints" / "last.ckpt"


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_holding_code_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _RunsCode(marker)}, evil)
    result = train(*TINY, f"ckpt_path={evil}", cwd=tmp_path)
    assert result.returncode == 2
    assert error_line(result).startswith(f"error: {evil}: refused: the file holds the Python object posix.system")
    assert not marker.exists(), "the checkpoint's code ran"


def test_an_automatic_resume_refuses_a_planted_last_checkpoint(tmp_path: Path) -> None:
    """A shared sweep folder: someone drops a crafted last.ckpt into a job folder; re-running the sweep resumes."""
    marker = tmp_path / "ran"
    job = tmp_path / "outputs" / "smoke" / "sweep" / "dual" / "debug=tiny" / "fold0" / "checkpoints"
    job.mkdir(parents=True)
    torch.save({"payload": _RunsCode(marker)}, job / "last.ckpt")
    result = train(*TINY, "fold=0", "-m", cwd=tmp_path)
    assert result.returncode == 1, explain(result)
    assert "refused: the file holds the Python object posix.system" in result.stderr
    assert not marker.exists(), "the checkpoint's code ran"


@pytest.mark.parametrize(
    ("content", "override", "message"),
    [
        ("random", None, "not a PyTorch checkpoint (not a torch.save archive)"),
        ("trained", "model.attention=ca", "a DARNet(attention='dual') checkpoint, expected attention='ca'"),
        ("trained", "model.width=8", "a DARNet of width 4, but this run builds width 8"),
        ("trained", "data.size=[16,64,64]", "model input size [16, 32, 32], expected [16, 64, 64]"),
    ],
)
def test_unusable_checkpoints_are_one_line(
    tmp_path: Path, trained_checkpoint: Path, content: str, override: str | None, message: str
) -> None:
    ckpt = tmp_path / "given.ckpt"
    ckpt.write_bytes(os.urandom(4096) if content == "random" else trained_checkpoint.read_bytes())
    result = train(*TINY, f"ckpt_path={ckpt}", *([override] if override else []), cwd=tmp_path)
    assert result.returncode == 2
    assert error_line(result) == f"error: {ckpt}: {message}"


def test_a_missing_checkpoint_is_one_line(tmp_path: Path) -> None:
    result = train(*TINY, "ckpt_path=nowhere.ckpt", cwd=tmp_path)
    assert result.returncode == 2
    assert error_line(result) == "error: nowhere.ckpt: checkpoint not found"


def test_a_full_disk_while_checkpointing_leaves_no_truncated_checkpoint(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", size="600k") as small:
        run_dir = small / "run"
        result = train(*TINY, f"hydra.run.dir={run_dir}", cwd=tmp_path)
        assert result.returncode == 2, explain(result)
        line = error_line(result)
        assert line.startswith(f"error: {run_dir}/checkpoints/") and "No space left on device" in line, line
        leftovers = [p.name for p in run_dir.rglob("*") if p.suffix in (".ckpt", ".tmp") or p.name.startswith(".")]
        assert [name for name in leftovers if name not in (".hydra", ".job.lock")] == [], leftovers


def test_a_read_only_output_folder_is_refused_before_the_run(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", read_only=True) as read_only:
        result = train(*TINY, f"hydra.run.dir={read_only}/run", cwd=tmp_path)
        assert result.returncode == 2
        assert error_line(result).startswith(f"error: {read_only}: cannot write into this output folder (Read-only")


def test_a_folder_given_to_resume_is_never_removed_on_an_error(tmp_path: Path) -> None:
    mine = tmp_path / "my_run"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    result = train(*TINY, "data.batch_size=abc", f"hydra.run.dir={mine}", cwd=tmp_path)
    assert result.returncode == 2
    assert (mine / "notes.txt").read_text() == "mine"


def test_a_failing_job_is_recorded_and_the_sweep_still_reports(tmp_path: Path) -> None:
    result = train(*TINY, "fold=7,0", "-m", cwd=tmp_path)
    assert result.returncode == 1, explain(result)
    sweep = tmp_path / "outputs" / "smoke" / "sweep"
    assert (sweep / "report" / "table_iv.md").is_file(), "no end-of-sweep report"
    assert "Traceback" not in result.stderr
    tail = result.stderr.strip().splitlines()[-2:]
    assert tail == [
        f"error: 1 job(s) of {sweep} failed:",
        "  dual/debug=tiny/fold7: fold=7 is out of range: folds are 0..4",
    ]
    assert (sweep / "dual" / "debug=tiny" / "fold7" / "failed.json").is_file()
    assert [p.parent.name for p in sweep.rglob("test_metrics.json")] == ["fold0"]  # the other job finished


def test_two_copies_of_one_sweep_run_each_job_once(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "darnet_pl", "+experiment=smoke", "debug=tiny", "fold=0..2", "-m"]
    copies = [
        subprocess.Popen(args, cwd=tmp_path, env=user_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [c.communicate(timeout=600) for c in copies]
    assert [c.returncode for c in copies] == [0, 0], outputs
    text = "".join(out + err for out, err in outputs)
    ends = [line for line in text.splitlines() if line.startswith("done: ")]  # each trained job's end line
    assert len(ends) == 3, "a job was trained twice (or not at all)"
    for fold in range(3):
        history = tmp_path / "outputs/smoke/sweep/dual/debug=tiny" / f"fold{fold}" / "csv" / "metrics.csv"
        with history.open(newline="") as handle:
            validation_rows = [row for row in csv.DictReader(handle) if row.get("val/loss")]
        assert len(validation_rows) == 1, f"{history}: {len(validation_rows)} validation rows for 1 epoch"
    for log_file in (tmp_path / "outputs").rglob("*.log"):  # a job's log is its own process's alone
        assert "skipped here" not in log_file.read_text(), log_file


def test_the_shortcut_control_on_another_source_is_one_line(tmp_path: Path) -> None:
    result = train("+experiment=shortcut_control", "data=synthetic", "debug=tiny", cwd=tmp_path)
    assert result.returncode == 2
    assert error_line(result) == (
        "error: data.source.exclude_segmented: CC-CCII's cleaning list applies to data=ccii only, not to "
        "darnet_pl.data.sources.synthetic.SyntheticSource"
    )


@pytest.mark.parametrize("multirun", [False, True])
def test_an_unusable_darnet_log_dir_is_one_line_before_any_job(tmp_path: Path, multirun: bool) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    multirun_args = ("fold=0,1", "-m") if multirun else ()
    result = train(*TINY, *multirun_args, cwd=tmp_path, timeout=120, DARNET_LOG_DIR=str(blocker / "logs"))
    assert result.returncode == 2
    where = blocker / "logs" / "smoke" / ("sweep" if multirun else "runs")
    assert error_line(result) == (
        f"error: {where}: cannot write into this output folder (Not a directory); "
        "choose another with paths.log_dir=<folder>"
    )
    assert "UserWarning" not in result.stderr

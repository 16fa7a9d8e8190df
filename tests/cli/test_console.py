"""What the README's tiny commands print: what the run is, one line per epoch, one end line, numbers rounded; no
third-party warning, advert or log line, no error said twice; ``verbose=true`` brings every message back.

Run as typed from an empty folder (tests/helpers/user.py); stdout is no terminal, so no progress bar is drawn.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.helpers.user import explain, run_args

PYTHON = ["python", "-m", "darnet_pl"]
# what the repository's stop hook refuses in the console, and what else no quiet run may print
# (Lightning prints its own warnings as "<file>.py:<line>: <message>", with no "Warning" in the line)
NOISE = re.compile(
    r"alembic|litlogger|Tip:|FLOPs|LeafSpec|Warning|HYDRA_FULL_ERROR|\[HYDRA\]|Traceback|\]\[INFO\]|\.py:\d+: "
)
NUMBER = r"(\d\.\d{3}|n/a)"
EPOCH = re.compile(rf"^epoch 1/1  train loss {NUMBER}  val loss {NUMBER}  val AUC {NUMBER}  \d+ s  best$")
DONE = re.compile(
    rf"^done: (?P<folder>\S+) \| selected checkpoints/epoch000\.ckpt \(val/loss {NUMBER}\) \| test AUC {NUMBER}$"
)


def header(fold: int, job: int | None = None) -> re.Pattern[str]:
    prefix = "" if job is None else f"job {job}: "
    return re.compile(
        rf"^{prefix}smoke dual debug=tiny, fold {fold} \| data synthetic 16x32x32, batch 4 \| "
        r"1 cpu, (32-true|bf16-mixed) \| [\d,]+ parameters$"
    )


def assert_quiet(result) -> None:
    noisy = [line for line in (result.stdout + result.stderr).splitlines() if NOISE.search(line)]
    assert not noisy, explain(result)


@pytest.mark.slow
def test_a_tiny_run_prints_three_lines(cwd: Path) -> None:
    result = run_args([*PYTHON, "+experiment=smoke", "debug=tiny"], cwd)
    assert result.returncode == 0, explain(result)
    assert result.stderr == "", explain(result)
    lines = result.stdout.splitlines()
    assert len(lines) == 3, explain(result)
    assert header(0).match(lines[0]) and EPOCH.match(lines[1]), explain(result)
    done = DONE.match(lines[2])
    assert done, explain(result)
    run = cwd / done["folder"]
    assert (run / "test_metrics.json").is_file() and run.parent == cwd / "outputs" / "smoke" / "runs"
    # the run's log file keeps what the console leaves out; the noise is stopped at its source
    log = (run / "smoke.log").read_text()
    assert "precision=auto" in log and "fold 0 split" in log and "Seed set to 42" in log
    assert "alembic" not in log and "litlogger" not in log
    assert_quiet(result)


@pytest.mark.slow
def test_a_tiny_sweep_prints_each_job_and_the_report(tiny_sweep) -> None:
    result = tiny_sweep.result  # python -m darnet_pl +experiment=smoke debug=tiny fold=0..1 -m, as typed
    assert result.args == [*PYTHON, "+experiment=smoke", "debug=tiny", "fold=0..1", "-m"]
    assert result.returncode == 0, explain(result)
    assert result.stderr == "", explain(result)
    lines = result.stdout.splitlines()
    for job in range(2):
        head, epoch, done = lines[3 * job : 3 * job + 3]
        assert header(job, job).match(head) and EPOCH.match(epoch), explain(result)
        match = DONE.match(done)
        assert match and match["folder"] == f"outputs/smoke/sweep/dual/debug=tiny/fold{job}", explain(result)
    assert lines[6].startswith("darnet-report: 2 finished jobs"), explain(result)
    assert len(lines) < 40, explain(result)
    assert_quiet(result)


@pytest.mark.slow
def test_a_sweep_run_again_after_a_kill_says_what_it_resumes_and_nothing_else(tiny_sweep, tmp_path: Path) -> None:
    """fold 1 as a kill -9 during its testing leaves it (last.ckpt, no test results): the rerun skips fold 0, says
    it resumes fold 1, finishes it, and prints nothing else of note. (A resume mid-training, where Lightning would
    warn about the non-empty checkpoints folder, is tests/training/test_resume.py's SIGTERM case.)"""
    home = tmp_path / "home"  # a copy: the job folders have moved, as a sweep rsynced off a cluster has
    shutil.copytree(tiny_sweep.home, home)
    fold1 = Path("outputs", "smoke", "sweep", "dual", "debug=tiny", "fold1")
    (home / fold1 / "test_metrics.json").unlink()
    result = run_args(list(tiny_sweep.result.args), home)
    assert result.returncode == 0, explain(result)
    printed = result.stdout + result.stderr
    assert "fold0/test_metrics.json exists: this job already finished (redo=true runs it again)" in printed
    assert "resuming the interrupted job from " in printed and "fold1/checkpoints/last.ckpt" in printed
    # the moved job tests its own best checkpoint, with the validation score it was selected by
    done = [match for line in result.stdout.splitlines() if (match := DONE.match(line))]
    assert [m["folder"] for m in done] == [str(fold1)] and "n/a" not in done[0][0], explain(result)
    tested = json.loads((home / fold1 / "test_metrics.json").read_text())
    first = json.loads((tiny_sweep.home / fold1 / "test_metrics.json").read_text())
    assert tested == pytest.approx(first, abs=1e-6)
    assert_quiet(result)


@pytest.mark.slow
def test_verbose_brings_every_message_back(cwd: Path) -> None:
    result = run_args([*PYTHON, "+experiment=smoke", "debug=fdr", "verbose=true"], cwd)
    assert result.returncode == 0, explain(result)
    text = result.stdout + result.stderr
    for message in ("][INFO] - ", "Seed set to 42", "precision=auto", "Total params", "Test metric"):
        assert message in text, message


def test_a_user_error_is_printed_once(cwd: Path) -> None:
    (cwd / "scans.csv").write_text("path,label\nscan.nii.gz,NCP\n")  # no patient_id column: found while running
    args = ["experiment=smoke", "debug=fdr", "data=folder", "data.scan_list=scans.csv"]
    result = run_args([*PYTHON, *args], cwd, timeout=300)
    assert result.returncode == 2, explain(result)
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: "), explain(result)
    message = result.stderr.strip().removeprefix("error: ")
    assert "scans.csv" in message and message not in result.stdout, explain(result)
    assert sorted(p.name for p in cwd.iterdir()) == ["scans.csv"], "the stopped run left its folder behind"
    assert_quiet(result)

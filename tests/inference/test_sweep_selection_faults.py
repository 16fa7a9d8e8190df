"""Which models a sweep folder hands over, through the real tools (subprocesses in an empty folder): finished jobs of
one experiment only, the others left out with why, and a folder of several experiments refused in one line.

Sweeps are fabricated: job folders as training leaves them (``config_resolved.yaml``, ``.hydra/overrides.yaml``) of
two ablation variants and a learning-rate override, each holding a copy of the tiny checkpoint, in every state a
job can be in (tests.helpers.report_jobs.write_trained_job; a running job is one whose lock this test holds).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from darnet_pl.runs.job_guard import job_lock
from tests.helpers.checkpoints import phantom_volumes, write_nifti, write_scan_list
from tests.helpers.faults import every_file, only_line, run_tool
from tests.helpers.report_jobs import cohort, model_probs, write_job, write_trained_job
from tests.helpers.user import explain

PREDICT, EVALUATE, EXPORT, REPORT = (f"darnet_pl.cli.{tool}" for tool in ("predict", "evaluate", "export", "report"))
LR = "model.optimizer.lr=0.0001"
INTERRUPTED = "interrupted (last.ckpt and no test_metrics.json: running its sweep again finishes it)"
FAILED = "failed (failed.json: data.size=[8,8,8]: the model input is too small)"


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("selection-scans")
    rows = []
    for i, (label, volume) in enumerate(phantom_volumes(1)):
        write_nifti(folder / f"s{i}.nii.gz", volume)
        rows.append({"path": f"s{i}.nii.gz", "label": label})
    return {"scan": folder / "s0.nii.gz", "list": write_scan_list(folder / "labelled.csv", rows)}


@pytest.fixture(scope="module")
def ablation(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``+experiment=smoke_ablation`` over two variants and, for dual, a learning rate: three experiments.

    ca: fold0 finished, fold1 interrupted; dual: folds 0, 1 finished, fold 2 failed; dual at lr 1e-4: fold0 finished.
    """
    root = tmp_path_factory.mktemp("ablation") / "sweep"
    write_trained_job(root / "ca" / "fold0", "ca", 0, tiny_checkpoint)
    write_trained_job(root / "ca" / "fold1", "ca", 1, tiny_checkpoint, state="interrupted")
    for fold in (0, 1):
        write_trained_job(root / "dual" / f"fold{fold}", "dual", fold, tiny_checkpoint)
    write_trained_job(root / "dual" / "fold2", "dual", 2, tiny_checkpoint, state="failed")
    write_trained_job(root / "dual" / LR / "fold0", "dual", 0, tiny_checkpoint, extra=[LR])
    return root


def notes(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("note: ")]


# ------------------------------------------------------------------------------ several experiments: refused


MIXED = (
    "holds 3 experiments (smoke_ablation/ca (1 job), smoke_ablation/dual (2 jobs), smoke_ablation/dual/{lr} (1 job)); "
)


@pytest.mark.parametrize("tool", [PREDICT, EVALUATE], ids=["predict", "evaluate"])
def test_an_ablation_sweep_is_not_averaged_into_one_ensemble(ablation, scans, tool, tmp_path, cwd):
    out = tmp_path / "out"
    args = [scans["scan"]] if tool == PREDICT else ["--scans", scans["list"], "--bootstrap", "0"]
    result = run_tool(tool, "--ckpt", ablation, "--out", out, *args, cwd=cwd)
    assert result.returncode == 2, explain(result)
    assert only_line(result.stderr) == (
        f"error: {ablation}: " + MIXED.format(lr=LR) + "an ensemble averages the folds of one experiment: pick one "
        f"with --experiment smoke_ablation/ca (or give its folder, --ckpt {ablation / 'ca'}), or pass --per-experiment "
        "for one ensemble each"
    )
    assert not out.exists() and every_file(cwd) == []


def test_a_variant_folder_holding_another_experiment_is_refused_without_a_folder_hint(ablation, scans, tmp_path, cwd):
    """The lr experiment's jobs sit inside dual/: that folder is no answer for dual's own experiment."""
    result = run_tool(PREDICT, "--ckpt", ablation / "dual", "--out", tmp_path / "out", scans["scan"], cwd=cwd)
    assert result.returncode == 2
    assert only_line(result.stderr) == (
        f"error: {ablation / 'dual'}: holds 2 experiments (smoke_ablation/dual (2 jobs), smoke_ablation/dual/{LR} "
        "(1 job)); an ensemble averages the folds of one experiment: pick one with --experiment smoke_ablation/dual, "
        "or pass --per-experiment for one ensemble each"
    )


def test_export_of_a_sweep_is_refused_the_same_way(ablation, tmp_path, cwd):
    out = tmp_path / "out"
    result = run_tool(EXPORT, "--ckpt", ablation, "--format", "torchscript", "--out", out, cwd=cwd)
    assert result.returncode == 2
    assert only_line(result.stderr) == (
        f"error: {ablation}: " + MIXED.format(lr=LR) + "an export is one model: give one job's folder or checkpoint "
        f"(e.g. --ckpt {ablation / 'ca' / 'fold0'})"
    )
    assert not out.exists()


def test_an_unknown_experiment_key_lists_the_keys(ablation, scans, tmp_path, cwd):
    result = run_tool(PREDICT, "--ckpt", ablation, "--experiment", "dual", "--out", tmp_path / "o", scans["scan"],
                      cwd=cwd)  # fmt: skip
    assert result.returncode == 2
    assert only_line(result.stderr) == (
        "error: --experiment dual: no such experiment here (there are: smoke_ablation/ca, smoke_ablation/dual, "
        f"smoke_ablation/dual/{LR})"
    )


# --------------------------------------------------------------------- one experiment: chosen, or each of them


def test_experiment_picks_one_and_the_outputs_say_which_jobs(ablation, scans, tmp_path, cwd):
    out = tmp_path / "out"
    result = run_tool(PREDICT, "--ckpt", ablation, "--experiment", "smoke_ablation/dual", "--out", out, scans["scan"],
                      cwd=cwd)  # fmt: skip
    assert result.returncode == 0, explain(result)
    assert notes(result.stderr) == [f"note: left out {ablation / 'dual' / 'fold2'}: {FAILED}"]
    assert result.stdout.splitlines()[-1] == (
        "models: smoke_ablation/dual: 2 model(s): 2 finished job(s); 1 job(s) left out (see the notes)"
    )
    saved = json.loads((out / "predictions.json").read_text())
    assert saved["experiment"] == "smoke_ablation/dual"
    assert [(j["job"], j["used"]) for j in saved["jobs"]] == [
        (str(ablation / "dual" / f"fold{k}"), "finished") for k in (0, 1)
    ]
    assert saved["left_out"] == [{"job": str(ablation / "dual" / "fold2"), "status": "failed", "reason": FAILED,
                                  "experiment": "smoke_ablation/dual"}]  # fmt: skip
    assert [c["path"] for c in saved["checkpoints"]] == [j["checkpoint"] for j in saved["jobs"]]


def test_per_experiment_writes_one_ensemble_per_experiment_side_by_side(ablation, scans, tmp_path, cwd):
    out = tmp_path / "out"
    result = run_tool(PREDICT, "--ckpt", ablation, "--per-experiment", "--out", out, scans["scan"], cwd=cwd)
    assert result.returncode == 0, explain(result)
    folders = ["smoke_ablation__ca", "smoke_ablation__dual", f"smoke_ablation__dual__{LR}"]
    assert sorted(p.name for p in out.iterdir()) == folders
    used = {f: json.loads((out / f / "predictions.json").read_text()) for f in folders}
    assert {f: (u["experiment"], len(u["jobs"])) for f, u in used.items()} == {
        "smoke_ablation__ca": ("smoke_ablation/ca", 1),
        "smoke_ablation__dual": ("smoke_ablation/dual", 2),
        f"smoke_ablation__dual__{LR}": (f"smoke_ablation/dual/{LR}", 1),
    }
    assert sorted(notes(result.stderr)) == sorted(
        [
            f"note: left out {ablation / 'ca' / 'fold1'}: {INTERRUPTED}",
            f"note: left out {ablation / 'dual' / 'fold2'}: {FAILED}",
        ]
    )


def test_evaluate_per_experiment_scores_each_experiment(ablation, scans, tmp_path, cwd):
    out = tmp_path / "out"
    result = run_tool(EVALUATE, "--ckpt", ablation / "ca", "--ckpt", ablation / "dual" / LR, "--per-experiment",
                      "--scans", scans["list"], "--out", out, "--bootstrap", "0", cwd=cwd)  # fmt: skip
    assert result.returncode == 0, explain(result)
    summaries = {p.name: json.loads((p / "summary.json").read_text()) for p in out.iterdir()}
    assert {name: (s["experiment"], s["ensemble"]) for name, s in summaries.items()} == {
        "smoke_ablation__ca": ("smoke_ablation/ca", "single model"),
        f"smoke_ablation__dual__{LR}": (f"smoke_ablation/dual/{LR}", "single model"),
    }
    assert summaries["smoke_ablation__ca"]["left_out"][0]["status"] == "interrupted"


# ------------------------------------------------------------------- finished jobs only, unless asked otherwise


def test_a_running_job_is_left_out_and_said_so(tiny_checkpoint, scans, tmp_path, cwd):
    sweep = tmp_path / "sweep"
    done = write_trained_job(sweep / "dual" / "fold0", "dual", 0, tiny_checkpoint)
    busy = write_trained_job(sweep / "dual" / "fold1", "dual", 1, tiny_checkpoint)  # finished before, redo running
    out = tmp_path / "out"
    with job_lock(busy):
        result = run_tool(PREDICT, "--ckpt", sweep, "--out", out, scans["scan"], cwd=cwd)
    assert result.returncode == 0, explain(result)
    reason = f"still running (.job.lock held by process {os.getpid()})"
    assert notes(result.stderr) == [f"note: left out {busy}: {reason}"]
    saved = json.loads((out / "predictions.json").read_text())
    assert [j["job"] for j in saved["jobs"]] == [str(done)]
    assert saved["left_out"] == [{"job": str(busy), "status": "running", "reason": reason,
                                  "experiment": "smoke_ablation/dual"}]  # fmt: skip


def test_an_interrupted_run_folder_is_refused_unless_best_so_far(ablation, scans, tmp_path, cwd):
    job = ablation / "ca" / "fold1"
    result = run_tool(PREDICT, "--ckpt", job, "--out", tmp_path / "out", scans["scan"], cwd=cwd)
    assert result.returncode == 2
    assert only_line(result.stderr) == (
        f"error: {job}: no finished job to use ({job}: {INTERRUPTED}); --best-so-far takes the best checkpoint an "
        "unfinished job has so far"
    )
    assert not (tmp_path / "out").exists()
    result = run_tool(PREDICT, "--ckpt", job, "--best-so-far", "--out", tmp_path / "out", scans["scan"], cwd=cwd)
    assert result.returncode == 0, explain(result)
    assert result.stdout.splitlines()[-1] == "models: smoke_ablation/ca: 1 model(s): 1 unfinished job(s), best so far"
    (used,) = json.loads((tmp_path / "out" / "predictions.json").read_text())["jobs"]
    assert used["used"] == f"best so far ({INTERRUPTED})"
    assert used["checkpoint"] == str(job / "checkpoints" / "epoch001.ckpt")  # never last.ckpt


def test_export_takes_a_finished_run_folder_and_records_the_job(ablation, tmp_path, cwd):
    job = ablation / "dual" / LR / "fold0"
    result = run_tool(EXPORT, "--ckpt", job, "--format", "torchscript", "--out", tmp_path / "e", cwd=cwd)
    assert result.returncode == 0, explain(result)
    sidecar = json.loads((tmp_path / "e" / "epoch001.json").read_text())
    assert sidecar["experiment"] == f"smoke_ablation/dual/{LR}" and sidecar["jobs"][0]["job"] == str(job)


def test_export_of_several_folds_is_one_line(ablation, tmp_path, cwd):
    out = tmp_path / "e"
    result = run_tool(EXPORT, "--ckpt", ablation / "ca", "--best-so-far", "--format", "torchscript", "--out", out,
                      cwd=cwd)  # fmt: skip
    assert result.returncode == 2
    jobs = [ablation / "ca" / "fold0", ablation / "ca" / "fold1"]
    assert only_line(result.stderr) == (
        f"error: {ablation / 'ca'}: holds 2 jobs of smoke_ablation/ca ({jobs[0]}, {jobs[1]}); an export is one model: "
        f"give one job's folder or checkpoint (e.g. --ckpt {jobs[0]})"
    )
    assert not out.exists()


def test_a_device_given_as_checkpoint_is_not_a_regular_file(scans, tmp_path, cwd):
    fifo = tmp_path / "model.ckpt"
    os.mkfifo(fifo)
    result = run_tool(PREDICT, "--ckpt", fifo, "--out", tmp_path / "o", scans["scan"], cwd=cwd)
    assert result.returncode == 2
    assert only_line(result.stderr) == f"error: {fifo}: not a regular file (a FIFO), not a checkpoint"


# --------------------------------------------------------------------------------------------- the report


def test_the_report_uses_finished_jobs_and_says_why_it_left_the_others_out(tmp_path, cwd):
    sweep = tmp_path / "sweep"
    scans = cohort(4, seed=0)
    for fold in range(2):
        write_job(sweep / "dual" / f"fold{fold}", "dual", fold, model_probs(scans, seed=fold), scans, seed=fold)
    redo = sweep / "dual" / "fold2"  # finished once; a redo=true run of it is training now
    write_job(redo, "dual", 2, model_probs(scans, seed=2), scans, seed=2)
    failed = sweep / "dual" / "fold3"  # finished once; its last attempt failed
    write_job(failed, "dual", 3, model_probs(scans, seed=3), scans, seed=3)
    (failed / "failed.json").write_text(json.dumps({"error": "out of disk space", "traceback": None}))
    stopped = sweep / "dual" / "fold4"
    write_job(stopped, "dual", 4, None, scans)
    (stopped / "checkpoints").mkdir()
    (stopped / "checkpoints" / "last.ckpt").write_bytes(b"")
    with job_lock(redo):
        result = run_tool(REPORT, sweep, "--bootstrap", "0", "--no-plots", cwd=cwd)
    assert result.returncode == 0, explain(result)
    missing = [line for line in result.stdout.splitlines() if line.startswith("missing: ")]
    assert missing == [
        f"missing: dual fold 2: {redo}: still running (.job.lock held by process {os.getpid()})",
        f"missing: dual fold 3: {failed}: failed (failed.json: out of disk space)",
        f"missing: dual fold 4: {stopped}: {INTERRUPTED}",
        "missing: dual: 2 of 5 folds finished",
    ]
    report = json.loads((sweep / "report" / "report.json").read_text())
    assert [(j["fold"], j["status"], j["finished"]) for j in report["jobs"]] == [
        (0, "finished", True), (1, "finished", True), (2, "running", False), (3, "failed", False),
        (4, "interrupted", False),
    ]  # fmt: skip
    assert report["groups"][0]["n_folds"] == 2


def test_a_report_of_no_finished_job_gives_each_jobs_state(tmp_path, cwd):
    sweep = tmp_path / "sweep"
    write_job(sweep / "dual" / "fold0", "dual", 0, None, [])
    (sweep / "dual" / "fold0" / "failed.json").write_text(json.dumps({"error": "fold=7 is out of range"}))
    result = run_tool(REPORT, sweep, cwd=cwd)
    assert result.returncode == 2
    assert only_line(result.stderr) == (
        f"error: {sweep}: no finished run or sweep job found (1 job folder(s), none finished: "
        f"{sweep / 'dual' / 'fold0'}: failed (failed.json: fold=7 is out of range))"
    )
    assert not (sweep / "report").exists()

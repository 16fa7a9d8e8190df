"""``darnet-predict`` under bad input and faults, run as a user runs it (a subprocess in an empty folder): one line
``error: <file or option>: <problem>``, exit 2, and nothing half-written; Ctrl-C keeps the finished scans."""

from __future__ import annotations

import csv
import json
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from darnet_pl.utils.io import output_folder
from tests.helpers.checkpoints import SIZE, to_uint8, write_nifti
from tests.helpers.faults import every_file, hidden, only_line, run_tool, tmpfs

PREDICT = "darnet_pl.cli.predict"


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Tiny phantom NIfTI scans at the checkpoint's input size."""
    from darnet_pl.data.phantoms import render_scan, synthetic_cohort

    folder = tmp_path_factory.mktemp("fault-scans")
    cohort = synthetic_cohort(1, (1, 1), seed=0)
    volumes = [to_uint8(render_scan(cohort[i], SIZE)[0]) for i in range(3)]
    # enough scans that a stop signal sent after the first saved batch lands mid-run even on a busy machine running
    # tests in parallel (the signal is sent within 20 ms of the first batch; the scans left take seconds with --cam)
    return [write_nifti(folder / f"scan{i:02d}.nii.gz", volumes[i % 3]) for i in range(16)]


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# ------------------------------------------------------------------------------------- output folders


def test_read_only_output_folder_is_one_line_and_creates_nothing(tiny_checkpoint, scans, tmp_path, cwd):
    with tmpfs(tmp_path / "ro", read_only=True) as ro:
        new = run_tool(PREDICT, "--ckpt", tiny_checkpoint, "--out", ro / "new", scans[0], cwd=cwd)
        assert new.returncode == 2
        assert (
            only_line(new.stderr)
            == f"error: {ro / 'new'}: cannot write into this output folder (Read-only file system)"
        )
        existing = run_tool(PREDICT, "--ckpt", tiny_checkpoint, "--cam", "--out", ro, scans[0], cwd=cwd)
        assert existing.returncode == 2
        assert (
            only_line(existing.stderr) == f"error: {ro}: cannot write into this output folder (Read-only file system)"
        )
        assert every_file(ro) == []
    assert every_file(cwd) == []


def test_full_disk_while_writing_cam_maps_names_the_file_and_leaves_nothing(tiny_checkpoint, scans, tmp_path, cwd):
    with tmpfs(tmp_path / "full", size="200k") as full:
        result = run_tool(PREDICT, "--ckpt", tiny_checkpoint, "--cam", "--out", full / "p", *scans[:3], cwd=cwd)
        assert result.returncode == 2
        line = only_line(result.stderr)
        pattern = rf"error: {re.escape(str(full / 'p' / 'cam' / 'scan00'))}/[a-z_]+\.(png|nii\.gz|csv): "
        assert re.fullmatch(pattern + r"cannot write the CAM output \(No space left on device\)", line), line
        assert every_file(full) == []  # no half-written maps, no temporary files, not even the empty --out folder


def test_full_disk_while_saving_predictions_keeps_complete_files_and_says_how_to_continue(
    tiny_checkpoint, scans, tmp_path, cwd
):
    with tmpfs(tmp_path / "full", size="8k") as full:  # room for predictions.json and then nothing more
        out = full / "p"
        result = run_tool(PREDICT, "--ckpt", tiny_checkpoint, "--out", out, *scans[:2], cwd=cwd)
        assert result.returncode == 2
        line = only_line(result.stderr)
        written = rf"error: {re.escape(str(out))}/(predictions|errors)\.csv: cannot write the predictions "
        assert re.match(written + r"\(No space left on device\); the scans saved before are kept, ", line), line
        command = f"darnet-predict --ckpt {tiny_checkpoint} --out {out} {scans[0]} {scans[1]} --resume"
        assert line.endswith(f"to continue: {command}")
        assert hidden(full) == [] and "predictions.json" in every_file(out)
        assert len(json.loads((out / "predictions.json").read_text())["scans"]) == 2  # complete, not torn


def test_a_second_predict_into_the_same_folder_is_refused(tiny_checkpoint, scans, tmp_path, cwd):
    out = tmp_path / "busy"
    with output_folder(out, "darnet-predict"):  # what a first darnet-predict holds while it runs
        result = run_tool(PREDICT, "--ckpt", tiny_checkpoint, "--out", out, scans[0], cwd=cwd)
    assert result.returncode == 2
    assert only_line(result.stderr) == (
        f"error: {out}: another darnet-predict is writing into this folder right now; wait for it to finish"
    )
    assert every_file(out) == []


# ------------------------------------------------------------------------------------------- Ctrl-C


def _sigint_as_in_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_and_stop(tiny_checkpoint: Path, scans: list[Path], out: Path, cwd: Path, signum: int):
    """Start a run with CAM maps (about a second a scan), send ``signum`` as soon as the first batch is saved."""
    args = ["--ckpt", str(tiny_checkpoint), "--cam", "--batch-size", "1", "--out", str(out), *map(str, scans)]
    # as from a terminal: a test run started in the background (CI, `make test &`) inherits SIGINT ignored, and
    # Python then keeps ignoring it, so the child gets the default disposition back before it starts
    process = subprocess.Popen([sys.executable, "-m", PREDICT, *args], cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=_sigint_as_in_a_terminal)  # fmt: skip
    deadline = time.monotonic() + 120
    while not (out / "predictions.csv").is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    return process.returncode, stdout, stderr


def test_ctrl_c_keeps_the_finished_scans_and_resume_predicts_only_the_rest(tiny_checkpoint, scans, tmp_path, cwd):
    out = tmp_path / "run"
    code, stdout, stderr = start_and_stop(tiny_checkpoint, scans, out, cwd, signal.SIGINT)
    assert code == 130 and stdout == "", f"exit {code}\n--- stdout\n{stdout[-2000:]}\n--- stderr\n{stderr[-3000:]}"
    line = only_line(stderr)
    kept = rows(out / "predictions.csv")
    assert 1 <= len(kept) < len(scans), "the run was stopped part-way"
    assert line.startswith(f"stopped by Ctrl-C: {len(kept)} scan(s) done and kept in {out / 'predictions.csv'}; ")
    command = line.split("run: ", 1)[1]
    assert command == shlex.join(["darnet-predict", "--ckpt", str(tiny_checkpoint), "--cam", "--batch-size", "1",
                                  "--out", str(out), *map(str, scans), "--resume"])  # fmt: skip
    names = [row["scan"] for row in kept]
    assert names == [s.name.removesuffix(".nii.gz") for s in scans[: len(kept)]]
    assert sorted(p.name for p in (out / "cam").iterdir()) == names  # no folder of the interrupted batch
    assert [s["scan"] for s in json.loads((out / "predictions.json").read_text())["scans"]] == names
    assert hidden(out) == []
    montages = {name: (out / "cam" / name / "montage.png").stat().st_mtime_ns for name in names}

    argv = shlex.split(command)[1:]  # the printed command, run through the module as a console script would be
    resumed = run_tool(PREDICT, *argv, cwd=cwd)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(scans)} of {len(scans)} scan(s) predicted ({len(kept)} kept from the earlier run)" in resumed.stdout
    final = rows(out / "predictions.csv")
    assert [r["scan"] for r in final] == [s.name.removesuffix(".nii.gz") for s in scans]
    assert final[: len(kept)] == kept  # the earlier predictions, untouched
    assert {n: (out / "cam" / n / "montage.png").stat().st_mtime_ns for n in names} == montages  # not redone
    assert len(list((out / "cam").iterdir())) == len(scans) and hidden(out) == []


def test_sigterm_keeps_the_finished_scans_with_exit_143(tiny_checkpoint, scans, tmp_path, cwd):
    out = tmp_path / "run"
    code, stdout, stderr = start_and_stop(tiny_checkpoint, scans, out, cwd, signal.SIGTERM)
    assert code == 143, f"exit {code}\n--- stdout\n{stdout[-2000:]}\n--- stderr\n{stderr[-3000:]}"
    kept = rows(out / "predictions.csv")
    assert 1 <= len(kept) < len(scans)
    assert only_line(stderr).startswith(f"stopped by SIGTERM: {len(kept)} scan(s) done and kept in ")
    assert sorted(p.name for p in (out / "cam").iterdir()) == [r["scan"] for r in kept] and hidden(out) == []


def test_resume_refuses_other_settings(tiny_checkpoint, scans, tmp_path, cwd):
    out = tmp_path / "run"
    assert run_tool(PREDICT, "--ckpt", tiny_checkpoint, "--out", out, scans[0], cwd=cwd).returncode == 0
    before = {name: (out / name).read_bytes() for name in every_file(out)}
    result = run_tool(PREDICT, "--ckpt", tiny_checkpoint, "--cam", "--resume", "--out", out, *scans[:2], cwd=cwd)
    assert result.returncode == 2
    assert only_line(result.stderr) == (
        f"error: {out / 'predictions.json'}: predicted with no --cam, now with --cam --cam-method cam; "
        "resume with the same CAM options"
    )
    assert {name: (out / name).read_bytes() for name in every_file(out)} == before


# ------------------------------------------------------------------------------------ scan lists, checkpoints


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"path\n\xff\xfescan.nii.gz\n", ": not UTF-8 text (byte 0xff cannot be decoded); save it as UTF-8"),
        (b"path,scan_id\n", ": lists no scans (a header and no rows)"),
        (b"path\nscan.nii.gz\x00\n", ", line 2: the path holds a NUL byte"),
        (b"file\nscan.nii.gz\n", ": no 'path' column (columns: file)"),
    ],
    ids=["latin-1", "header-only", "nul-byte", "no-path-column"],
)
def test_unusable_scan_lists_are_one_line_naming_the_file(tiny_checkpoint, tmp_path, cwd, content, problem):
    listing = tmp_path / "list.csv"
    listing.write_bytes(content)
    result = run_tool(PREDICT, "--ckpt", tiny_checkpoint, "--out", tmp_path / "out", listing, cwd=cwd)
    assert result.returncode == 2
    assert only_line(result.stderr) == f"error: {listing}{problem}"
    assert not (tmp_path / "out").exists() and every_file(cwd) == []


def test_a_checkpoint_of_random_bytes_is_one_line(scans, tmp_path, cwd):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(
        torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0)).byte().numpy().tobytes()
    )
    result = run_tool(PREDICT, "--ckpt", junk, "--out", tmp_path / "out", scans[0], cwd=cwd)
    assert result.returncode == 2
    assert only_line(result.stderr) == f"error: {junk}: not a PyTorch checkpoint (not a torch.save archive)"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("options", "line"),
    [
        (["--batch-size", "four"], "error: --batch-size: invalid int value: 'four' (see darnet-predict --help)"),
        (["--batch-size", "0"], "error: --batch-size must be positive, got 0"),
        (["--device", "tpu"], "error: --device: invalid choice: 'tpu' (choose from 'cpu', 'cuda') "
                              "(see darnet-predict --help)"),
        (["--resume", "--overwrite"], "error: --resume keeps what an earlier run predicted, --overwrite starts "
                                      "again: give one of them"),
        (["--cam-class", "Flu"], "error: --cam-class 'Flu' is not one of ['CP', 'NCP', 'Normal']"),
    ],
    ids=["batch-size-word", "batch-size-zero", "device-tpu", "resume-and-overwrite", "cam-class"],
)  # fmt: skip
def test_bad_options_are_one_line(tiny_checkpoint, scans, tmp_path, cwd, options, line):
    result = run_tool(PREDICT, "--ckpt", tiny_checkpoint, "--out", tmp_path / "out", *options, scans[0], cwd=cwd)
    assert result.returncode == 2
    assert only_line(result.stderr) == line
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda_is_one_line(tiny_checkpoint, scans, tmp_path, cwd):
    result = run_tool(
        PREDICT, "--ckpt", tiny_checkpoint, "--device", "cuda", "--out", tmp_path / "o", scans[0], cwd=cwd
    )
    assert result.returncode == 2
    assert only_line(result.stderr) == "error: --device cuda: CUDA is not available here (use --device cpu)"


def test_out_that_is_a_file_is_one_line(tiny_checkpoint, scans, tmp_path, cwd):
    target = tmp_path / "results.txt"
    target.write_text("mine")
    result = run_tool(PREDICT, "--ckpt", tiny_checkpoint, "--out", target, scans[0], cwd=cwd)
    assert result.returncode == 2
    assert only_line(result.stderr) == f"error: {target}: --out exists and is not a folder"
    assert target.read_text() == "mine"


def test_resume_refuses_an_earlier_run_whose_probabilities_were_edited(tiny_checkpoint, scans, tmp_path, cwd):
    out = tmp_path / "run"
    assert run_tool(PREDICT, "--ckpt", tiny_checkpoint, "--out", out, scans[0], cwd=cwd).returncode == 0
    saved = json.loads((out / "predictions.json").read_text())
    saved["scans"][0]["probabilities"]["CP"] += 0.5
    (out / "predictions.json").write_text(json.dumps(saved))
    result = run_tool(PREDICT, "--ckpt", tiny_checkpoint, "--resume", "--out", out, *scans[:2], cwd=cwd)
    assert result.returncode == 2
    total = sum(saved["scans"][0]["probabilities"].values())
    assert only_line(result.stderr) == (
        f"error: {out / 'predictions.json'}: a damaged scan entry (InvalidPredictions: scan 'scan00': the "
        f"probabilities sum to {total:.6g}, not 1)"
    )

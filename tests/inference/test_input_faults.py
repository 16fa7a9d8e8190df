"""Inputs that are not what they claim, through the real tools (subprocesses in an empty folder): devices and FIFOs
where a scan, a slice or a list should be, scans far smaller than the model's input, scan lists with duplicate or
spreadsheet-formula ids - a precise message each, never "not found", a hang or a normal-looking prediction - and
CSV outputs that a spreadsheet shows as text and the package reads back unchanged."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from darnet_pl.inference.predict import read_scan_csv
from darnet_pl.utils.csv_cells import FORMULA_STARTS, plain_cell, safe_cell
from tests.helpers.checkpoints import phantom_volumes, write_nifti, write_scan_list
from tests.helpers.faults import every_file, only_line, run_tool
from tests.helpers.forked import run_forked
from tests.helpers.user import explain

PREDICT, EVALUATE, PREPARE = "darnet_pl.cli.predict", "darnet_pl.cli.evaluate", "darnet_pl.cli.prepare"


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three phantom NIfTI scans (CP, NCP, Normal) at the checkpoint's input size."""
    folder = tmp_path_factory.mktemp("input-fault-scans")
    for i, (_, volume) in enumerate(phantom_volumes(1)):
        write_nifti(folder / f"s{i}.nii.gz", volume)
    return folder


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


# ------------------------------------------------------------------------------- not a regular file


def test_a_fifo_or_device_in_a_scan_list_is_not_a_regular_file(tiny_checkpoint, phantoms, tmp_path, cwd):
    fifo = tmp_path / "scan.nii.gz"
    os.mkfifo(fifo)
    device = tmp_path / "zero.nii.gz"
    device.symlink_to("/dev/zero")
    listing = write_scan_list(tmp_path / "list.csv", [{"path": p} for p in (str(phantoms / "s0.nii.gz"), fifo.name,
                                                                            device.name)])  # fmt: skip
    out = tmp_path / "out"
    result = run_tool(PREDICT, "--ckpt", tiny_checkpoint, "--out", out, listing, cwd=cwd, timeout=120)
    assert result.returncode == 3, explain(result)
    assert errors(result.stderr) == [
        f"error: {fifo}: not a regular file (a FIFO)",
        f"error: {device}: not a regular file (a character device)",
    ]
    assert [(r["scan"], r["error"]) for r in rows(out / "errors.csv")] == [
        ("scan", "not a regular file (a FIFO)"),
        ("zero", "not a regular file (a character device)"),
    ]
    assert [r["scan"] for r in rows(out / "predictions.csv")] == ["s0"]


def test_a_fifo_among_the_slices_of_a_folder_is_named_not_waited_for(tiny_checkpoint, tmp_path, cwd):
    folder = tmp_path / "patient1" / "scan1"
    folder.mkdir(parents=True)
    for k in range(1, 5):
        Image.fromarray(np.full((32, 32), 40 * k, np.uint8)).save(folder / f"{k}.png")
    os.mkfifo(folder / "5.png")
    result = run_tool(PREDICT, "--ckpt", tiny_checkpoint, "--out", tmp_path / "out", folder, cwd=cwd, timeout=120)
    assert result.returncode == 3, explain(result)
    assert errors(result.stderr) == [f"error: {folder}: 5.png is not a regular file (a FIFO)"]


def test_evaluate_given_a_fifo_as_its_list_says_so(tiny_checkpoint, tmp_path, cwd):
    fifo = tmp_path / "labels.csv"
    os.mkfifo(fifo)
    result = run_tool(EVALUATE, "--ckpt", tiny_checkpoint, "--scans", fifo, "--out", tmp_path / "out", cwd=cwd,
                      timeout=120)  # fmt: skip
    assert result.returncode == 2, explain(result)
    assert only_line(result.stderr) == f"error: {fifo}: --scans is not a regular file (a FIFO)"
    assert not (tmp_path / "out").exists()


def test_prepare_given_a_fifo_as_its_scan_list_says_so(tmp_path, cwd):
    fifo = tmp_path / "my_scans.csv"
    os.mkfifo(fifo)
    result = run_tool(PREPARE, "data=folder", f"data.scan_list={fifo}", "+dry_run=true", cwd=cwd, timeout=120)
    assert result.returncode == 2, explain(result)
    assert errors(result.stderr) == [f"error: {fifo}: not a regular file (a FIFO) (data.scan_list=<CSV>)"]


# ------------------------------------------------------------------------------- far smaller than the model


@pytest.mark.parametrize(
    ("shape", "line"),
    [
        ((16, 1, 1), "scan is 1x1 pixels, far smaller than the model's 32x32 input (slices of at least 2x2 are read)"),
        ((16, 1, 8), "scan is 8x1 pixels, far smaller than the model's 32x32 input (slices of at least 2x2 are read)"),
    ],
    ids=["one-pixel-slices", "one-pixel-row"],
)
def test_a_scan_far_smaller_than_the_model_is_named_with_its_size(tiny_checkpoint, shape, line, tmp_path, cwd):
    """(D, H, W) as stored on disk: the NIfTI axes are turned to the model's orientation before the size is told."""
    scan = tmp_path / "tiny.nii.gz"
    volume = np.random.default_rng(0).integers(0, 255, size=shape[::-1], dtype=np.uint8)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), scan)
    result = run_tool(PREDICT, "--ckpt", tiny_checkpoint, "--out", tmp_path / "out", scan, cwd=cwd)
    assert result.returncode == 3, explain(result)
    assert errors(result.stderr) == [f"error: {scan}: {line}"]
    assert rows(tmp_path / "out" / "predictions.csv") == []


def test_a_slice_folder_of_tiny_images_is_named_with_its_size(tiny_checkpoint, tmp_path, cwd):
    folder = tmp_path / "thumbs"
    folder.mkdir()
    for k in range(1, 17):
        Image.fromarray(np.full((1, 1), 10 * k, np.uint8)).save(folder / f"{k}.png")
    result = run_tool(PREDICT, "--ckpt", tiny_checkpoint, "--out", tmp_path / "out", folder, cwd=cwd)
    assert result.returncode == 3, explain(result)
    assert errors(result.stderr) == [
        f"error: {folder}: scan is 1x1 pixels, far smaller than the model's 32x32 input (slices of at least 2x2 are "
        "read)"
    ]


# ------------------------------------------------------------------------------- scan lists


@pytest.mark.parametrize(
    ("listed", "problem"),
    [
        ([{"path": "s0.nii.gz", "scan_id": "a"}, {"path": "s1.nii.gz", "scan_id": "a"}],
         ", line 3: scan_id 'a' is also on line 2: list each scan once"),
        ([{"path": "s0.nii.gz", "scan_id": ""}, {"path": "./s0.nii.gz", "scan_id": ""}],
         ", line 3: ./s0.nii.gz is also on line 2: list each scan once"),
    ],
    ids=["duplicate-scan-id", "duplicate-path"],
)  # fmt: skip
@pytest.mark.parametrize("tool", [PREDICT, EVALUATE], ids=["predict", "evaluate"])
def test_a_scan_listed_twice_is_one_line(tiny_checkpoint, phantoms, tool, listed, problem, tmp_path, cwd):
    listing = write_scan_list(phantoms / f"twice-{tmp_path.name}.csv", [{**r, "label": "CP"} for r in listed])
    out = tmp_path / "out"
    args = [listing] if tool == PREDICT else ["--scans", listing, "--bootstrap", "0"]
    result = run_tool(tool, "--ckpt", tiny_checkpoint, "--out", out, *args, cwd=cwd)
    assert result.returncode == 2, explain(result)
    assert only_line(result.stderr) == f"error: {listing}{problem}"
    assert not out.exists() and every_file(cwd) == []


FORMULAS = {
    "patient_id": ['=HYPERLINK("http://example.com/x","open")', "+1-1", "@SUM(A1:A2)"],
    "label": ["CP", "NCP", "Normal"],
    "scan_id": ["-2+3", "\t=1", "'=quoted"],
}


def test_formula_ids_are_noted_neutralised_in_every_csv_and_read_back_identically(
    tiny_checkpoint, phantoms, tmp_path, cwd
):
    listing = tmp_path / "list.csv"
    with listing.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "patient_id", "label", "scan_id"])
        for i in range(3):
            writer.writerow([str(phantoms / f"s{i}.nii.gz"), *(FORMULAS[c][i] for c in ("patient_id", "label",
                                                                                        "scan_id"))])  # fmt: skip
    out = tmp_path / "out"
    result = run_tool(EVALUATE, "--ckpt", tiny_checkpoint, "--scans", listing, "--out", out, "--bootstrap", "0",
                      cwd=cwd)  # fmt: skip
    assert result.returncode == 0, explain(result)
    assert [line for line in result.stderr.splitlines() if line.startswith("note: ")] == [
        f"note: {listing}, line 2: scan_id '-2+3' starts like a spreadsheet formula (and 5 more); the CSV outputs "
        "write such cells with a leading ' so that a spreadsheet shows them as text"
    ]
    for name in ("predictions.csv", "patient_predictions.csv", "errors.csv"):
        with (out / name).open(newline="", encoding="utf-8") as handle:
            cells = [cell for row in csv.reader(handle) for cell in row]
        assert not [c for c in cells if c.startswith(FORMULA_STARTS)], name  # a spreadsheet shows text, no formula
    back = read_scan_csv(out / "predictions.csv")  # the package's own reader of a list with a path column
    assert [s.patient_id for s in back] == FORMULAS["patient_id"]
    assert [s.label for s in back] == FORMULAS["label"]
    assert [plain_cell(r["patient_id"]) for r in rows(out / "patient_predictions.csv")] == FORMULAS["patient_id"]


@pytest.mark.parametrize(
    "text",
    ["=1+1", "+49 30 1234", "-x", "@me", "\tx", "\rx", "'", "''=x", "'=x", "-0.25", "+3", "-1e-05", "plain", "",
     "\uff1dcmd", "'abc"],
)  # fmt: skip
def test_the_cell_rule_is_undone_exactly(text):
    written = safe_cell(text)
    assert plain_cell(written) == text
    assert not str(written).startswith(FORMULA_STARTS) or text in ("-0.25", "+3", "-1e-05")


@pytest.mark.slow
def test_training_csvs_of_formula_ids_are_safe_and_read_back_identically(tmp_path):
    """Own scans whose patient ids start like formulas, trained tiny (``data=folder``): the split manifest, the
    cache's records and the test predictions neutralise them, and the package's readers give the ids back."""
    from darnet_pl.data.sources.cached import read_records
    from darnet_pl.data.splits import read_split_manifest
    from darnet_pl.runs.predictions import read_predictions
    from tests.helpers.datasets import chest_volume
    from tests.helpers.datasets import write_nifti as write_hu_nifti
    from tests.helpers.user import user_env

    starts = ("=", "+", "-", "@", "")
    ids, lines = [], ["path,label,patient_id"]
    for c, label in enumerate(("CP", "NCP", "Normal")):
        for j in range(7):
            patient = f"{starts[j % len(starts)]}{label}{j}"
            ids.append(patient)
            write_hu_nifti(tmp_path / "scans" / f"{label}{j}.nii.gz", chest_volume(10 * c + j))
            lines.append(f"scans/{label}{j}.nii.gz,{label},{patient}")
    listing = tmp_path / "my_scans.csv"
    listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run_forked("darnet_pl", "+experiment=darnet", "data=folder", f"data.scan_list={listing}", "debug=tiny",
                        "logger=none", cwd=tmp_path, timeout=600, env=user_env())  # fmt: skip
    assert result.returncode == 0, explain(result)
    (run,) = (tmp_path / "outputs" / "darnet" / "runs").iterdir()
    (records,) = (tmp_path / "data" / "cache").glob("scans-*/*/records.csv")
    for table in (run / "split_manifest.csv", run / "predictions.csv", records):
        with table.open(newline="", encoding="utf-8") as handle:
            cells = [cell for row in csv.reader(handle) for cell in row]
        assert not [c for c in cells if c.startswith(FORMULA_STARTS) and not c.lstrip("+-").replace(".", "").isdigit()]
    assert sorted({r.patient_id for r in read_split_manifest(run / "split_manifest.csv")[0]}) == sorted(ids)
    assert sorted(r.patient_id for r in read_records(records)) == sorted(ids)
    assert set(read_predictions(run / "predictions.csv").patient_ids.tolist()) <= set(ids)

"""``darnet-predict`` end to end: real Lightning checkpoints, scans written as NIfTI, DICOM and slice folders.

The checkpoints are made in-process by a Lightning Trainer (``fast_dev_run`` on the synthetic data module, then
``save_checkpoint``), so they hold what a training run stores, data-module hyper-parameters included; the slow
test also predicts from the run folder of a real ``python -m darnet_pl +experiment=smoke debug=tiny`` (a job of the
shared tiny sweep).
Synthetic volumes have no files, so the scans are rendered here at the training size and written out.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from darnet_pl.cli.predict import main
from darnet_pl.data.phantoms import render_scan, synthetic_cohort
from darnet_pl.data.phantoms.dicom import save_ct_slice
from darnet_pl.runs.checkpoints import load_for_inference
from tests.helpers.checkpoints import SIZE, make_checkpoint, to_uint8, write_nifti

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ckpts")
    return {
        "a": make_checkpoint(folder / "a.ckpt", seed=1),
        "b": make_checkpoint(folder / "b.ckpt", seed=2, attention="ca"),
        "small": make_checkpoint(folder / "small.ckpt", seed=3, size=(8, 32, 32)),
    }


def write_dicom(folder: Path, volume: np.ndarray) -> Path:
    """The volume as an axial CT series in Hounsfield units (lung window inverted), under shuffled file names."""
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True)
    depth = volume.shape[0]
    hu = volume.astype(np.float32) / 255.0 * 1500.0 - 1350.0
    series = generate_uid()
    order = np.random.default_rng(0).permutation(depth)
    for d in range(depth):
        # LPS: slice 0 is the most superior; columns to patient-left, rows to posterior
        save_ct_slice(folder / f"IM{order[d]:04d}", hu[d], [-100.0, -100.0, 5.0 * (depth - 1 - d)], series, 6.0)
    return folder


def write_slices(folder: Path, volume: np.ndarray) -> Path:
    folder.mkdir(parents=True)
    for d, plane in enumerate(volume):
        Image.fromarray(plane, mode="L").save(folder / f"{d + 1}.png")
    return folder


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> dict[str, object]:
    """One CP and one Normal phantom; the CP one in all three formats, both listed in a CSV."""
    folder = tmp_path_factory.mktemp("scans")
    cohort = synthetic_cohort(1, (1, 1), seed=0)
    cp = to_uint8(render_scan(cohort[0], SIZE)[0])
    normal = to_uint8(render_scan(cohort[2], SIZE)[0])
    paths = {
        "nifti": write_nifti(folder / "cp.nii.gz", cp),
        "dicom": write_dicom(folder / "dicom" / "cp_series", cp),
        "slices": write_slices(folder / "slices" / "cp_slices", cp),
        "normal": write_nifti(folder / "normal.nii.gz", normal),
    }
    listing = folder / "list.csv"
    listing.write_text("path,note\ncp.nii.gz,x\nnormal.nii.gz,y\n", encoding="utf-8")
    return {**paths, "csv": listing, "volume": cp, "normal_volume": normal}


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def probs(row: dict[str, str]) -> np.ndarray:
    return np.array([float(row[f"prob_{c}"]) for c in ("CP", "NCP", "Normal")])


def direct_probabilities(ckpt: Path, volume: np.ndarray) -> np.ndarray:
    model, _ = load_for_inference(ckpt)
    with torch.no_grad():
        x = torch.from_numpy(volume).float()[None, None] / 255.0
        return model(x).softmax(dim=1)[0].numpy()


# --------------------------------------------------------------------------------------------- tests


def test_three_formats_give_the_training_preprocessing(ckpts, scans, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["--ckpt", str(ckpts["a"]), "--out", str(out), str(scans["nifti"]), str(scans["dicom"]),
                 str(scans["slices"])])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    rows = read_rows(out / "predictions.csv")
    assert [r["scan"] for r in rows] == ["cp", "cp_series", "cp_slices"]
    expected = direct_probabilities(ckpts["a"], scans["volume"])
    for row in rows:
        assert np.allclose(probs(row), expected, atol=2e-3), row["scan"]  # DICOM: integer HU, 1 gray level
        assert row["predicted"] == ("CP", "NCP", "Normal")[int(np.argmax(probs(row)))]
    assert np.allclose(probs(rows[0]), expected, atol=1e-5)  # the NIfTI is exactly the model input
    report = json.loads((out / "predictions.json").read_text())
    assert report["preprocessing_origin"] == "synthetic" and report["preprocessing"]["border_crop"] == 0
    assert report["preprocessing"]["size"] == list(SIZE) and report["class_names"] == ["CP", "NCP", "Normal"]
    assert len(report["scans"]) == 3 and len(report["scans"][0]["per_model"]) == 1 and report["errors"] == []
    assert read_rows(out / "errors.csv") == []
    assert not list(out.glob(".*"))  # atomic writes leave no temporary files


def test_ensemble_is_the_mean_of_the_models(ckpts, scans, tmp_path):
    singles = []
    for name in ("a", "b"):
        assert main(["--ckpt", str(ckpts[name]), "--out", str(tmp_path / name), str(scans["csv"])]) == 0
        singles.append(np.stack([probs(r) for r in read_rows(tmp_path / name / "predictions.csv")]))
    out = tmp_path / "ensemble"
    assert main(["--ckpt", str(ckpts["a"]), "--ckpt", str(ckpts["b"]), "--out", str(out), "--batch-size", "1",
                 str(scans["csv"])]) == 0  # fmt: skip
    rows = read_rows(out / "predictions.csv")
    assert [r["scan"] for r in rows] == ["cp", "normal"]
    assert np.allclose(np.stack([probs(r) for r in rows]), (singles[0] + singles[1]) / 2, atol=2e-6)
    report = json.loads((out / "predictions.json").read_text())
    per_model = np.array([[list(m["probabilities"].values()) for m in s["per_model"]] for s in report["scans"]])
    assert per_model.shape == (2, 2, 3)
    assert np.allclose(per_model.mean(axis=1), [list(s["probabilities"].values()) for s in report["scans"]])
    assert [c["attention"] for c in report["checkpoints"]] == ["dual", "ca"]


def test_bad_scans_are_reported_and_the_others_predicted(ckpts, scans, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "damaged.nii.gz").write_bytes(b"not a nifti")
    nib.save(nib.Nifti1Image(np.zeros((32, 32), np.uint8), np.eye(4)), bad / "flat.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((16, 32, 32, 3), np.uint8), np.eye(4)), bad / "rgb.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((32, 32, 1), np.uint8), np.eye(4)), bad / "one_slice.nii.gz")
    (bad / "notes.txt").write_text("hello")
    inputs = [str(scans["nifti"]), *(str(bad / n) for n in ("damaged.nii.gz", "flat.nii.gz", "rgb.nii.gz",
              "one_slice.nii.gz", "notes.txt", "missing.nii.gz"))]  # fmt: skip
    out = tmp_path / "out"
    assert main(["--ckpt", str(ckpts["a"]), "--out", str(out), *inputs]) == 3
    err = capsys.readouterr().err
    errors = {r["scan"]: r["error"] for r in read_rows(out / "errors.csv")}
    assert set(errors) == {"damaged", "flat", "rgb", "one_slice", "notes.txt", "missing"}
    assert "unreadable NIfTI" in errors["damaged"]
    assert "not a 3D volume" in errors["flat"] and "not a 3D volume" in errors["rgb"]
    assert "single slice" in errors["one_slice"]
    assert "unsupported file type" in errors["notes.txt"] and "not found" in errors["missing"]
    error_lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 6 and all(str(bad) in line or "missing" in line for line in error_lines)
    assert [r["scan"] for r in read_rows(out / "predictions.csv")] == ["cp"]
    assert len(json.loads((out / "predictions.json").read_text())["errors"]) == 6


def test_user_errors_exit_2(ckpts, scans, tmp_path, capsys):
    nifti = str(scans["nifti"])

    def run(*args: str) -> tuple[int, str]:
        code = main(list(args))
        return code, capsys.readouterr().err.strip()

    code, err = run("--ckpt", str(ckpts["a"]), "--ckpt", str(ckpts["small"]), "--out", str(tmp_path / "o1"), nifti)
    assert code == 2 and "disagree on the input size" in err and len(err.splitlines()) == 1
    code, err = run("--ckpt", str(tmp_path / "none.ckpt"), "--out", str(tmp_path / "o2"), nifti)
    assert code == 2 and err == f"error: {tmp_path / 'none.ckpt'}: checkpoint not found"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hook": partial(os.system, "echo pwned")}, evil)
    code, err = run("--ckpt", str(evil), "--out", str(tmp_path / "o3"), nifti)
    assert code == 2 and "refused" in err and "pwned" not in err
    listing = tmp_path / "nopath.csv"
    listing.write_text("file\na.nii\n")
    code, err = run("--ckpt", str(ckpts["a"]), "--out", str(tmp_path / "o4"), str(listing))
    assert code == 2 and "no 'path' column" in err
    code, err = run("--ckpt", str(ckpts["a"]), "--cam-class", "Flu", "--out", str(tmp_path / "o5"), nifti)
    assert code == 2 and "--cam-class 'Flu'" in err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    code, err = run("--ckpt", str(ckpts["a"]), "--out", str(busy), nifti)
    assert code == 2 and "--overwrite" in err
    code, _ = run("--ckpt", str(ckpts["a"]), "--out", str(busy), "--overwrite", nifti)
    assert code == 0 and (busy / "keep.txt").read_text() == "mine" and (busy / "predictions.csv").is_file()


def test_cam_outputs(ckpts, scans, tmp_path):
    out = tmp_path / "out"
    code = main(["--ckpt", str(ckpts["a"]), "--cam", "--out", str(out), str(scans["nifti"]), str(scans["dicom"])])
    assert code == 0
    for name in ("cp", "cp_series"):
        folder = out / "cam" / name
        assert sorted(p.name for p in folder.iterdir()) == [
            "cam.nii.gz", "depth_attention.csv", "depth_attention.png", "montage.png", "volume.nii.gz",
        ]  # fmt: skip
        heat = nib.load(folder / "cam.nii.gz")
        assert heat.shape == SIZE and heat.get_fdata().min() >= 0.0 and heat.get_fdata().max() <= 1.0
        assert np.allclose(heat.affine, nib.load(folder / "volume.nii.gz").affine)
        with Image.open(folder / "montage.png") as image:
            assert image.format == "PNG"
        assert len(read_rows(folder / "depth_attention.csv")) == SIZE[0]
    # the NIfTI input's map reuses its affine (here the diagonal one it was written with)
    assert np.allclose(nib.load(out / "cam" / "cp" / "cam.nii.gz").affine, nib.load(scans["nifti"]).affine)
    report = json.loads((out / "predictions.json").read_text())
    assert report["cam_method"] == "cam" and report["scans"][0]["cam_dir"] == "cam/cp"
    gradcam = tmp_path / "gradcam"
    code = main(["--ckpt", str(ckpts["b"]), "--cam", "--cam-method", "gradcam", "--cam-class", "Normal",
                 "--out", str(gradcam), str(scans["nifti"])])  # fmt: skip
    assert code == 0
    assert not (gradcam / "cam" / "cp" / "depth_attention.png").exists()  # attention="ca" has no DA
    assert json.loads((gradcam / "predictions.json").read_text())["scans"][0]["cam_class"] == "Normal"


def test_run_and_sweep_folders_use_each_jobs_best_checkpoint(ckpts, scans, tmp_path):
    sweep = tmp_path / "sweep"
    for job, name in (("0", "a"), ("1", "b")):
        folder = sweep / job / "checkpoints"
        folder.mkdir(parents=True)
        shutil.copy(ckpts[name], folder / "epoch003.ckpt")
        shutil.copy(ckpts["small"], folder / "last.ckpt")  # would disagree if it were picked
        (folder.parent / "test_metrics.json").write_text("{}")  # a finished job: tested
    out = tmp_path / "one"
    assert main(["--ckpt", str(sweep / "0"), "--out", str(out), str(scans["nifti"])]) == 0
    (used,) = json.loads((out / "predictions.json").read_text())["checkpoints"]
    assert used["path"].endswith("0/checkpoints/epoch003.ckpt")
    out = tmp_path / "all"
    assert main(["--ckpt", str(sweep), "--out", str(out), str(scans["nifti"])]) == 0
    assert len(json.loads((out / "predictions.json").read_text())["checkpoints"]) == 2


@pytest.mark.slow
def test_predict_from_a_real_training_run(tiny_sweep, scans, tmp_path):
    """The whole path: python -m darnet_pl (the shared tiny sweep) -> a job's run folder -> darnet-predict --cam."""
    assert tiny_sweep.result.returncode == 0, tiny_sweep.result.stderr[-2000:]
    out = tmp_path / "pred"
    predict = subprocess.run(
        [sys.executable, "-m", "darnet_pl.cli.predict", "--ckpt", str(tiny_sweep.job(0)), "--cam",
         "--out", str(out),
         str(scans["nifti"]), str(scans["csv"])],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert predict.returncode == 0, predict.stderr[-2000:]
    assert len(read_rows(out / "predictions.csv")) == 3
    assert (out / "cam" / "cp" / "montage.png").is_file()
    (used,) = json.loads((out / "predictions.json").read_text())["checkpoints"]
    assert Path(used["path"]).parent == tiny_sweep.job(0) / "checkpoints"  # the run's own best checkpoint

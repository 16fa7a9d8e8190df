"""``darnet-predict --tta``, softmax temperatures and the ``patient_id`` column (issue "Beyond the peers")."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from darnet_pl.cli.predict import main
from darnet_pl.inference.outputs import render_outputs
from darnet_pl.inference.predict import (
    TTA_FLIPS,
    ScanInput,
    ScanResult,
    UsageError,
    load_ensemble,
    temperature_of,
)
from darnet_pl.runs.checkpoints import load_for_inference
from tests.helpers.checkpoints import phantom_volumes, write_nifti, write_scan_list

CLASSES = ("CP", "NCP", "Normal")


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Three phantoms (CP, NCP, Normal) as NIfTI, and a list giving them two patients."""
    folder = tmp_path_factory.mktemp("tta-scans")
    volumes = phantom_volumes(1)
    paths = [write_nifti(folder / f"{name.lower()}.nii.gz", volume) for name, volume in volumes]
    listing = write_scan_list(folder / "patients.csv", [
        {"path": "cp.nii.gz", "patient_id": "p1"},
        {"path": "ncp.nii.gz", "patient_id": "p2"},
        {"path": "normal.nii.gz", "patient_id": "p1"},
    ])  # fmt: skip
    return {"paths": paths, "volumes": [v for _, v in volumes], "patients": listing, "folder": folder}


def batch(volume: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(volume).float()[None, None] / 255.0


def json_probs(out: Path) -> np.ndarray:
    report = json.loads((out / "predictions.json").read_text())
    return np.array([[s["probabilities"][c] for c in CLASSES] for s in report["scans"]])


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_tta_is_the_mean_softmax_over_the_four_in_plane_flips(tiny_checkpoint, scans, tmp_path):
    out = tmp_path / "tta"
    assert main(["--ckpt", str(tiny_checkpoint), "--tta", "--out", str(out), *map(str, scans["paths"])]) == 0
    model, _ = load_for_inference(tiny_checkpoint)
    expected, plain = [], []
    with torch.no_grad():
        for volume in scans["volumes"]:
            x = batch(volume)
            views = [x, x.flip(3), x.flip(4), x.flip(3).flip(4)]  # H, W, H and W; never the depth axis (2)
            expected.append(np.mean([model(v).softmax(dim=1)[0].numpy() for v in views], axis=0))
            plain.append(model(x).softmax(dim=1)[0].numpy())
    assert np.allclose(json_probs(out), expected, atol=1e-6)
    assert not np.allclose(json_probs(out), plain, atol=1e-7)  # the flips did change something
    report = json.loads((out / "predictions.json").read_text())
    assert report["tta"] is True and "flip H+W" in report["tta_views"] and report["temperatures"] == [1.0]
    assert TTA_FLIPS == ((), (3,), (4,), (3, 4))


def test_tta_off_gives_the_plain_softmax(tiny_checkpoint, scans, tmp_path):
    out = tmp_path / "plain"
    assert main(["--ckpt", str(tiny_checkpoint), "--out", str(out), *map(str, scans["paths"])]) == 0
    model, _ = load_for_inference(tiny_checkpoint)
    with torch.no_grad():
        expected = [model(batch(v)).softmax(dim=1)[0].numpy() for v in scans["volumes"]]
    assert np.allclose(json_probs(out), expected, atol=1e-6)
    report = json.loads((out / "predictions.json").read_text())
    assert report["tta"] is False and report["tta_views"] is None and report["temperatures"] == [1.0]


@pytest.mark.parametrize("tta", [False, True], ids=["plain", "tta"])
def test_each_models_logits_are_divided_by_its_temperature(tiny_checkpoint, scans, tta):
    ensemble = load_ensemble([str(tiny_checkpoint), str(tiny_checkpoint)], torch.device("cpu"), tta=tta)
    assert len(ensemble.models) == 1  # the same file twice is one model
    x = torch.cat([batch(v) for v in scans["volumes"]])
    before = ensemble.probabilities(x)
    object.__setattr__(ensemble.metadata[0], "temperature", 2.0)  # as a fitted checkpoint's metadata has it
    model = ensemble.models[0]
    views = [x, x.flip(3), x.flip(4), x.flip(3).flip(4)] if tta else [x]
    with torch.no_grad():
        expected = torch.stack([(model(v) / 2.0).softmax(dim=1) for v in views]).mean(dim=0)
    after = ensemble.probabilities(x)
    assert after.shape == (1, 3, 3) and torch.allclose(after[0], expected, atol=1e-6)
    assert not torch.allclose(after, before, atol=1e-7)
    result = ScanResult(ScanInput("cp", Path("cp.nii.gz")), after[0, 0].numpy(), after[:, 0].numpy())
    report = json.loads(render_outputs(ensemble, [result], cam_method=None)["predictions.json"])
    assert report["temperatures"] == [2.0] and report["tta"] is tta


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), "warm"])
def test_an_unusable_temperature_is_refused(value):
    with pytest.raises(UsageError, match=r"^m\.ckpt: temperature .* is not a positive number$"):
        temperature_of(SimpleNamespace(path="m.ckpt", temperature=value))
    assert temperature_of(SimpleNamespace(path="old.ckpt")) == 1.0  # metadata from before temperatures


def test_resume_refuses_a_tta_mismatch(tiny_checkpoint, scans, tmp_path, capsys):
    out = tmp_path / "run"
    first = scans["paths"][0]
    assert main(["--ckpt", str(tiny_checkpoint), "--out", str(out), str(first)]) == 0
    before = (out / "predictions.json").read_bytes()
    capsys.readouterr()
    code = main(["--ckpt", str(tiny_checkpoint), "--tta", "--resume", "--out", str(out), *map(str, scans["paths"])])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {out / 'predictions.json'}: predicted without --tta, now with it; resume with the same --tta option"
    )
    assert (out / "predictions.json").read_bytes() == before
    # the same option resumes: the first scan is kept, the others predicted
    assert main(["--ckpt", str(tiny_checkpoint), "--resume", "--out", str(out), *map(str, scans["paths"])]) == 0
    assert len(json_probs(out)) == 3


def test_patient_column_and_per_patient_probabilities(tiny_checkpoint, scans, tmp_path):
    out = tmp_path / "patients"
    assert main(["--ckpt", str(tiny_checkpoint), "--out", str(out), str(scans["patients"])]) == 0
    table = rows(out / "predictions.csv")
    assert list(table[0])[:3] == ["scan", "patient_id", "path"]
    assert [(r["scan"], r["patient_id"]) for r in table] == [("cp", "p1"), ("ncp", "p2"), ("normal", "p1")]
    probs = json_probs(out)
    patients = rows(out / "patient_predictions.csv")
    assert [(p["patient_id"], p["n_scans"]) for p in patients] == [("p1", "2"), ("p2", "1")]
    means = {"p1": (probs[0] + probs[2]) / 2, "p2": probs[1]}
    for patient in patients:
        values = np.array([float(patient[f"prob_{c}"]) for c in CLASSES])
        assert np.allclose(values, means[patient["patient_id"]], atol=1e-6)
        assert patient["predicted"] == CLASSES[int(np.argmax(values))]
    report = json.loads((out / "predictions.json").read_text())
    assert report["patient_aggregation"].startswith("mean of the probabilities of the patient's")
    assert [s["patient_id"] for s in report["scans"]] == ["p1", "p2", "p1"]
    assert report["patients"][0]["scans"] == ["cp", "normal"]
    plain = tmp_path / "plain"
    assert main(["--ckpt", str(tiny_checkpoint), "--out", str(plain), str(scans["paths"][0])]) == 0
    assert not (plain / "patient_predictions.csv").exists()
    assert list(rows(plain / "predictions.csv")[0])[:3] == ["scan", "path", "predicted"]  # as before


def test_an_empty_patient_id_is_one_line(tiny_checkpoint, scans, tmp_path, capsys):
    listing = write_scan_list(scans["folder"] / "gap.csv", [
        {"path": "cp.nii.gz", "patient_id": "p1"}, {"path": "ncp.nii.gz", "patient_id": ""},
    ])  # fmt: skip
    assert main(["--ckpt", str(tiny_checkpoint), "--out", str(tmp_path / "o"), str(listing)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {listing}, line 3: empty patient_id (the list has the column: every row needs one)"
    )
    assert not (tmp_path / "o").exists()

"""``darnet-evaluate`` (``darnet_pl.evaluation``): predict as darnet-predict does, then the paper's metrics with
patient-level bootstrap intervals, plots and a summary, on tiny labelled phantom lists."""

from __future__ import annotations

import csv
import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from darnet_pl.cli.evaluate import main
from darnet_pl.cli.predict import main as predict_main
from darnet_pl.metrics import PaperMetrics, UndefinedMetricWarning, metrics_from_probabilities
from darnet_pl.stats import patient_bootstrap, probs_to_logits
from tests.helpers.checkpoints import phantom_volumes, write_nifti, write_scan_list
from tests.helpers.faults import every_file, hidden

CLASSES = ("CP", "NCP", "Normal")
FILES = ["confusion.png", "errors.csv", "metrics.json", "patient_predictions.csv", "predictions.csv",
         "predictions.json", "reliability.png", "roc.png", "summary.json"]  # fmt: skip


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Six phantoms (two per class) as NIfTI, a labelled list with patient ids (patient pA has two scans), and
    a list of the NCP and Normal scans only (as MosMedData labels them)."""
    folder = tmp_path_factory.mktemp("evaluate-scans")
    rows = []
    for i, (name, volume) in enumerate(phantom_volumes(2)):
        write_nifti(folder / f"s{i}.nii.gz", volume)
        rows.append({"path": f"s{i}.nii.gz", "label": name, "patient_id": "pA" if i in (0, 3) else f"p{i}"})
    return {
        "folder": folder,
        "rows": rows,
        "all": write_scan_list(folder / "all.csv", rows),
        "covid_normal": write_scan_list(folder / "covid_normal.csv", [r for r in rows if r["label"] != "CP"]),
    }


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def nan_to_none(values: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if math.isnan(v) else v) for k, v in values.items()}


def assert_same_metrics(got: dict[str, float | None], expected: dict[str, float]) -> None:
    assert set(got) == set(expected)
    for name, value in nan_to_none(expected).items():
        if value is None:
            assert got[name] is None, name
        else:
            assert got[name] == pytest.approx(value, abs=1e-9), name


def predicted_probabilities(ckpt: Path, listing: Path, out: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """darnet-predict's probabilities of the list's scans, their label indices and patient ids."""
    assert predict_main(["--ckpt", str(ckpt), "--out", str(out), str(listing)]) == 0
    scans = read_json(out / "predictions.json")["scans"]
    probs = np.array([[s["probabilities"][c] for c in CLASSES] for s in scans])
    labels = np.array([CLASSES.index(s["label"]) for s in scans])
    return probs, labels, np.array([s["patient_id"] for s in scans])


def paper_metrics_of(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    metrics = PaperMetrics(CLASSES, "NCP")
    metrics.update(probs_to_logits(probs), torch.as_tensor(labels))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return metrics.compute()


def test_evaluate_writes_every_file_and_the_paper_metrics_of_predicts_probabilities(
    tiny_checkpoint, phantoms, tmp_path, capsys
):
    out = tmp_path / "eval"
    code = main(["--ckpt", str(tiny_checkpoint), "--scans", str(phantoms["all"]), "--out", str(out),
                 "--bootstrap", "200"])  # fmt: skip
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    assert sorted(p.name for p in out.iterdir()) == FILES and hidden(out) == []
    probs, labels, patients = predicted_probabilities(tiny_checkpoint, phantoms["all"], tmp_path / "predict")
    metrics = read_json(out / "metrics.json")
    assert_same_metrics(metrics["metrics"], paper_metrics_of(probs, labels))
    assert metrics["support"] == {"CP": 2, "NCP": 2, "Normal": 2} and metrics["n_patients"] == 5
    assert np.array(metrics["confusion"]["matrix"]).sum() == 6 and metrics["notes"] == []
    boot = patient_bootstrap(probs, labels, patients, CLASSES, "NCP", n_resamples=200, seed=0)
    assert metrics["bootstrap"]["resamples"] == 200 and metrics["bootstrap"]["unit"] == "patient"
    for name, (low, high) in boot.intervals.items():
        assert metrics["ci"][name] == ([None, None] if math.isnan(low) else [pytest.approx(low), pytest.approx(high)])
    # predictions.csv is darnet-predict's, with the label
    with (out / "predictions.csv").open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [r["label"] for r in table] == [r["label"] for r in phantoms["rows"]]
    assert np.allclose([[float(r[f"prob_{c}"]) for c in CLASSES] for r in table], probs, atol=1e-6)
    for name in ("roc.png", "confusion.png", "reliability.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG"
    summary = read_json(out / "summary.json")
    assert summary["scans"] == {"listed": 6, "predicted": 6, "failed": 0} and summary["files"] == FILES
    assert summary["tta"] is False and summary["temperatures"] == [1.0] and summary["ensemble"] == "single model"
    assert summary["headline"]["3class/auc_macro"]["value"] == metrics["metrics"]["3class/auc_macro"]
    assert summary["headline"]["2class/auc"]["ci"] == metrics["ci"]["2class/auc"]
    assert stdout.startswith(f"darnet-evaluate: 6 of 6 scan(s) evaluated (0 failed, 5 patient(s)), single model; "
                             f"results in {out}\n")  # fmt: skip
    assert "note:" not in stdout


def test_patient_level_block_is_the_mean_of_each_patients_scans(tiny_checkpoint, phantoms, tmp_path, capsys):
    """Patient pA has two scans: on patient level it is one sample, the mean of its scans' probabilities."""
    out = tmp_path / "eval"
    assert main(["--ckpt", str(tiny_checkpoint), "--scans", str(phantoms["all"]), "--out", str(out),
                 "--bootstrap", "100"]) == 0  # fmt: skip
    probs, labels, patients = predicted_probabilities(tiny_checkpoint, phantoms["all"], tmp_path / "predict")
    order = list(dict.fromkeys(patients))
    patient_probs = np.array([probs[patients == p].mean(axis=0) for p in order])
    patient_labels = np.array([labels[patients == p][0] for p in order])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        expected = metrics_from_probabilities(patient_probs, patient_labels, CLASSES, "NCP")
    block = read_json(out / "metrics.json")["patient_level"]
    assert block["n_patients"] == 5 and sum(block["support"].values()) == 5
    assert_same_metrics({k.removeprefix("patient/"): v for k, v in block["metrics"].items()}, expected)
    boot = patient_bootstrap(patient_probs, patient_labels, np.array(order), CLASSES, "NCP", n_resamples=100, seed=0)
    for name, (low, high) in boot.intervals.items():
        got = block["ci"][f"patient/{name}"]
        assert got == ([None, None] if math.isnan(low) else [pytest.approx(low), pytest.approx(high)])
    assert block["calibration"]["n"] == 5


def test_without_patient_ids_there_is_no_patient_level(tiny_checkpoint, phantoms, tmp_path):
    listing = tmp_path / "no_ids.csv"
    listing.write_text("path,label\n" + "".join(f"{phantoms['all'].parent / r['path']},{r['label']}\n"
                                                 for r in phantoms["rows"]))  # fmt: skip
    out = tmp_path / "eval"
    assert main(["--ckpt", str(tiny_checkpoint), "--scans", str(listing), "--out", str(out), "--bootstrap", "0"]) == 0
    assert read_json(out / "metrics.json")["patient_level"] is None


def test_labels_without_a_class_get_the_defined_metrics_and_one_note(tiny_checkpoint, phantoms, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["--ckpt", str(tiny_checkpoint), "--scans", str(phantoms["covid_normal"]), "--out", str(out),
                 "--bootstrap", "50"])  # fmt: skip
    stdout = capsys.readouterr().out
    assert code == 0
    notes = [line for line in stdout.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "class 'CP' is absent from the labels" in notes[0], stdout
    metrics = read_json(out / "metrics.json")
    values = metrics["metrics"]
    assert values["3class/CP/auc"] is None and values["3class/CP/sensitivity"] is None
    for name in ("2class/auc", "2class/sensitivity", "2class/specificity", "3class/auc_macro", "3class/accuracy",
                 "3class/NCP/auc", "3class/Normal/auc", "3class/CP/specificity"):  # fmt: skip
        assert isinstance(values[name], float), name
    probs, labels, _ = predicted_probabilities(tiny_checkpoint, phantoms["covid_normal"], tmp_path / "predict")
    assert_same_metrics(values, paper_metrics_of(probs, labels))
    assert metrics["support"]["CP"] == 0 and metrics["notes"] == [notes[0].removeprefix("note: ")]
    assert metrics["ci"]["3class/CP/auc"] == [None, None]
    assert sorted(p.name for p in out.iterdir()) == FILES


def test_a_fold_ensemble_from_a_sweep_folder(tiny_checkpoint, phantoms, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for fold in ("fold0", "fold1"):
        (sweep / fold / "checkpoints").mkdir(parents=True)
        shutil.copy(tiny_checkpoint, sweep / fold / "checkpoints" / "epoch001.ckpt")
        (sweep / fold / "test_metrics.json").write_text("{}")  # a finished job: tested
    out = tmp_path / "eval"
    code = main(["--ckpt", str(sweep), "--scans", str(phantoms["all"]), "--out", str(out), "--bootstrap", "0"])
    assert code == 0, capsys.readouterr().err
    summary = read_json(out / "summary.json")
    assert summary["ensemble"] == "mean softmax of 2 models" and len(summary["checkpoints"]) == 2
    assert summary["headline"]["2class/auc"]["ci"] is None and read_json(out / "metrics.json")["bootstrap"] is None
    scans = read_json(out / "predictions.json")["scans"]
    assert all(len(s["per_model"]) == 2 for s in scans)


def test_a_label_that_is_no_class_is_one_line_and_exit_2(tiny_checkpoint, phantoms, tmp_path, capsys):
    rows = [dict(r) for r in phantoms["rows"][:3]]
    rows[1]["label"] = "COVID"
    listing = write_scan_list(phantoms["folder"] / "bad_label.csv", rows)
    out = tmp_path / "eval"
    assert main(["--ckpt", str(tiny_checkpoint), "--scans", str(listing), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {listing}, line 3: label 'COVID' is not a class of the checkpoint (CP, NCP, Normal)"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("content", "problem"),
    [("path,patient_id\ns0.nii.gz,p0\n", ": no 'label' column (columns: path, patient_id)"),
     ("path,label\ns0.nii.gz,\n", ", line 2: empty label")],
    ids=["no-label-column", "empty-label"],
)  # fmt: skip
def test_unusable_lists_are_one_line(tiny_checkpoint, phantoms, tmp_path, capsys, content, problem):
    listing = phantoms["folder"] / f"unusable-{abs(hash(content))}.csv"
    listing.write_text(content, encoding="utf-8")
    assert main(["--ckpt", str(tiny_checkpoint), "--scans", str(listing), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {listing}{problem}"
    assert not (tmp_path / "o").exists()


def test_a_non_empty_out_is_refused_unless_overwrite(tiny_checkpoint, phantoms, tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = ["--ckpt", str(tiny_checkpoint), "--scans", str(phantoms["covid_normal"]), "--out", str(out)]
    assert main([*args, "--bootstrap", "0"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {out}: the output folder exists and is not empty (pass --overwrite to write into it)"
    )
    assert every_file(out) == ["keep.txt"]
    assert main([*args, "--bootstrap", "0", "--overwrite"]) == 0
    assert (out / "keep.txt").read_text() == "mine" and (out / "metrics.json").is_file()


def test_a_missing_scan_is_listed_in_errors_csv_with_exit_3(tiny_checkpoint, phantoms, tmp_path, capsys):
    rows = [*phantoms["rows"], {"path": "missing.nii.gz", "label": "NCP", "patient_id": "p9"}]
    listing = write_scan_list(phantoms["folder"] / "with_missing.csv", rows)
    out = tmp_path / "eval"
    code = main(["--ckpt", str(tiny_checkpoint), "--scans", str(listing), "--out", str(out), "--bootstrap", "20"])
    captured = capsys.readouterr()
    assert code == 3
    assert [line for line in captured.err.splitlines() if line.startswith("error: ")] == [
        f"error: {phantoms['folder'] / 'missing.nii.gz'}: not found"
    ]
    with (out / "errors.csv").open(newline="") as handle:
        errors = list(csv.DictReader(handle))
    assert [(e["scan"], e["error"]) for e in errors] == [("missing", "not found")]
    summary = read_json(out / "summary.json")
    assert summary["scans"] == {"listed": 7, "predicted": 6, "failed": 1}
    assert "1 of 7 scan(s) could not be read (errors.csv): the metrics are over the 6 others" in captured.out
    assert read_json(out / "metrics.json")["n_scans"] == 6 and sorted(p.name for p in out.iterdir()) == FILES

"""Temperature scaling (fitted on validation, stored in the checkpoint) and the patient-level and calibration
metrics of test_metrics.json."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from darnet_pl.metrics import (
    TEMPERATURE_RANGE,
    UndefinedMetricWarning,
    brier_score,
    expected_calibration_error,
    fit_temperature,
    metrics_from_probabilities,
    patient_level,
)
from darnet_pl.runs.checkpoints import TEMPERATURE_KEY, CheckpointError, metadata_of, read_checkpoint
from darnet_pl.runs.layout import METRICS_FILE, PREDICTIONS_FILE
from darnet_pl.runs.metrics_file import read_metrics_file
from darnet_pl.runs.predictions import prediction_row, read_predictions
from darnet_pl.training.module import DARNetModule
from darnet_pl.training.run import beyond_scan_metrics, store_temperature
from tests.helpers.forked import run_forked
from tests.helpers.user import explain

CLASSES = ("CP", "NCP", "Normal")
CALIBRATION_KEYS = {"test/calibration/brier", "test/calibration/ece"}
SCALED_KEYS = {
    "test/calibration/temperature",
    "test/calibration/brier_uncalibrated",
    "test/calibration/ece_uncalibrated",
}


def _calibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits): a perfectly calibrated model."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 3)) * 2.0
    probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    labels = (rng.random((n, 1)) > probs.cumsum(axis=1)).sum(axis=1)
    return logits, labels


def test_fit_temperature_recovers_a_known_temperature() -> None:
    logits, labels = _calibrated(20000, seed=0)
    assert fit_temperature(logits * 3.0, labels) == pytest.approx(3.0, rel=0.06)
    assert fit_temperature(torch.tensor(logits / 2.0), torch.tensor(labels)) == pytest.approx(0.5, rel=0.06)
    assert fit_temperature(logits, labels) == pytest.approx(1.0, rel=0.06)


def test_fit_temperature_stays_in_range() -> None:
    always_wrong = fit_temperature(np.eye(3)[[0, 1, 2]] * 20.0, [1, 2, 0])
    assert TEMPERATURE_RANGE[0] <= always_wrong <= TEMPERATURE_RANGE[1]
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int)) == 1.0


def _rows(seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for patient in range(9):
        label = patient % 3
        for scan in range(1 + patient % 2):
            probs = rng.dirichlet([1.0, 1.0, 1.0]) * 0.5 + 0.5 * np.eye(3)[label] * rng.random()
            rows.append(prediction_row(f"p{patient}", f"s{scan}", label, (probs / probs.sum()).tolist(), CLASSES))
    return rows


@pytest.mark.parametrize("how", ["mean", "max"])
def test_beyond_scan_metrics_without_temperature(how: str) -> None:
    rows = _rows(1)
    got = beyond_scan_metrics(rows, CLASSES, "NCP", how)
    probs = np.array([[row[f"prob_{c}"] for c in CLASSES] for row in rows])
    labels = np.array([row["label"] for row in rows])
    _, patient_labels, patient_probs = patient_level([row["patient_id"] for row in rows], labels, probs, how)
    expected = {
        f"test/patient/{k}": v
        for k, v in metrics_from_probabilities(patient_probs, patient_labels, CLASSES, "NCP").items()
    }
    assert set(got) == set(expected) | CALIBRATION_KEYS
    assert {k: got[k] for k in expected} == pytest.approx(expected, nan_ok=True)
    assert got["test/calibration/brier"] == pytest.approx(brier_score(probs, labels))
    assert got["test/calibration/ece"] == pytest.approx(expected_calibration_error(probs, labels))


def test_beyond_scan_metrics_with_a_temperature_report_both() -> None:
    rows = _rows(2)
    raw = [torch.randn(3) for _ in rows]
    got = beyond_scan_metrics(rows, CLASSES, "NCP", "mean", raw_logits=raw, temperature=2.5)
    assert set(got) >= SCALED_KEYS and got["test/calibration/temperature"] == 2.5
    raw_probs = torch.stack(raw).double().softmax(dim=1).numpy()
    labels = [row["label"] for row in rows]
    assert got["test/calibration/ece_uncalibrated"] == pytest.approx(expected_calibration_error(raw_probs, labels))


def test_the_temperature_travels_in_the_checkpoint(tiny_checkpoint: Path, tmp_path: Path) -> None:
    assert metadata_of(read_checkpoint(tiny_checkpoint), tiny_checkpoint).temperature == 1.0  # none fitted
    path = shutil.copy(tiny_checkpoint, tmp_path / "scaled.ckpt")
    store_temperature(path, 2.25)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    assert checkpoint[TEMPERATURE_KEY] == 2.25
    assert metadata_of(checkpoint, path).temperature == 2.25
    assert metadata_of(checkpoint, path).to_dict()["temperature"] == 2.25

    scaling = DARNetModule(width=4, input_size=(16, 32, 32), temperature_scaling=True)
    scaling.on_load_checkpoint(checkpoint)
    assert scaling.temperature == 2.25
    plain = DARNetModule(width=4, input_size=(16, 32, 32))
    plain.on_load_checkpoint(checkpoint)
    assert plain.temperature == 1.0  # temperature_scaling=false tests uncalibrated

    checkpoint[TEMPERATURE_KEY] = -1.0
    with pytest.raises(CheckpointError, match=f"{TEMPERATURE_KEY}=-1.0 is not a positive number"):
        metadata_of(checkpoint, path)


def test_an_unknown_patient_aggregation_is_refused() -> None:
    with pytest.raises(ValueError, match=r"model\.patient_aggregation=median: expected one of mean, max"):
        DARNetModule(width=4, input_size=(16, 32, 32), patient_aggregation="median")


@pytest.mark.slow
def test_a_tiny_run_writes_patient_and_calibrated_results(tmp_path: Path) -> None:
    args = ["+experiment=smoke", "debug=tiny", "logger=none"]
    args += ["model.temperature_scaling=true", "model.patient_aggregation=max"]
    result = run_forked("darnet_pl", *args, cwd=tmp_path, timeout=400)
    assert result.returncode == 0, explain(result)
    job = next(tmp_path.glob("outputs/smoke/runs/*/"))
    metrics = read_metrics_file(job / METRICS_FILE)

    scan_keys = {k.removeprefix("test/") for k in metrics if k.count("/") >= 2 and k.split("/")[1].endswith("class")}
    assert scan_keys and {f"test/patient/{k}" for k in scan_keys} <= set(metrics)
    assert set(metrics) >= CALIBRATION_KEYS | SCALED_KEYS

    # the fitted temperature is in the best checkpoint (safe to load), not in last.ckpt, and it is what was tested
    best = next(p for p in (job / "checkpoints").glob("*.ckpt") if p.name != "last.ckpt")
    temperature = torch.load(best, map_location="cpu", weights_only=True)[TEMPERATURE_KEY]
    assert (
        temperature == metrics["test/calibration/temperature"] == metadata_of(read_checkpoint(best), best).temperature
    )
    assert TEMPERATURE_KEY not in read_checkpoint(job / "checkpoints" / "last.ckpt")

    # the patient-level numbers are those of predictions.csv (the scaled probabilities), aggregated with max
    predictions = read_predictions(job / PREDICTIONS_FILE, CLASSES)
    _, labels, probs = patient_level(predictions.patient_ids, predictions.labels, predictions.probs, how="max")
    with warnings.catch_warnings():  # a class absent from the tiny test set: its AUC is NaN, said elsewhere
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        expected = metrics_from_probabilities(probs, labels, CLASSES, "NCP")
    for key, value in expected.items():
        assert metrics[f"test/patient/{key}"] == pytest.approx(value, abs=1e-6, nan_ok=True), key
    ece = expected_calibration_error(predictions.probs, predictions.labels)
    assert metrics["test/calibration/ece"] == pytest.approx(ece, abs=1e-9)

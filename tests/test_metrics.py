"""The paper's metrics against scikit-learn on the same predictions, to 1e-6."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, recall_score, roc_auc_score

from darnet_pl.metrics import (
    PaperMetrics,
    brier_score,
    expected_calibration_error,
    metrics_from_probabilities,
    patient_level,
)

CLASSES = ("CP", "NCP", "Normal")


def _predictions(seed: int, n: int = 157) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    logits = rng.normal(size=(n, 3)) + 1.5 * np.eye(3)[labels] * rng.random((n, 1))
    return torch.tensor(logits, dtype=torch.float32), torch.tensor(labels)


def _specificity(y_true: np.ndarray, y_pred: np.ndarray, positive: int) -> float:
    negatives = y_true != positive
    return float(np.mean(y_pred[negatives] != positive))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_scikit_learn(seed: int) -> None:
    logits, labels = _predictions(seed)
    metrics = PaperMetrics(CLASSES, positive_class="NCP")
    for chunk in torch.split(torch.arange(len(labels)), 40):  # several batches
        metrics.update(logits[chunk], labels[chunk])
    got = metrics.compute()

    y = labels.numpy()
    probs = torch.softmax(logits, 1).numpy()
    pred = probs.argmax(1)
    covid_true, covid_pred = (y == 1).astype(int), (pred == 1).astype(int)
    expected = {
        "2class/auc": roc_auc_score(covid_true, probs[:, 1]),
        "2class/accuracy": accuracy_score(covid_true, covid_pred),
        "2class/sensitivity": recall_score(covid_true, covid_pred),
        "2class/specificity": _specificity(y, pred, 1),
        "2class/f1": f1_score(covid_true, covid_pred),
        "3class/auc_macro": roc_auc_score(y, probs, multi_class="ovr", average="macro"),
        "3class/accuracy": accuracy_score(y, pred),
        "3class/accuracy_ovr_macro": np.mean([accuracy_score(y == c, pred == c) for c in range(3)]),
        "3class/sensitivity_macro": recall_score(y, pred, average="macro"),
        "3class/specificity_macro": np.mean([_specificity(y, pred, c) for c in range(3)]),
        "3class/f1_macro": f1_score(y, pred, average="macro"),
    }
    per_class_f1 = f1_score(y, pred, average=None)
    per_class_recall = recall_score(y, pred, average=None)
    for c, name in enumerate(CLASSES):
        expected[f"3class/{name}/auc"] = roc_auc_score(y == c, probs[:, c])
        expected[f"3class/{name}/f1"] = per_class_f1[c]
        expected[f"3class/{name}/sensitivity"] = per_class_recall[c]
        expected[f"3class/{name}/specificity"] = _specificity(y, pred, c)
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(float(value), abs=1e-6), key


def test_reset_starts_a_new_epoch() -> None:
    logits, labels = _predictions(3)
    metrics = PaperMetrics(CLASSES)
    metrics.update(-logits, labels)
    metrics.reset()
    metrics.update(logits, labels)
    fresh = PaperMetrics(CLASSES)
    fresh.update(logits, labels)
    assert metrics.compute() == fresh.compute()


def test_perfect_predictions_score_one() -> None:
    labels = torch.tensor([0, 1, 2, 1, 0, 2])
    logits = torch.nn.functional.one_hot(labels, 3).float() * 10
    metrics = PaperMetrics(CLASSES)
    metrics.update(logits, labels)
    values = metrics.compute()
    assert all(v == pytest.approx(1.0) for v in values.values())


def test_unknown_positive_class() -> None:
    with pytest.raises(ValueError, match="positive class"):
        PaperMetrics(CLASSES, positive_class="COVID")


# --- beyond the paper: patient level and calibration -------------------------------------------------------------


def test_patient_level_mean_by_hand() -> None:
    ids = ["p2", "p1", "p2", "p3"]
    labels = [1, 0, 1, 2]
    probs = [[0.2, 0.7, 0.1], [0.5, 0.3, 0.2], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]]
    patients, patient_labels, patient_probs = patient_level(ids, labels, probs)
    assert patients.tolist() == ["p2", "p1", "p3"]  # in the order patients first appear
    assert patient_labels.tolist() == [1, 0, 2]
    np.testing.assert_allclose(patient_probs, [[0.4, 0.5, 0.1], [0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])


def test_patient_level_max_is_renormalised_per_class_maxima() -> None:
    ids = ["a", "a", "b"]
    probs = [[0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]]
    _, _, patient_probs = patient_level(ids, [1, 1, 2], probs, how="max")
    np.testing.assert_allclose(patient_probs, [[0.6 / 1.4, 0.7 / 1.4, 0.1 / 1.4], [0.1, 0.1, 0.8]])
    np.testing.assert_allclose(patient_probs.sum(axis=1), 1.0)


def test_a_patient_with_two_labels_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"patient 'p7' has scans labelled \[0, 2\]"):
        patient_level(["p1", "p7", "p7"], [1, 0, 2], np.full((3, 3), 1 / 3))


def test_patient_level_refuses_an_unknown_aggregation() -> None:
    with pytest.raises(ValueError, match="patient aggregation 'median'"):
        patient_level(["a"], [0], [[1.0, 0.0, 0.0]], how="median")


def test_patient_metrics_use_the_paper_metric_names() -> None:
    logits, labels = _predictions(4, n=60)
    probs = torch.softmax(logits, 1).numpy()
    got = metrics_from_probabilities(probs, labels.numpy(), CLASSES, "NCP")
    scan_level = PaperMetrics(CLASSES, positive_class="NCP")
    scan_level.update(logits, labels)
    expected = scan_level.compute()
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key


def test_brier_score_by_hand() -> None:
    assert brier_score(np.eye(3), [0, 1, 2]) == 0.0
    assert brier_score(np.full((4, 3), 1 / 3), [0, 1, 2, 1]) == pytest.approx(2 / 3)
    # (0.2^2 + 0.2^2 + 0) and (0.5^2 + 0.5^2 + 0): mean 0.29
    assert brier_score([[0.8, 0.2, 0.0], [0.5, 0.0, 0.5]], [0, 2]) == pytest.approx(0.29)


@pytest.mark.parametrize(("seed", "n_bins"), [(0, 15), (1, 10), (2, 3)])
def test_expected_calibration_error_equals_torchmetrics(seed: int, n_bins: int) -> None:
    from torchmetrics.classification import MulticlassCalibrationError

    rng = np.random.default_rng(seed)
    probs = rng.dirichlet([0.5, 0.5, 0.5], size=400)
    probs[:5] = np.eye(3)[[0, 1, 2, 0, 1]]  # confidence exactly 1: torchmetrics' extra bin
    labels = rng.integers(0, 3, size=400)
    reference = MulticlassCalibrationError(num_classes=3, n_bins=n_bins, norm="l1")
    expected = float(reference(torch.tensor(probs, dtype=torch.float32), torch.tensor(labels)))
    assert expected > 0
    assert expected_calibration_error(probs, labels, n_bins=n_bins) == pytest.approx(expected, abs=1e-6)


def test_expected_calibration_error_by_hand() -> None:
    # all confident at 0.9 (one bin), 3 of 4 right: |0.75 - 0.9|
    probs = np.array([[0.9, 0.05, 0.05]] * 4)
    assert expected_calibration_error(probs, [0, 0, 0, 1]) == pytest.approx(0.15)

"""The paper's metrics against scikit-learn on the same predictions, to 1e-6."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, recall_score, roc_auc_score

from darnet_pl.metrics import PaperMetrics

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

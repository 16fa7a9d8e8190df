"""The paper's metrics of probabilities, once (``paper_metrics``) or for a whole batch of weighted resamples
(``weighted_metrics``).

Point estimates go through the project's own ``PaperMetrics`` (probabilities fed as logits = log p, whose softmax
is p again), so every number means exactly what a training job's ``test_metrics.json`` means. A bootstrap needs the
same metrics thousands of times; ``weighted_metrics`` computes them for a batch of resamples at once (a resample is
a vector of integer scan weights: how often each scan's patient was drawn): weighted confusion matrices and a
weighted AUC, turned into metrics by the very function ``PaperMetrics`` uses
(``darnet_pl.metrics.metrics_from_counts``); the tests check it against ``PaperMetrics`` at unit weights.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

from darnet_pl.metrics import PaperMetrics, UndefinedMetricWarning, metrics_from_counts

# float32 softmax of log(p) must stay finite: a probability of exactly 0 becomes the smallest normal float32.
_TINY = float(np.finfo(np.float32).tiny)


def probs_to_logits(probs: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.log(np.clip(np.asarray(probs, dtype=np.float64), _TINY, None)))


def paper_metrics(
    probs: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    positive_class: str,
    notes: list[str] | None = None,
) -> dict[str, float]:
    """PaperMetrics of per-scan probabilities (the same definitions a training job's test metrics use).

    An undefined metric (a class absent from the labels) is NaN; its ``UndefinedMetricWarning`` becomes a line of
    ``notes`` (once) when a list is given, so that a command says it in words instead of warning.
    """
    metrics = PaperMetrics(class_names, positive_class)
    metrics.update(probs_to_logits(probs), torch.as_tensor(np.asarray(labels), dtype=torch.long))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UndefinedMetricWarning)
        values = metrics.compute()
    for warning in caught:
        if not issubclass(warning.category, UndefinedMetricWarning):  # anything else is not ours to hide
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        elif notes is not None and str(warning.message) not in notes:
            notes.append(str(warning.message))
    return values


def as_paper_sees_them(probs: np.ndarray) -> np.ndarray:
    """The probabilities exactly as PaperMetrics computes with them (float32 softmax of log p), so that ties and
    argmax decisions in a bootstrap or a test are the ones of the point estimate."""
    return probs_to_logits(probs).float().softmax(dim=1).double().numpy()


def weighted_auc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC for each row of ``weights`` (B, N) at once: the weighted Mann-Whitney statistic, ties counting 1/2.

    Equal to the trapezoidal ROC AUC of scikit-learn and torchmetrics with the scans repeated ``weight`` times.
    NaN where a resample has no positives or no negatives.
    """
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    starts = np.concatenate(([0], np.flatnonzero(np.diff(sorted_scores)) + 1))  # one block per distinct score
    w = weights[:, order]
    pos = positive[order].astype(bool)
    pos_w = np.add.reduceat(np.where(pos, w, 0.0), starts, axis=1)
    neg_w = np.add.reduceat(np.where(pos, 0.0, w), starts, axis=1)
    neg_below = np.cumsum(neg_w, axis=1) - neg_w
    wins = (pos_w * (neg_below + 0.5 * neg_w)).sum(axis=1)
    den = pos_w.sum(axis=1) * neg_w.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, wins / np.where(den > 0, den, 1), np.nan)


def weighted_metrics(
    probs: np.ndarray, labels: np.ndarray, weights: np.ndarray, class_names: Sequence[str], positive_class: str
) -> dict[str, np.ndarray]:
    """Every PaperMetrics number for every row of scan weights ``weights`` (B, N); each value has shape (B,).

    NaN where a metric is undefined in a resample (as PaperMetrics gives NaN on the same scans); no warning.
    """
    k = probs.shape[1]
    labels = np.asarray(labels, dtype=np.int64)
    pred = probs.argmax(axis=1)
    cell = np.zeros((len(labels), k * k))
    cell[np.arange(len(labels)), labels * k + pred] = 1.0
    confusion = (weights @ cell).reshape(-1, k, k)  # (B, true, predicted)
    auc = np.stack([weighted_auc(probs[:, c], labels == c, weights) for c in range(k)], axis=1)
    return metrics_from_counts(confusion, auc, class_names, positive_class)

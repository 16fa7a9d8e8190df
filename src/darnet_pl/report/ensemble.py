"""Fold ensembles and patient-level bootstrap confidence intervals.

Point estimates go through the project's own ``PaperMetrics`` (probabilities fed as logits = log p, whose softmax
is p again), so every number means exactly what a training job's ``test_metrics.json`` means. The bootstrap needs
the same metrics thousands of times; ``weighted_metrics`` computes them for a whole batch of resamples at once (a
resample is a vector of integer scan weights: how often each scan's patient was drawn): weighted confusion matrices
and a weighted AUC, turned into metrics by the very function ``PaperMetrics`` uses
(``darnet_pl.metrics.metrics_from_counts``), and the tests check it against ``PaperMetrics`` at unit weights.

Undefined metrics (a class absent from the test set: its AUC, sensitivity, maybe F1) are NaN in the point estimate
and in every resample; a percentile interval is over the resamples where the metric is defined (``n_valid``), and
NaN where the point estimate is NaN.

Resampling is by patient, with all their scans, because scans of one patient are not independent: resampling
scans would give intervals that are too narrow.

``patient_results`` puts the ensemble on patient level (``darnet_pl.metrics.patient_level``: a patient's
probabilities are the mean of their scans') and computes the same metrics there, keys prefixed ``patient/``, with a
bootstrap over patients; ``calibration`` gives the Brier score and the expected calibration error
(``darnet_pl.metrics.brier_score``, ``expected_calibration_error``) of scan- and patient-level probabilities.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from darnet_pl.metrics import (
    PaperMetrics,
    UndefinedMetricWarning,
    brier_score,
    expected_calibration_error,
    metrics_from_counts,
    metrics_from_probabilities,
    patient_level,
)
from darnet_pl.runs.predictions import Predictions

PATIENT_PREFIX = "patient/"
ECE_BINS = 15


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
    argmax decisions in the bootstrap are the ones of the point estimate."""
    return probs_to_logits(probs).float().softmax(dim=1).double().numpy()


@dataclass
class FoldEnsemble:
    """The mean softmax of a group's fold models on the scans all of them were tested on."""

    probs: np.ndarray  # (N, K) mean over folds
    fold_probs: np.ndarray  # (F, N, K) aligned per-fold probabilities
    labels: np.ndarray
    patient_ids: np.ndarray
    scan_ids: np.ndarray
    folds: list[int | None]
    same_test_set: bool
    notes: list[str] = field(default_factory=list)

    @property
    def n_scans(self) -> int:
        return len(self.labels)

    @property
    def n_patients(self) -> int:
        return len(np.unique(self.patient_ids))


def fold_ensemble(predictions: Sequence[Predictions], folds: Sequence[int | None]) -> FoldEnsemble:
    """Join the folds' predictions on (patient_id, scan_id) and average their probabilities.

    All folds should have been tested on the same scans. If not, the ensemble is built on the scans every fold saw,
    and ``same_test_set`` is False with a note naming the difference; scans whose label differs between folds are
    dropped with a note.
    """
    if not predictions:
        raise ValueError("no predictions to ensemble")
    notes: list[str] = []
    key_sets = [set(p.keys) for p in predictions]
    common = set.intersection(*key_sets)
    same = all(len(s) == len(common) for s in key_sets)
    if not same:
        sizes = ", ".join(f"fold {f}: {len(s)}" for f, s in zip(folds, key_sets, strict=True))
        notes.append(
            f"the folds were not tested on the same scans ({sizes}); the ensemble uses the {len(common)} common"
        )
    if any(len(p.keys) != len(set(p.keys)) for p in predictions):
        notes.append("a predictions file lists a (patient_id, scan_id) twice; the last row wins")
    order = sorted(common)
    index = {key: i for i, key in enumerate(order)}
    k = predictions[0].probs.shape[1]
    fold_probs = np.full((len(predictions), len(order), k), np.nan)
    fold_labels = np.full((len(predictions), len(order)), -1, dtype=np.int64)
    for f, pred in enumerate(predictions):
        for row, key in enumerate(pred.keys):
            i = index.get(key)
            if i is not None:
                fold_probs[f, i] = pred.probs[row]
                fold_labels[f, i] = pred.labels[row]
    agree = (fold_labels == fold_labels[0]).all(axis=0)
    if not agree.all():
        notes.append(f"{int((~agree).sum())} scans have different labels in different folds; left out")
        same = False
    fold_probs, labels = fold_probs[:, agree], fold_labels[0, agree]
    keys = [key for key, ok in zip(order, agree, strict=True) if ok]
    return FoldEnsemble(
        probs=fold_probs.mean(axis=0),
        fold_probs=fold_probs,
        labels=labels,
        patient_ids=np.array([p for p, _ in keys], dtype=str),
        scan_ids=np.array([s for _, s in keys], dtype=str),
        folds=list(folds),
        same_test_set=same,
        notes=notes,
    )


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


@dataclass
class Bootstrap:
    """Percentile intervals of a patient-level bootstrap."""

    intervals: dict[str, tuple[float, float]]
    n_resamples: int
    n_valid: dict[str, int]  # resamples where the metric was defined (e.g. AUC needs both classes present)
    seed: int
    level: float
    n_patients: int
    n_scans: int


def resample_weights(patient_ids: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(B, N) scan weights: how often each scan's patient was drawn in each of ``n_resamples`` patient resamples."""
    patients, scan_patient = np.unique(patient_ids, return_inverse=True)
    n = len(patients)
    draws = rng.integers(0, n, size=(n_resamples, n))
    flat = (np.arange(n_resamples)[:, None] * n + draws).ravel()
    counts = np.bincount(flat, minlength=n_resamples * n).reshape(n_resamples, n)
    return counts[:, scan_patient].astype(np.float64)


def patient_bootstrap(
    probs: np.ndarray,
    labels: np.ndarray,
    patient_ids: np.ndarray,
    class_names: Sequence[str],
    positive_class: str,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    chunk: int = 250,
) -> Bootstrap:
    """Percentile ``level`` intervals of every PaperMetrics number, resampling patients with all their scans.

    Resamples where a metric is undefined (NaN: e.g. no scan of a class drawn) are left out of its interval and
    ``n_valid`` counts the others; a metric undefined on the whole set has the interval (NaN, NaN).

    Resamples are processed ``chunk`` at a time (memory B x N), so 1000 resamples of ~1000 scans take well under a
    second; the same ``seed`` gives the same intervals.
    """
    probs = as_paper_sees_them(probs)
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    collected: dict[str, list[np.ndarray]] = {}
    for start in range(0, n_resamples, chunk):
        weights = resample_weights(np.asarray(patient_ids), min(chunk, n_resamples - start), rng)
        for name, values in weighted_metrics(probs, labels, weights, class_names, positive_class).items():
            collected.setdefault(name, []).append(values)
    # The point estimate, by the same computation at unit weights: a metric undefined on all the data gets no
    # interval (it is undefined in every resample as well: a resample only repeats patients).
    point = weighted_metrics(probs, labels, np.ones((1, len(labels))), class_names, positive_class)
    alpha = (1.0 - level) / 2.0
    intervals: dict[str, tuple[float, float]] = {}
    n_valid: dict[str, int] = {}
    for name, parts in collected.items():
        values = np.concatenate(parts)
        valid = values[np.isfinite(values)] if np.isfinite(point[name][0]) else values[:0]
        n_valid[name] = len(valid)
        if len(valid):
            low, high = np.quantile(valid, [alpha, 1.0 - alpha])
            intervals[name] = (float(low), float(high))
        else:
            intervals[name] = (float("nan"), float("nan"))
    return Bootstrap(
        intervals=intervals,
        n_resamples=n_resamples,
        n_valid=n_valid,
        seed=seed,
        level=level,
        n_patients=len(np.unique(patient_ids)),
        n_scans=len(labels),
    )


@dataclass
class PatientResults:
    """The fold ensemble on patient level: one probability vector per patient (the mean over their scans)."""

    patient_ids: np.ndarray
    labels: np.ndarray
    probs: np.ndarray
    metrics: dict[str, float]  # keys patient/<PaperMetrics name>
    bootstrap: Bootstrap | None = None  # intervals under the same patient/ keys

    @property
    def n_patients(self) -> int:
        return len(self.labels)


def patient_results(
    patient_ids: np.ndarray,
    labels: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    positive_class: str,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> PatientResults:
    """The paper's metrics of patient-level probabilities (a patient's scans averaged, ``metrics_from_probabilities``,
    float64), and their bootstrap over patients (each patient one sample now). ValueError when a patient's scans
    carry two labels."""
    ids, labels, probs = patient_level(patient_ids, labels, probs, how="mean")
    ids, labels, probs = np.asarray(ids), np.asarray(labels, dtype=np.int64), np.asarray(probs, dtype=np.float64)
    with warnings.catch_warnings():  # a class absent from the test set: the scan level notes it once, in words
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        values = metrics_from_probabilities(probs, labels, class_names, positive_class)
    metrics = {PATIENT_PREFIX + k: v for k, v in values.items()}
    boot = None
    if n_resamples > 0:
        boot = patient_bootstrap(probs, labels, ids, class_names, positive_class, n_resamples, seed, level)
        boot.intervals = {PATIENT_PREFIX + k: v for k, v in boot.intervals.items()}
        boot.n_valid = {PATIENT_PREFIX + k: v for k, v in boot.n_valid.items()}
    return PatientResults(ids, labels, probs, metrics, boot)


@dataclass
class Calibration:
    """Brier score (mean over samples of the summed squared error) and expected calibration error."""

    brier: float
    ece: float
    n: int
    n_bins: int = ECE_BINS

    def as_dict(self) -> dict[str, float | int]:
        return {"brier": self.brier, "ece": self.ece, "n": self.n, "n_bins": self.n_bins}


def calibration(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> Calibration:
    """Calibration of probabilities (scans or patients)."""
    labels = np.asarray(labels, dtype=np.int64)
    return Calibration(
        brier=float(brier_score(probs, labels)),
        ece=float(expected_calibration_error(probs, labels, n_bins=n_bins)),
        n=len(labels),
        n_bins=n_bins,
    )

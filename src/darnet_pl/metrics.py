"""The paper's metrics, with the averaging spelled out in every name.

Label order CP=0, NCP (COVID-19)=1, Normal=2. Decisions are the argmax of the 3-class softmax, as in the authors'
code (scikit-learn's classification report over argmax predictions).

- ``2class/*``: COVID-19 vs the rest, one-vs-rest for the positive class: AUC from p(NCP); accuracy, sensitivity,
  specificity and F1 of the decision "argmax == NCP".
- ``3class/*``: ``auc_macro`` (one-vs-rest AUC averaged over classes), ``accuracy`` (fraction of scans whose argmax
  is right; the value the paper's Table IV reports in both blocks), ``accuracy_ovr_macro`` (one-vs-rest accuracy
  averaged over classes, as Table IV's caption words it), ``sensitivity_macro``, ``specificity_macro``,
  ``f1_macro``; and per class ``3class/<CLASS>/{auc,sensitivity,specificity,f1}``.

Undefined is not zero. On labels without some class (a tiny fold, a debug run, an external test set) that class's
AUC and sensitivity are 0/0: they are NaN, not 0, and so is its F1 when the class is not predicted either
(scikit-learn's ``zero_division=np.nan``). A class every scan belongs to has no AUC or specificity. Macro averages
are over the classes where the metric is defined (NaN only if it is defined for none), and ``PaperMetrics.compute``
says so in one ``UndefinedMetricWarning`` per computation, naming the classes.

The numbers are computed once, in numpy, for one evaluation or a batch of bootstrap resamples alike:
``rates_from_confusion`` (per-class rates of confusion matrices), ``metric_dict`` (every metric name, from per-class
arrays) and ``metrics_from_counts`` (both). ``PaperMetrics`` (training) and ``darnet_pl.stats`` (the
bootstraps of the report and darnet-evaluate) both go through them, so the two cannot disagree on a name or a
definition.

State lives in torchmetrics objects (a confusion matrix and the AUROC score buffers), so values are reduced
correctly across DDP processes.

Beyond the paper (computed from a whole test set's probabilities, in numpy):

- ``patient_level``: one row per patient from its scans' rows. ``how="mean"``: the mean of its scans' probability
  vectors. ``how="max"``: per class the maximum over its scans, then renormalised to sum 1 (so the result is a
  probability vector again and the Brier score, ECE and AUC stay meaningful; the decision is then the class with
  the most confident single scan). A patient's label is its scans' label; two labels is a ValueError.
  ``metrics_from_probabilities`` gives the paper's metric set (the same ``metric_dict`` keys) of such rows.
- ``brier_score``: the multi-class Brier score, the mean over rows of sum_k (p_k - [label == k])^2 (0 is perfect,
  a uniform 3-class prediction scores 2/3).
- ``expected_calibration_error``: top-label ECE with ``n_bins`` equal-width confidence bins, exactly torchmetrics'
  ``MulticlassCalibrationError(norm="l1")`` (bin ``i`` holds ``edge_i <= confidence < edge_i+1``, a confidence of
  exactly 1 an extra bin of its own).
- ``fit_temperature``: the temperature T > 0 minimising the NLL of ``softmax(logits / T)`` (temperature scaling,
  Guo et al. 2017), by LBFGS on log T; fit it on validation logits only.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import nn
from torch.nn import functional as F
from torchmetrics.classification import MulticlassAUROC, MulticlassConfusionMatrix
from torchmetrics.functional.classification import multiclass_auroc

# Per-class metrics that have a ``<block>/<CLASS>/<name>`` key and a ``<block>/<name>_macro`` average, in order.
PER_CLASS = ("auc", "sensitivity", "specificity", "f1")
# What ``metric_dict`` needs per class: the above and the one-vs-rest accuracy (macro-averaged, no per-class key).
PER_CLASS_INPUTS = (*PER_CLASS, "accuracy_ovr")
_WORDS = {"auc": "AUC", "sensitivity": "sensitivity", "specificity": "specificity", "f1": "F1"}
# patient_level's ways of combining a patient's scans
PATIENT_AGGREGATIONS = ("mean", "max")
# fit_temperature keeps T in this range (a validation set the model gets all right, or all wrong, pushes the NLL
# optimum to 0 or infinity)
TEMPERATURE_RANGE = (1e-2, 1e2)
# torchmetrics' words for a class absent from the AUROC targets; the NaN and our warning replace them
_TORCHMETRICS_NO_SAMPLES = r"No (positive|negative) samples in targets"


class UndefinedMetricWarning(UserWarning):
    """Some metric is 0/0 on these labels (typically a class absent from them): it is NaN, macro averages skip it."""


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den is 0 (the rate is undefined there), without numpy's division warnings."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def nan_macro(values: ArrayLike) -> np.ndarray:
    """Mean over the last axis (classes) of the defined values; NaN where none is (no 'Mean of empty slice')."""
    values = np.asarray(values, dtype=np.float64)
    defined = ~np.isnan(values)
    count = defined.sum(axis=-1)
    total = np.where(defined, values, 0.0).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)


def rates_from_confusion(confusion: ArrayLike | torch.Tensor) -> dict[str, np.ndarray]:
    """Per-class one-vs-rest rates of (true x predicted) confusion matrices, NaN where undefined.

    ``confusion`` has shape (..., K, K) (one matrix, or a batch of resamples); the per-class values have shape
    (..., K), ``accuracy`` has shape (...). Also ``support`` (scans of each class) and ``total``.
    """
    if isinstance(confusion, torch.Tensor):
        confusion = confusion.detach().cpu().double().numpy()
    confusion = np.asarray(confusion, dtype=np.float64)
    total = confusion.sum(axis=(-2, -1))
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    support = confusion.sum(axis=-1)  # scans of the class
    predicted = confusion.sum(axis=-2)  # scans predicted as the class
    fn = support - tp
    fp = predicted - tp
    tn = total[..., None] - tp - fn - fp
    sensitivity = _ratio(tp, support)  # NaN: the class is absent from the labels
    precision = _ratio(tp, predicted)  # NaN: the class is never predicted
    # 2PR / (P + R), where an undefined P or R (its tp is 0 then) counts as 0 and so gives F1 = 0; undefined only
    # when the class is neither in the labels nor predicted (scikit-learn: 2tp / (2tp + fp + fn) = 0/0).
    p0, r0 = np.nan_to_num(precision, nan=0.0), np.nan_to_num(sensitivity, nan=0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(p0 + r0 > 0, 2 * p0 * r0 / np.where(p0 + r0 > 0, p0 + r0, 1.0), 0.0)
    f1 = np.where(tp + fp + fn > 0, f1, np.nan)
    return {
        "sensitivity": sensitivity,
        "specificity": _ratio(tn, tn + fp),  # NaN: every scan is of the class
        "precision": precision,
        "f1": f1,
        "accuracy_ovr": _ratio(tp + tn, np.broadcast_to(total[..., None], tp.shape)),
        "accuracy": _ratio(tp.sum(axis=-1), total),
        "support": support,
        "total": total,
    }


def metric_dict(
    per_class: Mapping[str, ArrayLike | torch.Tensor],
    class_names: Sequence[str],
    positive_class: str,
    *,
    accuracy: ArrayLike | torch.Tensor,
) -> dict[str, np.ndarray]:
    """Every metric under its name, from per-class values: the one place the metric keys are spelled.

    ``per_class`` maps each of ``PER_CLASS_INPUTS`` to values of shape (..., K), K = len(class_names), NaN where
    undefined; ``accuracy`` (the multiclass accuracy) has shape (...). Each returned value has shape (...): the
    positive class's one-vs-rest numbers under ``2class/``, the macro averages (over the classes where the metric
    is defined) and the per-class values under ``<K>class/``.
    """
    names = tuple(class_names)
    if positive_class not in names:
        raise ValueError(f"positive class {positive_class!r} is not one of {names}")
    p = names.index(positive_class)
    values = {}
    for name in PER_CLASS_INPUTS:
        value = per_class[name]
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().double().numpy()
        values[name] = np.asarray(value, dtype=np.float64)
        if values[name].shape[-1:] != (len(names),):
            raise ValueError(f"per-class {name} has shape {values[name].shape}; its last axis must be {len(names)}")
    if isinstance(accuracy, torch.Tensor):
        accuracy = accuracy.detach().cpu().double().numpy()
    block = f"{len(names)}class"
    out = {
        "2class/auc": values["auc"][..., p],
        "2class/accuracy": values["accuracy_ovr"][..., p],
        "2class/sensitivity": values["sensitivity"][..., p],
        "2class/specificity": values["specificity"][..., p],
        "2class/f1": values["f1"][..., p],
        f"{block}/auc_macro": nan_macro(values["auc"]),
        f"{block}/accuracy": np.asarray(accuracy, dtype=np.float64),
        f"{block}/accuracy_ovr_macro": nan_macro(values["accuracy_ovr"]),
        f"{block}/sensitivity_macro": nan_macro(values["sensitivity"]),
        f"{block}/specificity_macro": nan_macro(values["specificity"]),
        f"{block}/f1_macro": nan_macro(values["f1"]),
    }
    for c, name in enumerate(names):
        for metric in PER_CLASS:
            out[f"{block}/{name}/{metric}"] = values[metric][..., c]
    return out


def metrics_from_counts(
    confusion: ArrayLike | torch.Tensor,
    auc: ArrayLike | torch.Tensor,
    class_names: Sequence[str],
    positive_class: str,
) -> dict[str, np.ndarray]:
    """``metric_dict`` of (..., K, K) confusion matrices and their (..., K) one-vs-rest AUCs.

    An AUC is set to NaN where its class has no scans or all of them (whatever the AUC routine returned there;
    torchmetrics returns 0).
    """
    rates = rates_from_confusion(confusion)
    if isinstance(auc, torch.Tensor):
        auc = auc.detach().cpu().double().numpy()
    support, total = rates["support"], rates["total"][..., None]
    auc = np.where((support > 0) & (support < total), np.asarray(auc, dtype=np.float64), np.nan)
    return metric_dict({**rates, "auc": auc}, class_names, positive_class, accuracy=rates["accuracy"])


def _join(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def undefined_metrics_message(
    values: Mapping[str, float], class_names: Sequence[str], support: Sequence[float], positive_class: str
) -> str | None:
    """One sentence naming every class with an undefined (NaN) metric in ``values`` (``metric_dict`` of one
    evaluation), why, and which classes each affected macro average uses; None when everything is defined."""
    names = tuple(class_names)
    block = f"{len(names)}class"
    total = float(sum(support))
    if total == 0:
        return "no labels: every metric is undefined (NaN)"
    clauses = []
    for c, name in enumerate(names):
        undefined = [m for m in PER_CLASS if np.isnan(values[f"{block}/{name}/{m}"])]
        if not undefined:
            continue
        if support[c] == 0:
            why = "is absent from the labels"
        elif support[c] == total:
            why = "is the only class in the labels"
        else:
            why = "has undefined metrics"
        also = " (so are the 2class ones)" if name == positive_class else ""
        what, verb = _join([_WORDS[m] for m in undefined]), "is" if len(undefined) == 1 else "are"
        clauses.append(f"class {name!r} {why}: its {what}{also} {verb} undefined (NaN)")
    if not clauses:
        return None
    uses: dict[tuple[str, ...], list[str]] = {}
    for m in PER_CLASS:
        used = tuple(name for name in names if not np.isnan(values[f"{block}/{name}/{m}"]))
        if len(used) < len(names):
            uses.setdefault(used, []).append(_WORDS[m])
    for used, metrics in uses.items():
        if used:
            clauses.append(f"macro {_join(metrics)} use {', '.join(used)}")
        else:
            clauses.append(f"macro {_join(metrics)} {'is' if len(metrics) == 1 else 'are'} undefined too")
    return "; ".join(clauses)


def _evaluation(
    confusion: ArrayLike | torch.Tensor,
    auc: ArrayLike | torch.Tensor,
    class_names: Sequence[str],
    positive_class: str,
    stacklevel: int,
) -> dict[str, float]:
    """``metrics_from_counts`` of one evaluation as floats, with one ``UndefinedMetricWarning`` if any is NaN."""
    values = metrics_from_counts(confusion, auc, class_names, positive_class)
    out = {key: float(value) for key, value in values.items()}
    if isinstance(confusion, torch.Tensor):
        confusion = confusion.detach().cpu().double().numpy()
    support = np.asarray(confusion, dtype=np.float64).sum(axis=1).tolist()
    message = undefined_metrics_message(out, class_names, support, positive_class)
    if message is not None:
        warnings.warn(message, UndefinedMetricWarning, stacklevel=stacklevel)
    return out


class PaperMetrics(nn.Module):
    """Accumulates logits and labels over an epoch and computes the paper's two- and three-class metrics."""

    def __init__(self, class_names: Sequence[str], positive_class: str = "NCP") -> None:
        super().__init__()
        self.class_names = tuple(class_names)
        if positive_class not in self.class_names:
            raise ValueError(f"positive class {positive_class!r} is not one of {self.class_names}")
        self.positive_class = positive_class
        self.positive_index = self.class_names.index(positive_class)
        n = len(self.class_names)
        self.confusion = MulticlassConfusionMatrix(num_classes=n)
        # 2class/auc is this AUC of the positive class (one-vs-rest on p(positive), as a BinaryAUROC would give).
        self.auroc_per_class = MulticlassAUROC(num_classes=n, average=None, thresholds=None)

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        probs = logits.detach().float().softmax(dim=1)
        target = target.long()
        self.confusion.update(probs.argmax(dim=1), target)
        self.auroc_per_class.update(probs, target)

    def compute(self) -> dict[str, float]:
        """The metrics as floats, NaN where undefined, with one ``UndefinedMetricWarning`` if any is."""
        confusion = self.confusion.compute()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_TORCHMETRICS_NO_SAMPLES)
            auc = self.auroc_per_class.compute()
        return _evaluation(confusion, auc, self.class_names, self.positive_class, stacklevel=3)

    def reset(self) -> None:
        self.confusion.reset()
        self.auroc_per_class.reset()


def _rows(probs: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) float64 probabilities and (N,) int64 labels, checked against each other."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64, copy=False).reshape(-1)
    if probs.ndim != 2:
        raise ValueError(f"probabilities have shape {probs.shape}; expected (N, K)")
    if len(probs) != len(labels):
        raise ValueError(f"{len(probs)} probability rows but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ValueError(f"labels must be class indices 0..{probs.shape[1] - 1}; got {labels.min()}..{labels.max()}")
    return probs, labels


def patient_level(
    patient_ids: Sequence[str] | np.ndarray, labels: ArrayLike, probs: ArrayLike, how: str = "mean"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One row per patient, in the order patients first appear: (patient ids, labels, (P, K) probabilities).

    ``how="mean"``: the mean of the patient's scans' probability vectors; ``how="max"``: per class the maximum over
    its scans, renormalised to sum 1. Raises ValueError naming the patient if its scans carry two labels.
    """
    if how not in PATIENT_AGGREGATIONS:
        raise ValueError(f"patient aggregation {how!r}: expected one of {', '.join(PATIENT_AGGREGATIONS)}")
    probs, labels = _rows(probs, labels)
    ids = np.asarray([str(p) for p in patient_ids], dtype=str)
    if len(ids) != len(labels):
        raise ValueError(f"{len(ids)} patient ids but {len(labels)} labels")
    k = probs.shape[1]
    if not len(ids):
        return ids, labels.copy(), np.zeros((0, k))
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # unique (sorted) index -> appearance rank
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    group = rank[inverse.reshape(-1)]
    n = len(order)
    out_ids = ids[first[order]]
    lowest = np.full(n, np.iinfo(np.int64).max)
    highest = np.full(n, np.iinfo(np.int64).min)
    np.minimum.at(lowest, group, labels)
    np.maximum.at(highest, group, labels)
    mixed = np.flatnonzero(lowest != highest)
    if len(mixed):
        patient = str(out_ids[mixed[0]])
        found = sorted(set(labels[group == mixed[0]].tolist()))
        more = f" (and {len(mixed) - 1} more patient(s))" if len(mixed) > 1 else ""
        raise ValueError(f"patient {patient!r} has scans labelled {found}: one label per patient{more}")
    if how == "mean":
        total = np.zeros((n, k))
        np.add.at(total, group, probs)
        out = total / np.bincount(group, minlength=n)[:, None]
    else:
        out = np.full((n, k), -np.inf)
        np.maximum.at(out, group, probs)
        sums = out.sum(axis=1, keepdims=True)
        out = np.divide(out, sums, out=np.full_like(out, 1.0 / k), where=sums > 0)
    return out_ids, lowest, out


def metrics_from_probabilities(
    probs: ArrayLike, labels: ArrayLike, class_names: Sequence[str], positive_class: str
) -> dict[str, float]:
    """The paper's metrics (``metric_dict`` keys) of rows of probabilities, e.g. ``patient_level``'s; decisions are
    the argmax. NaN where undefined, with one ``UndefinedMetricWarning`` if any is (as ``PaperMetrics``)."""
    probs, labels = _rows(probs, labels)
    k = len(tuple(class_names))
    if probs.shape[1] != k:
        raise ValueError(f"probabilities have {probs.shape[1]} columns for {k} classes")
    confusion = np.zeros((k, k))
    np.add.at(confusion, (labels, probs.argmax(axis=1)), 1.0)
    if len(labels):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_TORCHMETRICS_NO_SAMPLES)
            auc = multiclass_auroc(
                torch.from_numpy(probs), torch.from_numpy(labels), num_classes=k, average=None, thresholds=None
            )
    else:
        auc = np.full(k, np.nan)
    return _evaluation(confusion, auc, class_names, positive_class, stacklevel=3)


def brier_score(probs: ArrayLike, labels: ArrayLike) -> float:
    """Multi-class Brier score: mean over rows of sum_k (p_k - [label == k])^2; NaN for no rows."""
    probs, labels = _rows(probs, labels)
    if not len(labels):
        return float("nan")
    onehot = np.eye(probs.shape[1])[labels]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def expected_calibration_error(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> float:
    """Top-label expected calibration error over ``n_bins`` equal-width confidence bins (torchmetrics'
    ``MulticlassCalibrationError(norm="l1")``): sum over bins of |accuracy - mean confidence| x fraction of rows."""
    probs, labels = _rows(probs, labels)
    if int(n_bins) < 1:
        raise ValueError(f"n_bins={n_bins}: expected a positive integer")
    if not len(labels):
        return float("nan")
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    bins = np.searchsorted(edges, confidence, side="right") - 1  # edge_i <= c < edge_i+1; c == 1: bin n_bins
    size = int(n_bins) + 1
    gap = np.bincount(bins, weights=correct, minlength=size) - np.bincount(bins, weights=confidence, minlength=size)
    return float(np.abs(gap).sum() / len(labels))


def fit_temperature(logits: ArrayLike | torch.Tensor, labels: ArrayLike | torch.Tensor, max_iter: int = 100) -> float:
    """The T > 0 minimising the mean NLL of ``softmax(logits / T)`` (LBFGS on log T, float64), within
    ``TEMPERATURE_RANGE``; 1.0 for no rows. Fit on validation logits only, never on the test set."""
    if isinstance(logits, torch.Tensor):
        logits = logits.detach().cpu().double().numpy()
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    values, targets = _rows(logits, labels)
    if not len(targets):
        return 1.0
    z = torch.from_numpy(values)
    y = torch.from_numpy(targets)
    low, high = (float(np.log(t)) for t in TEMPERATURE_RANGE)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(z / log_t.clamp(low, high).exp(), y)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    return float(np.clip(temperature, *TEMPERATURE_RANGE)) if not np.isnan(temperature) else 1.0

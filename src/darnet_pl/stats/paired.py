"""Two models compared on the same test scans: the difference of their metrics with a paired patient-level
bootstrap interval, and DeLong's test for the difference of their AUCs.

Paired: every resample draws one set of patients (with all their scans) and scores both models on it, so the
interval is of the difference itself, not of two independent intervals (which would ignore that both models face
the same hard and easy patients). The difference is always A - B.

DeLong's test (``darnet_pl.stats.delong``, its variance clustered by patient) is on the scores the paper's AUCs
use: p(positive class) for ``2class/auc``, and p(class) one-vs-rest for each class's ``<K>class/<CLASS>/auc``. The
K-class macro AUC (the mean of those) has the bootstrap interval only: its estimate mixes K one-vs-rest AUCs whose
covariances DeLong's test does not give. The p-values are not adjusted for multiple comparisons.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from darnet_pl.stats.bootstrap import percentile_interval, weight_chunks
from darnet_pl.stats.delong import DeLong, delong_test
from darnet_pl.stats.scoring import as_paper_sees_them, paper_metrics, weighted_metrics

COMPARED = ("2class/auc", "{block}/auc_macro", "{block}/accuracy")
"""The metrics compared by default ({block}: ``3class`` for three classes): the AUCs of both Table IV blocks and the
accuracy (the fraction of scans classified right, the accuracy Table IV prints in both blocks)."""


@dataclass(frozen=True)
class Difference:
    """One metric of both models and their difference A - B with its paired bootstrap interval."""

    a: float
    b: float
    difference: float
    interval: tuple[float, float]
    n_valid: int  # resamples where the metric was defined for both models

    def as_dict(self) -> dict[str, object]:
        return {
            "a": self.a,
            "b": self.b,
            "difference": self.difference,
            "ci": list(self.interval),
            "ci_valid_resamples": self.n_valid,
        }


@dataclass
class PairedComparison:
    """Model A against model B on the same scans."""

    differences: dict[str, Difference]
    delong: dict[str, DeLong]  # "2class/auc" and "<K>class/<CLASS>/auc"
    n_scans: int
    n_patients: int
    n_resamples: int
    seed: int
    level: float
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """Plain values (JSON, W&B): metrics, DeLong's tests, and how the interval was made."""
        return {
            "n_scans": self.n_scans,
            "n_patients": self.n_patients,
            "metrics": {key: d.as_dict() for key, d in self.differences.items()},
            "delong": {key: t.as_dict() | {"clustered_by": "patient"} for key, t in self.delong.items()},
            "bootstrap": {
                "resamples": self.n_resamples,
                "seed": self.seed,
                "level": self.level,
                "unit": "patient",
                "paired": True,
                "method": "percentile",
            },
            "notes": list(self.notes),
        }


def compared_keys(class_names: Sequence[str]) -> tuple[str, ...]:
    block = f"{len(class_names)}class"
    return tuple(key.format(block=block) for key in COMPARED)


def paired_comparison(
    probs_a: np.ndarray,
    probs_b: np.ndarray,
    labels: np.ndarray,
    patient_ids: np.ndarray,
    class_names: Sequence[str],
    positive_class: str,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    keys: Sequence[str] | None = None,
) -> PairedComparison:
    """Model A (``probs_a``, (N, K)) against model B (``probs_b``) on the same N scans, row i of both being scan i
    (label ``labels[i]``, patient ``patient_ids[i]``): for each metric of ``keys`` (default ``COMPARED``, any
    PaperMetrics name) both values, A - B and its paired bootstrap interval (none with ``n_resamples=0``); DeLong's
    test for ``2class/auc`` and each class's one-vs-rest AUC, clustered by patient."""
    probs_a, probs_b = np.asarray(probs_a, dtype=np.float64), np.asarray(probs_b, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    patient_ids = np.asarray(patient_ids).reshape(-1)
    if probs_a.shape != probs_b.shape or len(labels) != len(probs_a) or len(patient_ids) != len(labels):
        raise ValueError(
            f"paired comparison needs the same scans in the same order: probabilities {probs_a.shape} and "
            f"{probs_b.shape}, {len(labels)} labels, {len(patient_ids)} patient ids"
        )
    keys = tuple(keys) if keys is not None else compared_keys(class_names)
    notes: list[str] = []
    point_a = paper_metrics(probs_a, labels, class_names, positive_class, notes=notes)
    point_b = paper_metrics(probs_b, labels, class_names, positive_class)
    seen_a, seen_b = as_paper_sees_them(probs_a), as_paper_sees_them(probs_b)
    collected: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    for weights in weight_chunks(patient_ids, n_resamples, seed):
        values_a = weighted_metrics(seen_a, labels, weights, class_names, positive_class)
        values_b = weighted_metrics(seen_b, labels, weights, class_names, positive_class)
        for key in keys:
            collected[key].append(values_a[key] - values_b[key])
    differences = {}
    for key in keys:
        point = point_a[key] - point_b[key]
        if n_resamples > 0:
            interval, n_valid = percentile_interval(np.concatenate(collected[key]), point, level)
        else:
            interval, n_valid = (float("nan"), float("nan")), 0
        differences[key] = Difference(point_a[key], point_b[key], point, interval, n_valid)
    positive = list(class_names).index(positive_class)
    block = f"{len(class_names)}class"
    delong = {"2class/auc": delong_test(seen_a[:, positive], seen_b[:, positive], labels == positive, patient_ids)}
    for c, name in enumerate(class_names):
        delong[f"{block}/{name}/auc"] = delong_test(seen_a[:, c], seen_b[:, c], labels == c, patient_ids)
    return PairedComparison(
        differences=differences,
        delong=delong,
        n_scans=len(labels),
        n_patients=len(np.unique(patient_ids)),
        n_resamples=n_resamples,
        seed=seed,
        level=level,
        notes=notes,
    )

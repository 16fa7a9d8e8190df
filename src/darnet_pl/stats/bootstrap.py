"""The patient-level bootstrap: percentile intervals of the paper's metrics, resampling patients with all their
scans (scans of one patient are not independent: resampling scans would give intervals that are too narrow).

Undefined metrics (a class absent from the test set: its AUC, sensitivity, maybe F1) are NaN in the point estimate
and in every resample; a percentile interval is over the resamples where the metric is defined (``n_valid``), and
NaN where the point estimate is NaN. ``resample_weights`` and ``percentile_interval`` are shared with the paired
comparison and the stratified metrics, so all three resample and summarise the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from darnet_pl.stats.scoring import as_paper_sees_them, weighted_metrics

CHUNK = 250
"""Resamples processed at a time (memory: CHUNK x scans floats per array)."""


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
    return counts[:, scan_patient.reshape(-1)].astype(np.float64)


def weight_chunks(patient_ids: np.ndarray, n_resamples: int, seed: int, chunk: int = CHUNK):
    """``n_resamples`` patient resamples as ``resample_weights``, ``chunk`` at a time, from one generator seeded
    with ``seed`` (the same seed, the same resamples)."""
    rng = np.random.default_rng(seed)
    for start in range(0, n_resamples, chunk):
        yield resample_weights(np.asarray(patient_ids), min(chunk, n_resamples - start), rng)


def percentile_interval(values: np.ndarray, point: float, level: float) -> tuple[tuple[float, float], int]:
    """The central ``level`` percentile interval of the finite ``values`` and how many there are; (NaN, NaN) and
    0 where the point estimate is undefined or no resample is."""
    valid = values[np.isfinite(values)] if np.isfinite(point) else values[:0]
    if not len(valid):
        return (float("nan"), float("nan")), 0
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(valid, [alpha, 1.0 - alpha])
    return (float(low), float(high)), len(valid)


def patient_bootstrap(
    probs: np.ndarray,
    labels: np.ndarray,
    patient_ids: np.ndarray,
    class_names: Sequence[str],
    positive_class: str,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    chunk: int = CHUNK,
) -> Bootstrap:
    """Percentile ``level`` intervals of every PaperMetrics number, resampling patients with all their scans.

    Resamples where a metric is undefined (NaN: e.g. no scan of a class drawn) are left out of its interval and
    ``n_valid`` counts the others; a metric undefined on the whole set has the interval (NaN, NaN).

    Resamples are processed ``chunk`` at a time (memory B x N), so 1000 resamples of ~1000 scans take well under a
    second; the same ``seed`` gives the same intervals.
    """
    probs = as_paper_sees_them(probs)
    labels = np.asarray(labels, dtype=np.int64)
    collected: dict[str, list[np.ndarray]] = {}
    for weights in weight_chunks(patient_ids, n_resamples, seed, chunk):
        for name, values in weighted_metrics(probs, labels, weights, class_names, positive_class).items():
            collected.setdefault(name, []).append(values)
    # The point estimate, by the same computation at unit weights: a metric undefined on all the data gets no
    # interval (it is undefined in every resample as well: a resample only repeats patients).
    point = weighted_metrics(probs, labels, np.ones((1, len(labels))), class_names, positive_class)
    intervals: dict[str, tuple[float, float]] = {}
    n_valid: dict[str, int] = {}
    for name, parts in collected.items():
        intervals[name], n_valid[name] = percentile_interval(np.concatenate(parts), point[name][0], level)
    return Bootstrap(
        intervals=intervals,
        n_resamples=n_resamples,
        n_valid=n_valid,
        seed=seed,
        level=level,
        n_patients=len(np.unique(patient_ids)),
        n_scans=len(labels),
    )

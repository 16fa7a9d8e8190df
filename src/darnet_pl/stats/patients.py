"""Results on patient level: one probability vector per patient (``darnet_pl.metrics.patient_level``: the mean of
their scans'), the same metrics there, keys prefixed ``patient/``, and their bootstrap over patients."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from darnet_pl.metrics import UndefinedMetricWarning, metrics_from_probabilities, patient_level
from darnet_pl.stats.bootstrap import Bootstrap, patient_bootstrap

PATIENT_PREFIX = "patient/"


@dataclass
class PatientResults:
    """Probabilities on patient level: one vector per patient (the mean over their scans)."""

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

"""Statistics on predictions, in one place: the paper's metrics of probabilities (``scoring``), patient-level
bootstrap intervals (``bootstrap``), patient-level results (``patients``), calibration (``reliability``), two
models compared on the same scans (``paired``: differences with a paired bootstrap interval; ``delong``: DeLong's
test for two correlated AUCs) and metrics within the scans that have a property and those that do not
(``strata``).

Plain numpy in, numbers out: it sits on ``darnet_pl.metrics`` and below everything that reports numbers
(``darnet-report``, ``darnet-evaluate``, the audit, W&B). Resampling is always by patient, with all their scans.
"""

from darnet_pl.stats.bootstrap import Bootstrap, patient_bootstrap, percentile_interval, resample_weights
from darnet_pl.stats.delong import DeLong, delong_test
from darnet_pl.stats.paired import Difference, PairedComparison, compared_keys, paired_comparison
from darnet_pl.stats.patients import PATIENT_PREFIX, PatientResults, patient_results
from darnet_pl.stats.reliability import ECE_BINS, Calibration, calibration
from darnet_pl.stats.scoring import (
    as_paper_sees_them,
    paper_metrics,
    probs_to_logits,
    weighted_auc,
    weighted_metrics,
)
from darnet_pl.stats.strata import stratified_metrics

__all__ = [
    "ECE_BINS",
    "PATIENT_PREFIX",
    "Bootstrap",
    "Calibration",
    "DeLong",
    "Difference",
    "PairedComparison",
    "PatientResults",
    "as_paper_sees_them",
    "calibration",
    "compared_keys",
    "delong_test",
    "paired_comparison",
    "paper_metrics",
    "patient_bootstrap",
    "patient_results",
    "percentile_interval",
    "probs_to_logits",
    "resample_weights",
    "stratified_metrics",
    "weighted_auc",
    "weighted_metrics",
]

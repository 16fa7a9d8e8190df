"""The patient-level bootstrap (``darnet_pl.stats.bootstrap``): its resampled metrics are PaperMetrics' at unit
weights and with repeated scans, its intervals hold the estimate, narrow with more patients, and are fast."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from darnet_pl.stats import as_paper_sees_them, paper_metrics, patient_bootstrap, weighted_auc, weighted_metrics
from tests.helpers.report_jobs import CLASSES, cohort, model_probs

TABLE_KEYS = (
    "2class/auc",
    "2class/accuracy",
    "2class/sensitivity",
    "2class/specificity",
    "2class/f1",
    "3class/auc_macro",
    "3class/accuracy",
    "3class/sensitivity_macro",
    "3class/specificity_macro",
    "3class/f1_macro",
)


def test_bootstrap_metrics_equal_paper_metrics_at_unit_weights() -> None:
    scans = cohort(30, seed=3)
    labels = np.array([s[2] for s in scans])
    probs = np.round(model_probs(scans, seed=4, strength=1.0), 2)  # rounded: many tied scores
    probs /= probs.sum(axis=1, keepdims=True)
    # ties are handled as scikit-learn does (half a win)
    for c in range(3):
        auc = weighted_auc(probs[:, c], labels == c, np.ones((1, len(labels))))
        assert auc[0] == pytest.approx(roc_auc_score(labels == c, probs[:, c]), abs=1e-12)
    # the bootstrap sees the probabilities as PaperMetrics does (float32 softmax of log p): identical numbers
    seen = as_paper_sees_them(probs)
    got = weighted_metrics(seen, labels, np.ones((2, len(labels))), CLASSES, "NCP")
    for key, value in paper_metrics(probs, labels, CLASSES, "NCP").items():
        np.testing.assert_allclose(got[key], value, atol=1e-6, err_msg=key)
    # integer weights mean repeated scans
    weights = np.random.default_rng(0).integers(0, 3, size=len(labels))
    repeated = np.repeat(np.arange(len(labels)), weights)
    got = weighted_metrics(seen, labels, weights[None].astype(float), CLASSES, "NCP")
    for key, value in paper_metrics(probs[repeated], labels[repeated], CLASSES, "NCP").items():
        np.testing.assert_allclose(got[key], value, atol=1e-6, err_msg=key)


def test_bootstrap_intervals_contain_the_estimate_narrow_with_more_patients_and_are_fast() -> None:
    widths = {}
    for per_class in (25, 160):
        scans = cohort(per_class, seed=1)
        labels = np.array([s[2] for s in scans])
        patients = np.array([s[0] for s in scans])
        probs = model_probs(scans, seed=2, strength=1.5)
        start = time.perf_counter()
        boot = patient_bootstrap(probs, labels, patients, CLASSES, "NCP", n_resamples=1000, seed=7)
        elapsed = time.perf_counter() - start
        point = paper_metrics(probs, labels, CLASSES, "NCP")
        for key in TABLE_KEYS:
            low, high = boot.intervals[key]
            assert low <= point[key] <= high, key
        widths[per_class] = {k: np.subtract(*boot.intervals[k][::-1]) for k in TABLE_KEYS}
        if per_class == 160:
            assert len(labels) > 900 and elapsed < 10.0, (len(labels), elapsed)
    for key in TABLE_KEYS:
        assert widths[160][key] < widths[25][key], key
    again = patient_bootstrap(probs, labels, patients, CLASSES, "NCP", n_resamples=1000, seed=7)
    assert again.intervals == boot.intervals

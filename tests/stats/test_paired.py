"""Two models compared on the same scans (``darnet_pl.stats.paired``): the differences are those of PaperMetrics
computed separately, the interval is paired (one set of resampled patients for both models), DeLong's tests are
those of ``delong_test`` on the scores the AUCs use."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from darnet_pl.stats import delong_test, paired_comparison, patient_bootstrap
from tests.helpers.report_jobs import CLASSES, cohort, model_probs, reference_metrics


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


KEYS = ("2class/auc", "3class/auc_macro", "3class/accuracy")
RESAMPLES = 200


@pytest.fixture(scope="module")
def scans() -> tuple[np.ndarray, np.ndarray]:
    rows = cohort(30, seed=11)
    return np.array([r[2] for r in rows]), np.array([r[0] for r in rows])


def test_differences_are_of_separately_computed_metrics(scans) -> None:
    labels, patients = scans
    rows = cohort(30, seed=11)
    a, b = model_probs(rows, seed=1, strength=2.4), model_probs(rows, seed=2, strength=1.4)
    result = paired_comparison(a, b, labels, patients, CLASSES, "NCP", n_resamples=RESAMPLES, seed=0)
    assert tuple(result.differences) == KEYS
    ref_a, ref_b = reference_metrics(a, labels), reference_metrics(b, labels)
    for key in KEYS:
        d = result.differences[key]
        assert (d.a, d.b) == pytest.approx((ref_a[key], ref_b[key]), abs=1e-12), key
        assert d.difference == pytest.approx(ref_a[key] - ref_b[key], abs=1e-12), key
        low, high = d.interval
        assert low <= d.difference <= high and d.n_valid == RESAMPLES, key
    assert result.differences["2class/auc"].a == pytest.approx(roc_auc_score(labels == 1, a[:, 1]), abs=1e-6)
    assert result.differences["3class/accuracy"].difference > 0  # the stronger model is ahead
    assert (result.n_scans, result.n_patients) == (len(labels), len(set(patients)))


def test_the_interval_is_paired(scans) -> None:
    """Both models face the same resampled patients: swapping them mirrors the interval exactly, a model against
    itself differs by exactly 0 in every resample, and for two similar models (as ablation variants are) the
    paired interval is far narrower than the two models' own intervals put together as if they were independent."""
    labels, patients = scans
    rows = cohort(30, seed=11)
    a = model_probs(rows, seed=1, strength=2.0)
    b = softmax(np.log(a) + np.random.default_rng(3).normal(0, 0.3, a.shape))
    ab = paired_comparison(a, b, labels, patients, CLASSES, "NCP", n_resamples=RESAMPLES, seed=5)
    ba = paired_comparison(b, a, labels, patients, CLASSES, "NCP", n_resamples=RESAMPLES, seed=5)
    same = paired_comparison(a, a, labels, patients, CLASSES, "NCP", n_resamples=RESAMPLES, seed=5)
    boot_a = patient_bootstrap(a, labels, patients, CLASSES, "NCP", n_resamples=RESAMPLES, seed=5)
    boot_b = patient_bootstrap(b, labels, patients, CLASSES, "NCP", n_resamples=RESAMPLES, seed=6)
    for key in KEYS:
        low, high = ab.differences[key].interval
        assert ba.differences[key].interval == pytest.approx((-high, -low), abs=1e-12), key
        assert same.differences[key].interval == (0.0, 0.0) and same.differences[key].difference == 0.0
        unpaired = math.hypot(*(np.subtract(*boot.intervals[key][::-1]) for boot in (boot_a, boot_b)))
        assert high - low < 0.6 * unpaired, (key, high - low, unpaired)
    assert same.delong["2class/auc"].p == 1.0


def test_delong_is_on_the_scores_of_the_table_auc_and_clustered_by_patient(scans) -> None:
    labels, patients = scans
    rows = cohort(30, seed=11)
    a, b = model_probs(rows, seed=1, strength=2.4), model_probs(rows, seed=2, strength=1.0)
    result = paired_comparison(a, b, labels, patients, CLASSES, "NCP", n_resamples=0)
    assert math.isnan(result.differences["2class/auc"].interval[0])  # no resamples, no interval
    assert set(result.delong) == {"2class/auc", "3class/CP/auc", "3class/NCP/auc", "3class/Normal/auc"}
    test = result.delong["2class/auc"]
    assert test.auc_a == pytest.approx(result.differences["2class/auc"].a, abs=1e-6)
    expected = delong_test(a[:, 1], b[:, 1], labels == 1, patients)
    assert test.z == pytest.approx(expected.z, rel=1e-4) and test.n_clusters == len(set(patients))
    assert test.p < 0.05 and result.delong["3class/Normal/auc"].difference > 0
    payload = result.as_dict()
    assert payload["delong"]["2class/auc"]["clustered_by"] == "patient"
    assert payload["metrics"]["3class/accuracy"]["ci_valid_resamples"] == 0


def test_refuses_unaligned_inputs(scans) -> None:
    labels, patients = scans
    probs = np.full((len(labels), 3), 1 / 3)
    with pytest.raises(ValueError, match="the same scans in the same order"):
        paired_comparison(probs, probs[:-1], labels, patients, CLASSES, "NCP", n_resamples=10)

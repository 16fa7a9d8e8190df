"""DeLong's test (``darnet_pl.stats.delong``) against two references that share none of its code.

1. A published worked example: the pROC R package (Robin et al. 2011, BMC Bioinformatics 12:77) compares the ROC
   curves of the ``aSAH`` data (113 patients after aneurysmal subarachnoid haemorrhage; Turck et al. 2010,
   Intensive Care Med 36:107-115) by DeLong's test, ``roc.test(roc(outcome, wfns), roc(outcome, s100b))`` and
   the other pairs; ``asah.csv`` beside this file is that data (outcome, wfns, s100b, ndka; read from pROC's
   ``data/aSAH.RData``) and the expected Z, p and 95% interval of the difference are those pROC's own test suite
   asserts (``tests/testthat/test-roc.test.R``: "roc.test statistic and p are as expected with defaults").
2. An O(n^2) implementation written for the tests from the papers' formulas (``tests.helpers.delong_reference``):
   the Mann-Whitney kernel psi(x, y) over every positive-negative pair (DeLong et al. 1988, Biometrics
   44:837-845), and for patients with several samples the per-cluster sums of Obuchowski (1997, Biometrics
   53:567-578), in plain loops.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from darnet_pl.stats import delong_test
from tests.helpers.delong_reference import kernel_delong

ASAH = Path(__file__).with_name("asah.csv")

# pROC's tests/testthat/test-roc.test.R, roc.test(r.A, r.B) with the defaults (DeLong, two-sided, 95%):
# (A, B, Z, p, conf.int low, conf.int high); r.wfns's AUC is 0.8237, r.s100b's 0.7314, r.ndka's 0.6120.
PROC = (
    ("wfns", "s100b", 2.20898359144091, 0.0271757822291882, 0.0104061769564846, 0.174214419249478),
    ("wfns", "ndka", 2.79777591868904, 0.00514557970691098, 0.0634011709339876, 0.3600405634833566),
    ("ndka", "s100b", -1.39077002573558, 0.164295175223054, -0.2876917446341914, 0.0488706064228094),
)


def read_asah() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    with ASAH.open() as handle:
        rows = list(csv.DictReader(handle))
    poor = np.array([row["outcome"] == "Poor" for row in rows])  # pROC's cases: the second level, "Poor"
    return poor, {name: np.array([float(row[name]) for row in rows]) for name in ("wfns", "s100b", "ndka")}


@pytest.mark.parametrize(("a", "b", "z", "p", "low", "high"), PROC, ids=[f"{a}-{b}" for a, b, *_ in PROC])
def test_matches_proc_on_the_asah_data(a: str, b: str, z: float, p: float, low: float, high: float) -> None:
    poor, scores = read_asah()
    assert len(poor) == 113 and poor.sum() == 41
    result = delong_test(scores[a], scores[b], poor)
    assert result.z == pytest.approx(z, rel=1e-10)
    assert result.p == pytest.approx(p, rel=1e-10)
    assert result.interval(0.95) == pytest.approx((low, high), rel=1e-10)
    assert (result.n_positive, result.n_negative, result.n_clusters) == (41, 72, 113)
    swapped = delong_test(scores[b], scores[a], poor)  # pROC: reversing the curves flips Z, keeps p
    assert swapped.z == pytest.approx(-z, rel=1e-10) and swapped.p == pytest.approx(p, rel=1e-10)


def test_identical_models_have_no_difference() -> None:
    """pROC's test "DeLong roc.test works when curves are identical": Z = 0, p = 1."""
    poor, scores = read_asah()
    result = delong_test(scores["wfns"], scores["wfns"], poor)
    assert (result.z, result.p, result.se, result.difference) == (0.0, 1.0, 0.0, 0.0)


def patients(n_patients: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two correlated, tied (rounded) scores of 1-3 scans per patient; one label per patient."""
    rng = np.random.default_rng(seed)
    per = rng.integers(1, 4, size=n_patients)
    ids = np.repeat(np.arange(n_patients), per)
    label = np.repeat(rng.random(n_patients) < 0.4, per)
    shared = np.repeat(rng.normal(size=n_patients), per) + 1.2 * label
    a = np.round(shared + rng.normal(0, 0.7, len(ids)), 1)
    b = np.round(shared + rng.normal(0, 1.0, len(ids)) - 0.3 * label, 1)
    return a, b, label, ids


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_the_kernel_computation_with_ties_and_clusters(seed: int) -> None:
    a, b, positive, ids = patients(40, seed)
    # every scan its own cluster (plain DeLong, no clusters given), then clustered by patient
    for clusters, given in ((np.arange(len(ids)), None), (ids, ids)):
        difference, se = kernel_delong(a, b, positive, clusters)
        result = delong_test(a, b, positive, given)
        assert result.difference == pytest.approx(difference, abs=1e-12)
        assert result.se == pytest.approx(se, rel=1e-10)
        assert result.z == pytest.approx(difference / se, rel=1e-10)
        assert result.p == pytest.approx(math.erfc(abs(difference / se) / math.sqrt(2)), rel=1e-9)


def test_a_patient_scanned_twice_is_still_one_patient() -> None:
    """Every sample duplicated (each patient's scan taken twice, scored alike): clustered by patient, the standard
    error is the one of the original data; treating the copies as independent would shrink it by about 1/sqrt(2)."""
    a, b, positive, _ = patients(60, seed=3)
    once = delong_test(a, b, positive)
    ids = np.arange(len(a))
    twice = np.concatenate([ids, ids])
    clustered = delong_test(np.tile(a, 2), np.tile(b, 2), np.tile(positive, 2), twice)
    naive = delong_test(np.tile(a, 2), np.tile(b, 2), np.tile(positive, 2))
    assert clustered.difference == pytest.approx(once.difference, abs=1e-12)
    assert clustered.se == pytest.approx(once.se, rel=1e-10)
    assert naive.se == pytest.approx(once.se / math.sqrt(2), rel=0.05)
    assert naive.p < clustered.p


def test_undefined_without_both_classes() -> None:
    scores = np.array([0.1, 0.4, 0.8])
    result = delong_test(scores, scores[::-1], np.array([False, False, False]))
    assert math.isnan(result.auc_a) and math.isnan(result.p) and result.n_positive == 0
    one_positive = delong_test(scores, scores[::-1], np.array([True, False, False]))  # no variance over positives
    assert (one_positive.auc_a, one_positive.auc_b) == (0.0, 1.0)
    assert math.isnan(one_positive.se) and math.isnan(one_positive.p)
    with pytest.raises(ValueError, match="3 scores but 2 labels"):
        delong_test(scores, scores, np.array([True, False]))

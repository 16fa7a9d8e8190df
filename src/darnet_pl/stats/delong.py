"""DeLong's test for the difference of two correlated ROC AUCs: two models scored on the same samples.

DeLong, DeLong & Clarke-Pearson (1988), Biometrics 44:837-845, computed with the fast algorithm of Sun & Xu (2014),
IEEE Signal Processing Letters 21(11):1389-1393: each model's placement values ("structural components") come from
three midrank computations (positives, negatives, both together) instead of the m x n Mann-Whitney kernel:

- for a positive x_i: V10(x_i) = (share of negatives below x_i, ties 1/2) = (Tz_i - Tx_i) / n;
- for a negative y_j: V01(y_j) = (share of positives above y_j, ties 1/2) = 1 - (Tz_j - Ty_j) / m;
- AUC = mean of V10 = mean of V01, and the variance of a difference of AUCs follows from the covariances of the
  components: var(A - B) = var(V10_A - V10_B) / m + var(V01_A - V01_B) / n.

Samples that are not independent (the scans of one patient) are handled by Obuchowski's (1997, Biometrics
53:567-578) clustered form of the same variance: components are summed per cluster (patient) and the variance is
taken over clusters. With one sample per cluster it is DeLong's variance exactly (``clusters=None``). The tests
check both against the pROC package's published results and against an O(n^2) kernel implementation.

The test is two-sided, z = (AUC_A - AUC_B) / se, p = P(|N(0,1)| >= |z|); two identical models give z = 0, p = 1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import norm, rankdata

NAN = float("nan")


@dataclass(frozen=True)
class DeLong:
    """DeLong's test of AUC_A - AUC_B; NaN throughout where undefined (no positives or no negatives, or fewer than
    two clusters of either)."""

    auc_a: float
    auc_b: float
    difference: float  # auc_a - auc_b
    se: float  # standard error of the difference
    z: float
    p: float  # two-sided
    n_positive: int
    n_negative: int
    n_clusters: int  # independent units the variance is taken over (samples when not clustered)

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """The normal-approximation interval of the difference (as pROC's ``roc.test`` reports it)."""
        half = float(norm.ppf(0.5 + level / 2.0)) * self.se
        return (self.difference - half, self.difference + half)

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def placements(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(AUC (k,), V10 (k, m), V01 (k, n)) of k score rows (k, N) against the boolean labels ``positive`` (N,), by
    Sun & Xu's midranks."""
    x, y = scores[:, positive], scores[:, ~positive]
    m, n = x.shape[1], y.shape[1]
    tx = rankdata(x, axis=1)
    ty = rankdata(y, axis=1)
    tz = rankdata(np.concatenate([x, y], axis=1), axis=1)
    auc = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * n)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    return auc, v10, v01


def delong_test(
    scores_a: ArrayLike, scores_b: ArrayLike, positive: ArrayLike, clusters: ArrayLike | None = None
) -> DeLong:
    """DeLong's test of the difference between the ROC AUC of ``scores_a`` and of ``scores_b`` (higher = more
    likely positive) on the same samples, labelled ``positive`` (bool); ``clusters``: one id per sample (e.g. the
    patient) when samples of a cluster are not independent."""
    scores = np.stack([np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)])
    pos = np.asarray(positive).astype(bool).reshape(-1)
    if scores.shape[1] != len(pos):
        raise ValueError(f"{scores.shape[1]} scores but {len(pos)} labels")
    ids = np.arange(len(pos)) if clusters is None else np.asarray(clusters).reshape(-1)
    if len(ids) != len(pos):
        raise ValueError(f"{len(ids)} cluster ids but {len(pos)} labels")
    m, n = int(pos.sum()), int((~pos).sum())
    _, cluster = np.unique(ids, return_inverse=True)
    cluster = cluster.reshape(-1)
    n_clusters = int(cluster.max()) + 1 if len(cluster) else 0
    with_pos, with_neg = len(np.unique(cluster[pos])), len(np.unique(cluster[~pos]))
    if m == 0 or n == 0:
        return DeLong(NAN, NAN, NAN, NAN, NAN, NAN, m, n, n_clusters)
    auc, v10, v01 = placements(scores, pos)
    difference = float(auc[0] - auc[1])
    if with_pos < 2 or with_neg < 2:
        return DeLong(float(auc[0]), float(auc[1]), difference, NAN, NAN, NAN, m, n, n_clusters)
    # Per cluster: sum over its positives of (V10 - AUC), and over its negatives of (V01 - AUC); then the
    # contrast A - B. Obuchowski's variance over clusters (each a small-sample factor I/(I-1), as DeLong's ddof=1).
    d = np.zeros(n_clusters)
    e = np.zeros(n_clusters)
    np.add.at(d, cluster[pos], (v10[0] - auc[0]) - (v10[1] - auc[1]))
    np.add.at(e, cluster[~pos], (v01[0] - auc[0]) - (v01[1] - auc[1]))
    variance = (
        with_pos / (with_pos - 1) * float(d @ d) / m**2
        + with_neg / (with_neg - 1) * float(e @ e) / n**2
        + 2.0 * n_clusters / (n_clusters - 1) * float(d @ e) / (m * n)
    )
    se = math.sqrt(variance) if variance > 0 else 0.0
    # No variance: the two models' placements agree everywhere (identical models: no difference, p = 1).
    z = difference / se if se > 0 else (0.0 if difference == 0 else math.copysign(math.inf, difference))
    p = math.erfc(abs(z) / math.sqrt(2.0))
    return DeLong(float(auc[0]), float(auc[1]), difference, se, z, p, m, n, n_clusters)

"""DeLong's test computed the slow, obvious way, as a reference for ``darnet_pl.stats.delong``: the Mann-Whitney
kernel over every positive-negative pair (DeLong, DeLong & Clarke-Pearson 1988, Biometrics 44:837-845) and, for
samples clustered in patients, Obuchowski's (1997, Biometrics 53:567-578) per-cluster sums, in plain loops. It
shares no code with the package's midrank (Sun & Xu 2014) implementation."""

from __future__ import annotations

import math

import numpy as np


def kernel_delong(a: np.ndarray, b: np.ndarray, positive: np.ndarray, clusters: np.ndarray) -> tuple[float, float]:
    """(AUC_A - AUC_B, its standard error) by the O(n^2) kernel, clustered as Obuchowski (1997) writes it."""

    def psi(x: float, y: float) -> float:  # a positive scored x against a negative scored y: won, tied, lost
        return 1.0 if x > y else 0.5 if x == y else 0.0

    pos, neg = np.flatnonzero(positive), np.flatnonzero(~positive)
    m, n = len(pos), len(neg)
    theta, v10, v01 = [], [], []
    for s in (a, b):
        kernel = np.array([[psi(s[i], s[j]) for j in neg] for i in pos])
        theta.append(kernel.mean())
        v10.append(dict(zip(pos, kernel.mean(axis=1), strict=True)))  # per positive: mean over all negatives
        v01.append(dict(zip(neg, kernel.mean(axis=0), strict=True)))  # per negative: mean over all positives
    ids = sorted(set(clusters.tolist()))
    d, e = [], []  # per cluster, contrast A - B of sum(V10 - theta) over its positives, sum(V01 - theta) over negatives
    for cid in ids:
        members = np.flatnonzero(clusters == cid)
        d.append(sum((v10[0][i] - theta[0]) - (v10[1][i] - theta[1]) for i in members if positive[i]))
        e.append(sum((v01[0][j] - theta[0]) - (v01[1][j] - theta[1]) for j in members if not positive[j]))
    k1 = len({c for c, p in zip(clusters, positive, strict=True) if p})
    k0 = len({c for c, p in zip(clusters, positive, strict=True) if not p})
    k = len(ids)
    s10 = k1 / (k1 - 1) * sum(x * x for x in d) / m**2
    s01 = k0 / (k0 - 1) * sum(x * x for x in e) / n**2
    s11 = k / (k - 1) * sum(x * y for x, y in zip(d, e, strict=True)) / (m * n)
    return theta[0] - theta[1], math.sqrt(s10 + s01 + 2 * s11)

"""Calibration of probabilities (scans or patients): the Brier score and the expected calibration error
(``darnet_pl.metrics.brier_score``, ``expected_calibration_error``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from darnet_pl.metrics import brier_score, expected_calibration_error

ECE_BINS = 15


@dataclass
class Calibration:
    """Brier score (mean over samples of the summed squared error) and expected calibration error."""

    brier: float
    ece: float
    n: int
    n_bins: int = ECE_BINS

    def as_dict(self) -> dict[str, float | int]:
        return {"brier": self.brier, "ece": self.ece, "n": self.n, "n_bins": self.n_bins}


def calibration(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> Calibration:
    """Calibration of probabilities (scans or patients)."""
    labels = np.asarray(labels, dtype=np.int64)
    return Calibration(
        brier=float(brier_score(probs, labels)),
        ece=float(expected_calibration_error(probs, labels, n_bins=n_bins)),
        n=len(labels),
        n_bins=n_bins,
    )

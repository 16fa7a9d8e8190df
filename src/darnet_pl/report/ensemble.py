"""Fold ensembles: the mean softmax of a group's fold models on the scans all of them were tested on.

The numbers computed from an ensemble (the paper's metrics, patient-level bootstrap intervals, patient-level
results, calibration, paired comparisons) live in ``darnet_pl.stats``, shared with ``darnet-evaluate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from darnet_pl.runs.predictions import Predictions


@dataclass
class FoldEnsemble:
    """The mean softmax of a group's fold models on the scans all of them were tested on."""

    probs: np.ndarray  # (N, K) mean over folds
    fold_probs: np.ndarray  # (F, N, K) aligned per-fold probabilities
    labels: np.ndarray
    patient_ids: np.ndarray
    scan_ids: np.ndarray
    folds: list[int | None]
    same_test_set: bool
    notes: list[str] = field(default_factory=list)

    @property
    def n_scans(self) -> int:
        return len(self.labels)

    @property
    def n_patients(self) -> int:
        return len(np.unique(self.patient_ids))


def fold_ensemble(predictions: Sequence[Predictions], folds: Sequence[int | None]) -> FoldEnsemble:
    """Join the folds' predictions on (patient_id, scan_id) and average their probabilities.

    All folds should have been tested on the same scans. If not, the ensemble is built on the scans every fold saw,
    and ``same_test_set`` is False with a note naming the difference; scans whose label differs between folds are
    dropped with a note.
    """
    if not predictions:
        raise ValueError("no predictions to ensemble")
    notes: list[str] = []
    key_sets = [set(p.keys) for p in predictions]
    common = set.intersection(*key_sets)
    same = all(len(s) == len(common) for s in key_sets)
    if not same:
        sizes = ", ".join(f"fold {f}: {len(s)}" for f, s in zip(folds, key_sets, strict=True))
        notes.append(
            f"the folds were not tested on the same scans ({sizes}); the ensemble uses the {len(common)} common"
        )
    if any(len(p.keys) != len(set(p.keys)) for p in predictions):
        notes.append("a predictions file lists a (patient_id, scan_id) twice; the last row wins")
    order = sorted(common)
    index = {key: i for i, key in enumerate(order)}
    k = predictions[0].probs.shape[1]
    fold_probs = np.full((len(predictions), len(order), k), np.nan)
    fold_labels = np.full((len(predictions), len(order)), -1, dtype=np.int64)
    for f, pred in enumerate(predictions):
        for row, key in enumerate(pred.keys):
            i = index.get(key)
            if i is not None:
                fold_probs[f, i] = pred.probs[row]
                fold_labels[f, i] = pred.labels[row]
    agree = (fold_labels == fold_labels[0]).all(axis=0)
    if not agree.all():
        notes.append(f"{int((~agree).sum())} scans have different labels in different folds; left out")
        same = False
    fold_probs, labels = fold_probs[:, agree], fold_labels[0, agree]
    keys = [key for key, ok in zip(order, agree, strict=True) if ok]
    return FoldEnsemble(
        probs=fold_probs.mean(axis=0),
        fold_probs=fold_probs,
        labels=labels,
        patient_ids=np.array([p for p, _ in keys], dtype=str),
        scan_ids=np.array([s for _, s in keys], dtype=str),
        folds=list(folds),
        same_test_set=same,
        notes=notes,
    )

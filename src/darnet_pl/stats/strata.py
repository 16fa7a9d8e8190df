"""The paper's metrics within the scans that have a property and within those that do not (a boolean signal per
scan, e.g. "pre-segmented" or "another scanner"), each with a patient-level bootstrap interval, and the difference
between the two with the same resamples.

A shortcut shows as a model that is much better where the signal is present than where it is absent; the
difference row says by how much and how sure that is. Resampling is by patient over all scans, and each resample
scores both strata on the scans it drew, so a patient with scans in both strata counts in both, and the
difference's interval accounts for that.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from darnet_pl.stats.bootstrap import percentile_interval, weight_chunks
from darnet_pl.stats.scoring import as_paper_sees_them, paper_metrics, weighted_metrics

STRATA_KEYS = ("2class/auc", "2class/sensitivity", "2class/specificity", "{block}/auc_macro", "{block}/accuracy")
"""The metrics given by default ({block}: ``3class`` for three classes)."""
DIFFERENCE = "with - without"


def _as_flags(strata: ArrayLike, n: int) -> np.ndarray:
    flags = np.asarray(strata).reshape(-1)
    if len(flags) != n:
        raise ValueError(f"{len(flags)} strata flags but {n} scans")
    if flags.dtype != bool:
        if not np.isin(flags, (0, 1)).all():
            raise ValueError("strata must be one boolean per scan (True/False or 1/0)")
        flags = flags.astype(bool)
    return flags


def _row(
    stratum: object,
    scans: np.ndarray,
    labels: np.ndarray,
    patient_ids: np.ndarray,
    class_names: Sequence[str],
    point: dict[str, float],
    resampled: dict[str, list[np.ndarray]],
    level: float,
    notes: list[str],
) -> dict[str, object]:
    ci: dict[str, list[float]] = {}
    n_valid: dict[str, int] = {}
    for key, value in point.items():
        values = np.concatenate(resampled[key]) if resampled[key] else np.zeros(0)
        interval, n_valid[key] = percentile_interval(values, value, level)
        ci[key] = list(interval)
    return {
        "stratum": stratum,
        "n_scans": int(scans.sum()),
        "n_patients": len(np.unique(patient_ids[scans])),
        "support": {name: int((labels[scans] == c).sum()) for c, name in enumerate(class_names)},
        "metrics": point,
        "ci": ci,
        "ci_valid_resamples": n_valid,
        "notes": notes,
    }


def stratified_metrics(
    probs: np.ndarray,
    labels: np.ndarray,
    patient_ids: np.ndarray,
    strata: ArrayLike,
    class_names: Sequence[str],
    positive_class: str,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    keys: Sequence[str] | None = None,
) -> list[dict[str, object]]:
    """Three rows (plain dicts), ``stratum`` True (the scans whose flag is set), False (the others) and
    ``"with - without"`` (True minus False, over all scans). Each row: ``n_scans``, ``n_patients``, ``support``
    (scans per class), ``metrics`` (key -> value, NaN where undefined, e.g. a class absent from the stratum),
    ``ci`` (key -> [low, high], the patient-level bootstrap percentile interval at ``level``; NaN without
    resamples or where undefined), ``ci_valid_resamples`` and ``notes`` (which metrics are undefined, and why).
    ``keys``: PaperMetrics names (default ``STRATA_KEYS``)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    patient_ids = np.asarray(patient_ids).reshape(-1)
    if len(probs) != len(labels) or len(patient_ids) != len(labels):
        raise ValueError(f"{len(probs)} probability rows, {len(labels)} labels, {len(patient_ids)} patient ids")
    flags = _as_flags(strata, len(labels))
    block = f"{len(class_names)}class"
    keys = tuple(keys) if keys is not None else tuple(k.format(block=block) for k in STRATA_KEYS)
    masks = {True: flags, False: ~flags}
    notes: dict[bool, list[str]] = {True: [], False: []}
    point: dict[bool, dict[str, float]] = {}
    for value, mask in masks.items():
        if mask.any():
            values = paper_metrics(probs[mask], labels[mask], class_names, positive_class, notes=notes[value])
        else:
            values, notes[value] = {}, ["no scan in this stratum"]
        point[value] = {k: float(values.get(k, np.nan)) for k in keys}
    seen = as_paper_sees_them(probs)
    resampled: dict[object, dict[str, list[np.ndarray]]] = {v: {k: [] for k in keys} for v in (True, False, DIFFERENCE)}
    for weights in weight_chunks(patient_ids, n_resamples, seed):
        within = {v: weighted_metrics(seen, labels, weights * m, class_names, positive_class) for v, m in masks.items()}
        for k in keys:
            resampled[True][k].append(within[True][k])
            resampled[False][k].append(within[False][k])
            resampled[DIFFERENCE][k].append(within[True][k] - within[False][k])
    rows = [_row(v, masks[v], labels, patient_ids, class_names, point[v], resampled[v], level, notes[v]) for v in masks]
    difference = {k: point[True][k] - point[False][k] for k in keys}
    everything = np.ones(len(labels), dtype=bool)
    rows.append(
        _row(DIFFERENCE, everything, labels, patient_ids, class_names, difference, resampled[DIFFERENCE], level, [])
    )
    return rows

"""The per-scan predictions table of a job (``predictions.csv``): its one writer and its one reader.

One row per test scan: ``patient_id, scan_id, label, prob_<class>...`` (label = class index, probabilities in the
class order of the run). ``darnet-predict`` writes its own table with the same ``prob_<class>`` columns.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from darnet_pl.utils.csv_cells import SafeDictWriter, plain_rows
from darnet_pl.utils.io import atomic_path

PROB_PREFIX = "prob_"
SUM_TOLERANCE = 1e-3
"""How far a row's probabilities may sum from 1: rounding (six decimals per class) is far below it, a table of
scores that are not a softmax (logits, a dropped or doubled column) far above."""


def prob_column(class_name: str) -> str:
    """The column of one class's probability."""
    return f"{PROB_PREFIX}{class_name}"


def prediction_columns(class_names: Sequence[str]) -> tuple[str, ...]:
    return ("patient_id", "scan_id", "label", *(prob_column(n) for n in class_names))


def prediction_row(
    patient_id: str, scan_id: str, label: int, probs: Sequence[float], class_names: Sequence[str]
) -> dict[str, Any]:
    """One scan's row, as ``write_predictions`` writes it."""
    row: dict[str, Any] = {"patient_id": patient_id, "scan_id": scan_id, "label": int(label)}
    row.update({prob_column(name): float(p) for name, p in zip(class_names, probs, strict=True)})
    return row


def probabilities_of(rows: Sequence[Mapping[str, Any]], class_names: Sequence[str]) -> np.ndarray:
    """(N, K) probabilities of in-memory rows."""
    return np.array([[float(row[prob_column(n)]) for n in class_names] for row in rows], dtype=np.float64)


def write_predictions(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """The rows, atomically (a torn table would be read as a finished job's)."""
    if not rows:
        return
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = SafeDictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@dataclass
class Predictions:
    """Per-scan test probabilities of one job, in the class order of ``class_names``."""

    patient_ids: np.ndarray  # (N,) str
    scan_ids: np.ndarray  # (N,) str
    labels: np.ndarray  # (N,) int
    probs: np.ndarray  # (N, K) float64
    class_names: tuple[str, ...]

    @property
    def keys(self) -> list[tuple[str, str]]:
        return list(zip(self.patient_ids.tolist(), self.scan_ids.tolist(), strict=True))


class InvalidPredictions(ValueError):
    """A well-formed ``predictions.csv`` whose numbers are not probabilities or labels (NaN, 1.7, a row summing to
    1.2, label 9).

    Unlike a torn or foreign file (a problem: the job is left out of the ensemble and the report says so), this
    stops the report: the job's model produced these numbers, so its ``test_metrics.json`` cannot be trusted
    either, and a table averaged over it would look valid.
    """


def _probability(path: Path, line: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:  # NaN fails this too
        raise InvalidPredictions(f"{path}, line {line}: {column} is {text!r}, not a probability in [0, 1]")
    return value


def check_probability_row(values: Sequence[float], class_names: Sequence[str], where: str) -> None:
    """Each value a probability in [0, 1] and their sum 1, else ``InvalidPredictions`` naming ``where``."""
    for name, value in zip(class_names, values, strict=True):
        if not 0.0 <= float(value) <= 1.0:
            raise InvalidPredictions(f"{where}: {prob_column(name)} is {float(value)!r}, not a probability in [0, 1]")
    check_sums_to_one(values, where)


def check_sums_to_one(values: Sequence[float], where: str) -> None:
    """A row of class probabilities sums to 1 (within ``SUM_TOLERANCE``: six written decimals per class, float32
    softmax); else ``InvalidPredictions`` naming ``where`` (the file and line)."""
    total = float(sum(values))
    if not abs(total - 1.0) <= SUM_TOLERANCE:  # NaN fails this too
        raise InvalidPredictions(f"{where}: the probabilities sum to {total:.6g}, not 1")


def _label(path: Path, line: int, text: str, n_classes: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < n_classes:
        raise InvalidPredictions(f"{path}, line {line}: label is {text!r}, not a class index 0..{n_classes - 1}")
    return value


def read_predictions(path: Path, class_names: Sequence[str] | None = None) -> Predictions:
    """``predictions.csv`` as arrays; classes in ``class_names`` order (else the order of the ``prob_*`` columns).

    ValueError for a file that is not a predictions table (missing columns, no rows, a torn line);
    InvalidPredictions for values that are no probabilities or labels.
    """
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        rows = list(plain_rows(reader))  # ids as written, before safe_cell
    prob_columns = [name[len(PROB_PREFIX) :] for name in header if name.startswith(PROB_PREFIX)]
    names = tuple(class_names) if class_names else tuple(prob_columns)
    columns = prediction_columns(names)
    missing = [c for c in columns if c not in header]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    if not rows:
        raise ValueError(f"{path}: no predictions")
    for line, row in enumerate(rows, start=2):
        if any(row[c] is None for c in columns):
            raise ValueError(f"{path}, line {line}: fewer fields than the header (a torn line)")
    probs = np.array(
        [
            [_probability(path, line, prob_column(n), row[prob_column(n)]) for n in names]
            for line, row in enumerate(rows, 2)
        ],
        dtype=np.float64,
    )
    for line, values in enumerate(probs, 2):
        check_sums_to_one(values, f"{path}, line {line}")
    return Predictions(
        patient_ids=np.array([row["patient_id"] for row in rows], dtype=str),
        scan_ids=np.array([row["scan_id"] for row in rows], dtype=str),
        labels=np.array([_label(path, line, row["label"], len(names)) for line, row in enumerate(rows, 2)], np.int64),
        probs=probs,
        class_names=names,
    )

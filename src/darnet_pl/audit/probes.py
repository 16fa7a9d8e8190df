"""Probes: how well one group of non-disease signals predicts the label, by patient-grouped cross-validation.

A simple classifier that reaches a high AUC from the slice count or the border alone means a deep model can reach
it too without looking at the lungs. Folds are grouped by patient (scans of one patient look alike in every
signal, so a split that divides a patient would find "shortcuts" that are only the patient) and stratified by
class; the AUC is the macro one-vs-rest AUC of the out-of-fold probabilities over the classes present.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from darnet_pl.audit.signals import ScanSignals

MAX_FOLDS = 5


@dataclass(frozen=True)
class ProbeSpec:
    """One probe: the signals it reads, the classifier that suits them, and how a finding is described.

    ``model``: ``tree`` (a shallow decision tree, for categorical or ordinal signals whose effect need not be
    monotone) or ``logistic`` (logistic regression on standardized features, for continuous ones). ``summary``:
    ``median``, ``mean``, ``mode`` (categories), ``share`` (a 0/1 flag) or ``bins`` (a histogram).
    """

    name: str
    what: str
    columns: tuple[str, ...]
    model: str
    summary: str
    categorical: bool = False


def probe_specs(bins: int = 16) -> list[ProbeSpec]:
    return [
        ProbeSpec("slice_count", "the slice count", ("n_slices",), "tree", "median"),
        ProbeSpec("in_plane_size", "the in-plane size", ("rows", "cols"), "tree", "median"),
        ProbeSpec("file_type", "the file type", ("file_type",), "tree", "mode", categorical=True),
        ProbeSpec("pre_segmented", "the pre-segmented flag", ("segmented",), "tree", "share"),
        ProbeSpec("border", "the border/background", ("zero_fraction", "border_mean"), "logistic", "mean"),
        ProbeSpec("histogram", "the intensity histogram", tuple(f"hist_{i}" for i in range(bins)), "logistic", "bins"),
    ]


@dataclass
class ProbeResult:
    """What ``audit.json`` lists per probe; ``auc`` is None where it cannot be estimated (``reason`` says why)."""

    name: str
    auc: float | None
    flagged: bool
    reason: str
    n_scans: int
    n_patients: int
    signals: list[str]
    classifier: str
    folds: int = 0
    summary: str = ""
    classes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _classifier(spec: ProbeSpec, n: int, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    if spec.model == "tree":
        return DecisionTreeClassifier(max_depth=3, min_samples_leaf=max(2, n // 50), random_state=seed)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))


def out_of_fold_auc(model: Any, x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> float:
    """Macro one-vs-rest AUC of out-of-fold probabilities (``y`` holds 0..C-1, every class present)."""
    from sklearn.base import clone
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold

    n_classes = int(y.max()) + 1
    proba = np.zeros((len(y), n_classes))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(x, y, groups):
        if np.unique(y[train]).size < 2:  # a fold without a second class to learn: no information
            proba[test] = 1.0 / n_classes
            continue
        fitted = clone(model).fit(x[train], y[train])
        proba[np.ix_(test, fitted.classes_)] = fitted.predict_proba(x[test])
    if n_classes == 2:
        return float(roc_auc_score(y, proba[:, 1]))
    return float(roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=list(range(n_classes))))


def summarise(spec: ProbeSpec, values: list[list[Any]], labels: Sequence[str], classes: Sequence[str]) -> str:
    """Per class, what the signal looks like: the evidence behind a flag (``CP 20, NCP 40``)."""
    by_class = {c: [v for v, label in zip(values, labels, strict=True) if label == c] for c in classes}
    if spec.summary == "mode":
        parts = []
        for c, rows in by_class.items():
            value, count = Counter(r[0] for r in rows).most_common(1)[0]
            parts.append(f"{c} {value} ({count / len(rows):.0%})")
        return "most common: " + ", ".join(parts)
    arrays = {c: np.asarray(rows, dtype=float) for c, rows in by_class.items()}
    if spec.summary == "share":
        return "share: " + ", ".join(f"{c} {a[:, 0].mean():.0%}" for c, a in arrays.items())
    if spec.summary == "bins":
        means = np.stack([a.mean(axis=0) for a in arrays.values()])
        i = int(np.argmax(means.max(axis=0) - means.min(axis=0)))
        width = 256 / len(spec.columns)
        shown = ", ".join(f"{c} {m:.2f}" for c, m in zip(classes, means[:, i], strict=True))
        return f"bin {i} (gray {math.ceil(i * width)}-{math.ceil((i + 1) * width) - 1}) holds {shown} of the voxels"
    reduce = np.median if spec.summary == "median" else np.mean
    return "; ".join(
        f"{spec.summary} {column}: " + ", ".join(f"{c} {_number(reduce(a[:, j]))}" for c, a in arrays.items())
        for j, column in enumerate(spec.columns)
    )


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3g}"


def run_probe(spec: ProbeSpec, scans: Sequence[ScanSignals], threshold: float, seed: int = 0) -> ProbeResult:
    """One probe over the scans whose signals it reads are all known."""
    known = [s for s in scans if all(_present(s.values.get(c)) for c in spec.columns)]
    values = [[s.values[c] for c in spec.columns] for s in known]
    labels = [s.record.class_name for s in known]
    classes = sorted(set(labels))
    patients = {c: {s.record.patient_id for s in known if s.record.class_name == c} for c in classes}
    classifier = "decision tree (depth 3)" if spec.model == "tree" else "logistic regression (standardized)"
    n_patients = len({s.record.patient_id for s in known})
    result = ProbeResult(spec.name, None, False, "", len(known), n_patients, list(spec.columns), classifier)
    result.classes = list(classes)
    if not known:
        result.reason = "not known for this data source"
        return result
    if len(classes) < 2:
        result.reason = f"one class only ({classes[0]}): nothing to tell apart"
        return result
    result.summary = summarise(spec, values, labels, classes)
    if all(v == values[0] for v in values):
        result.auc, result.reason = 0.5, "constant"
        return result
    smallest = min(classes, key=lambda c: len(patients[c]))
    result.folds = min(MAX_FOLDS, len(patients[smallest]))
    if result.folds < 2:
        result.reason = f"too few patients: class {smallest} has {len(patients[smallest])}, folds need 2 per class"
        result.folds = 0
        return result
    if spec.categorical:
        categories = sorted({str(v[0]) for v in values})
        x = np.array([[float(str(v[0]) == cat) for cat in categories] for v in values])
    else:
        x = np.asarray(values, dtype=float)
    y = np.array([classes.index(label) for label in labels])
    groups = np.array([s.record.patient_id for s in known])
    auc = out_of_fold_auc(_classifier(spec, len(known), seed), x, y, groups, result.folds, seed)
    result.auc = round(auc, 4)
    if auc >= threshold:
        result.flagged = True
        result.reason = f"{spec.what} alone predicts the label (AUC {auc:.2f} >= {threshold:.2f}): {result.summary}"
    return result


def run_probes(
    scans: Sequence[ScanSignals], threshold: float = 0.8, seed: int = 0, bins: int = 16
) -> list[ProbeResult]:
    return [run_probe(spec, scans, threshold, seed) for spec in probe_specs(bins)]


def format_table(results: Sequence[ProbeResult]) -> str:
    """An aligned plain-text table: probe, AUC, flagged, reason."""
    rows = [("probe", "AUC", "flagged", "reason")]
    rows += [
        (r.name, "-" if r.auc is None else f"{r.auc:.2f}", "yes" if r.flagged else "no", r.reason) for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join([row[0].ljust(widths[0]), row[1].rjust(widths[1]), row[2].ljust(widths[2]), row[3]]).rstrip()
        for row in rows
    )

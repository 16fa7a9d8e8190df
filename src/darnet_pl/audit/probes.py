"""Probes: how well one group of non-disease signals predicts the label, by patient-grouped cross-validation.

A simple classifier that reaches a high AUC from the slice count or the border alone means a deep model can reach
it too without looking at the lungs. Folds are grouped by patient (scans of one patient look alike in every
signal, so a split that divides a patient would find "shortcuts" that are only the patient) and stratified by
class. Every number is out of fold: a scan is scored by a probe that never saw its patient.

Real shortcuts rarely mark every scan of every class (CC-CCII supplied about 60% of its Normal scans, 10% of its
NCP scans and almost none of its CP scans lung-segmented), so each class is judged on its own:

- ``per_class[c].auc``: the one-vs-rest AUC of the out-of-fold probability of class ``c``, within each held-out
  fold, averaged over the folds (probabilities of different folds come from different fits: pooled, their
  fold-to-fold differences would rank scans that the signal does not tell apart);
- ``per_class[c].partial``: the share of class ``c`` that the signal alone picks out at high precision. In each
  fold, the lowest probability at which the probe's own training scans reach ``precision`` for ``c`` becomes a
  threshold, applied to the held-out scans; pooled over folds, ``partial`` is the share of ``c``'s scans identified
  and ``partial_precision`` the precision of that identification, both out of fold;
- the probe is flagged for every class whose AUC reaches ``threshold``, or whose ``partial`` reaches
  ``partial_threshold`` at an out-of-fold precision of at least ``precision``. ``auc`` (the macro one-vs-rest AUC
  over the classes: the mean of the per-class AUCs) stays as a column.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from darnet_pl.audit.signals import ScanSignals

MAX_FOLDS = 5


@dataclass(frozen=True)
class ProbeSpec:
    """One probe: the signals it reads, the classifier that suits them, and how a finding is described.

    ``model``: ``tree`` (a shallow decision tree, for categorical or ordinal signals whose effect need not be
    monotone) or ``logistic`` (logistic regression on standardized features, for continuous ones). ``summary``:
    ``median``, ``mean``, ``mode`` (categories), ``share`` (a 0/1 flag) or ``bins`` (a histogram). ``optional``:
    listed only when some scan has the signal (a signal only one kind of source knows of).
    """

    name: str
    what: str
    columns: tuple[str, ...]
    model: str
    summary: str
    categorical: bool = False
    optional: bool = False


def probe_specs(bins: int = 16) -> list[ProbeSpec]:
    return [
        ProbeSpec("slice_count", "the slice count", ("n_slices",), "tree", "median"),
        ProbeSpec("in_plane_size", "the in-plane size", ("rows", "cols"), "tree", "median"),
        ProbeSpec("file_type", "the file type", ("file_type",), "tree", "mode", categorical=True),
        ProbeSpec("pre_segmented", "the pre-segmented flag", ("segmented",), "tree", "share"),
        ProbeSpec("planted", "the planted shortcut mark", ("planted",), "tree", "share", optional=True),
        ProbeSpec("border", "the border/background", ("zero_fraction", "border_mean"), "logistic", "mean"),
        ProbeSpec("histogram", "the intensity histogram", tuple(f"hist_{i}" for i in range(bins)), "logistic", "bins"),
    ]


@dataclass(frozen=True)
class Thresholds:
    """When a probe is flagged: a class's AUC reaches ``auc``, or ``partial`` of a class is identified at an
    out-of-fold precision of at least ``precision``."""

    auc: float = 0.75
    partial: float = 0.1
    precision: float = 0.95


@dataclass
class ClassFinding:
    """What one probe says about one class (``audit.json`` ``per_class``); ``precision`` is None where the probe
    identified no scan as the class."""

    auc: float | None
    partial: float
    precision: float | None
    identified: int
    n_scans: int
    flagged: bool = False


@dataclass
class OutOfFold:
    """The probe's out-of-fold view of every scan it read, in order: what the subset rows and the model-level
    checks are built from. ``proba`` (N, K) and ``identified`` (N, K) are over ``classes``; ``folds`` (N,) is the
    fold that held each scan out; ``x`` the probe's input."""

    keys: list[str]
    patients: np.ndarray
    labels: np.ndarray
    proba: np.ndarray
    identified: np.ndarray
    folds: np.ndarray
    values: list[list[Any]]
    x: np.ndarray
    model: Any = None


@dataclass
class ProbeResult:
    """What ``audit.json`` lists per probe; ``auc`` (macro) is None where it cannot be estimated (``reason`` says
    why). ``flagged_classes`` names the classes the signal gives away."""

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
    per_class: dict[str, ClassFinding] = field(default_factory=dict)
    flagged_classes: list[str] = field(default_factory=list)
    spec: ProbeSpec | None = field(default=None, repr=False)
    out_of_fold: OutOfFold | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain values: the fields but ``spec`` and ``out_of_fold`` (working state, not findings)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("spec", "out_of_fold")}
        data["per_class"] = {name: asdict(finding) for name, finding in self.per_class.items()}
        return {**data, "signals": list(self.signals), "classes": list(self.classes)}


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


def precise_threshold(scores: np.ndarray, positive: np.ndarray, precision: float) -> float | None:
    """The lowest score ``t`` at which the scans scoring ``>= t`` reach ``precision``: the largest such set, cut
    only between distinct scores; None where no set does."""
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], positive[order].astype(float)
    block_end = np.r_[ranked[1:] != ranked[:-1], True]
    reached = block_end & (np.cumsum(hits) / np.arange(1, len(ranked) + 1) >= precision)
    return float(ranked[np.flatnonzero(reached)[-1]]) if reached.any() else None


def fit_and_score(
    model: Any, x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, n_classes: int, precision: float
) -> tuple[np.ndarray, np.ndarray]:
    """Fit on the ``train`` rows; the class probabilities (T, K) of the ``test`` rows, and which of them are
    identified as each class: their probability reaches the lowest at which the training rows reach ``precision``
    for that class (``precise_threshold``, on the training rows' own scores). No second class to learn: uniform."""
    from sklearn.base import clone

    proba = np.full((len(test), n_classes), 1.0 / n_classes)
    identified = np.zeros((len(test), n_classes), dtype=bool)
    if np.unique(y[train]).size < 2:
        return proba, identified
    fitted = clone(model).fit(x[train], y[train])
    proba[:] = 0.0
    proba[:, fitted.classes_] = fitted.predict_proba(x[test])
    seen = fitted.predict_proba(x[train])
    for column, c in enumerate(fitted.classes_):
        threshold = precise_threshold(seen[:, column], y[train] == c, precision)
        if threshold is not None:
            identified[:, c] = proba[:, c] >= threshold - 1e-12
    return proba, identified


def out_of_fold(
    model: Any, x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int, seed: int, precision: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Out-of-fold class probabilities (N, K), identifications (N, K) (``fit_and_score``) and the fold of each scan
    (N,), by patient-grouped, class-stratified folds (``y`` holds 0..K-1, every class present)."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_classes = int(y.max()) + 1
    proba = np.zeros((len(y), n_classes))
    identified = np.zeros((len(y), n_classes), dtype=bool)
    fold_of = np.zeros(len(y), dtype=int)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (train, test) in enumerate(splitter.split(x, y, groups)):
        proba[test], identified[test] = fit_and_score(model, x, y, train, test, n_classes, precision)
        fold_of[test] = fold
    return proba, identified, fold_of


def class_auc(labels: np.ndarray, scores: np.ndarray, c: int, folds: np.ndarray | None = None) -> float | None:
    """One-vs-rest AUC of ``scores`` for class ``c``: within each fold of ``folds`` (scores of one fit), averaged
    over the folds where ``c`` and the rest are present; None where there is none."""
    from sklearn.metrics import roc_auc_score

    folds = np.zeros(len(labels), dtype=int) if folds is None else folds
    aucs = []
    for fold in np.unique(folds):
        positive = labels[folds == fold] == c
        if positive.any() and not positive.all():
            aucs.append(float(roc_auc_score(positive, scores[folds == fold])))
    return float(np.mean(aucs)) if aucs else None


def class_findings(
    labels: np.ndarray,
    proba: np.ndarray,
    identified: np.ndarray,
    classes: Sequence[str],
    limits: Thresholds,
    folds: np.ndarray | None = None,
) -> dict[str, ClassFinding]:
    """Per class: AUC (``class_auc``), the share identified and its precision, and whether it reaches the
    thresholds."""
    findings = {}
    for c, name in enumerate(classes):
        members = labels == c
        hits = int((identified[:, c] & members).sum())
        picked = int(identified[:, c].sum())
        auc = class_auc(labels, proba[:, c], c, folds)
        precision = hits / picked if picked else None
        partial = hits / int(members.sum()) if members.any() else 0.0
        finding = ClassFinding(
            auc=None if auc is None else round(auc, 4),
            partial=round(partial, 4),
            precision=None if precision is None else round(precision, 4),
            identified=picked,
            n_scans=int(members.sum()),
        )
        finding.flagged = (auc is not None and auc >= limits.auc) or is_partial(finding, limits)
        findings[name] = finding
    return findings


def is_partial(finding: ClassFinding, limits: Thresholds) -> bool:
    """A partial shortcut: enough of the class identified, at the required precision."""
    precise = finding.precision is not None and finding.precision >= limits.precision
    return precise and finding.partial >= limits.partial and finding.partial > 0


def summarise(spec: ProbeSpec, values: list[list[Any]], labels: Sequence[str], classes: Sequence[str]) -> str:
    """Per class, what the signal looks like: the evidence behind a flag (``CP 20, NCP 40``)."""
    by_class = {c: [v for v, label in zip(values, labels, strict=True) if label == c] for c in classes}
    by_class = {c: rows for c, rows in by_class.items() if rows}
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
        shown = ", ".join(f"{c} {m:.2f}" for c, m in zip(arrays, means[:, i], strict=True))
        return f"bin {i} (gray {math.ceil(i * width)}-{math.ceil((i + 1) * width) - 1}) holds {shown} of the voxels"
    reduce = np.median if spec.summary == "median" else np.mean
    return "; ".join(
        f"{spec.summary} {column}: " + ", ".join(f"{c} {_number(reduce(a[:, j]))}" for c, a in arrays.items())
        for j, column in enumerate(spec.columns)
    )


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3g}"


def _evidence(name: str, finding: ClassFinding, limits: Thresholds) -> str:
    parts = []
    if finding.auc is not None and finding.auc >= limits.auc:
        parts.append(f"AUC {finding.auc:.2f}")
    if is_partial(finding, limits):
        parts.append(f"{finding.partial:.0%} of its scans identified at precision {finding.precision:.2f}")
    return f"{name} ({', '.join(parts)})"


def run_probe(
    spec: ProbeSpec, scans: Sequence[ScanSignals], limits: Thresholds | float = Thresholds(), seed: int = 0
) -> ProbeResult:
    """One probe over the scans whose signals it reads are all known (``limits``: a number is the AUC threshold)."""
    if not isinstance(limits, Thresholds):
        limits = Thresholds(auc=float(limits))
    known = [s for s in scans if all(_present(s.values.get(c)) for c in spec.columns)]
    values = [[s.values[c] for c in spec.columns] for s in known]
    labels = [s.record.class_name for s in known]
    classes = sorted(set(labels))
    patients = {c: {s.record.patient_id for s in known if s.record.class_name == c} for c in classes}
    classifier = "decision tree (depth 3)" if spec.model == "tree" else "logistic regression (standardized)"
    n_patients = len({s.record.patient_id for s in known})
    result = ProbeResult(spec.name, None, False, "", len(known), n_patients, list(spec.columns), classifier, spec=spec)
    result.classes = list(classes)
    if not known:
        result.reason = "not known for this data source"
        return result
    if len(classes) < 2:
        result.reason = f"one class only ({classes[0]}): nothing to tell apart"
        return result
    result.summary = summarise(spec, values, labels, classes)
    y = np.array([classes.index(label) for label in labels])
    groups = np.array([s.record.patient_id for s in known])
    if all(v == values[0] for v in values):
        result.auc, result.reason = 0.5, "constant"
        flat = np.full((len(y), len(classes)), 1.0 / len(classes))
        result.per_class = class_findings(y, flat, np.zeros_like(flat, dtype=bool), classes, limits)
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
    model = _classifier(spec, len(known), seed)
    proba, identified, folds = out_of_fold(model, x, y, groups, result.folds, seed, limits.precision)
    keys = [s.record.key for s in known]
    result.out_of_fold = OutOfFold(keys, groups, y, proba, identified, folds, values, x, model)
    result.per_class = class_findings(y, proba, identified, classes, limits, folds)
    result.auc = macro_auc(result.per_class)
    result.flagged_classes = [c for c, finding in result.per_class.items() if finding.flagged]
    if result.flagged_classes:
        result.flagged = True
        evidence = "; ".join(_evidence(c, result.per_class[c], limits) for c in result.flagged_classes)
        result.reason = f"{spec.what} alone gives away {evidence}: {result.summary}"
    return result


def macro_auc(findings: dict[str, ClassFinding]) -> float | None:
    """The mean of the classes' one-vs-rest AUCs (where defined)."""
    aucs = [f.auc for f in findings.values() if f.auc is not None]
    return round(float(np.mean(aucs)), 4) if aucs else None


def run_probes(
    scans: Sequence[ScanSignals], limits: Thresholds | float = Thresholds(), seed: int = 0, bins: int = 16
) -> list[ProbeResult]:
    """Every probe; an ``optional`` one only where some scan has its signal."""
    results = []
    for spec in probe_specs(bins):
        if spec.optional and not any(_present(s.values.get(c)) for s in scans for c in spec.columns):
            continue
        results.append(run_probe(spec, scans, limits, seed))
    return results

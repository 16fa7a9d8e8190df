"""ROC curves, confusion matrices and reliability diagrams as PNG.

Uses matplotlib's object API (``Figure``, rendered by Agg on save) and never ``pyplot``: no global backend is
switched, no GUI is needed, and nothing leaks between figures when a Hydra callback calls this inside a
long-running process. Every file is written atomically.

Each ``*_figure`` function builds the figure that ``plot_*`` saves, free of the defects a reader would notice
(checked on the figure objects by tests/report/test_plots.py): titles wrapped to fit the figure, tick labels in
plain units (no offset or scientific notation), ROC zoom panels whose window comes from the curves (or no zoom
where it would show nothing new), integer ticks on colourbars of counts, and no test scan counted more than once:
the folds of a sweep share one test set, so the confusion figure shows the fold ensemble and each fold on its
own, never the folds' matrices summed.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, ScalarFormatter
from sklearn.metrics import auc as area_under
from sklearn.metrics import roc_curve

from darnet_pl.data.records import CLASS_TITLES
from darnet_pl.utils.io import atomic_path
from darnet_pl.utils.text import wrap_to_width

DPI = 150
ZOOM_STEP = 0.05
"""Zoom windows are whole multiples of this (tick-friendly)."""
NO_ZOOM_FROM = 0.5
"""A zoom window this large (half of each axis) shows nothing the full plot does not: no zoom then."""


@dataclass
class Curves:
    """Probabilities of one model (a fold, a single run or an ensemble) on its test scans."""

    name: str
    probs: np.ndarray
    labels: np.ndarray


def display(name: str) -> str:
    return CLASS_TITLES.get(name, name)


def plain_ticks(ax) -> None:
    """Tick labels in the data's own units: never ``1e3`` or ``+0.9`` written beside an axis."""
    for axis in (ax.xaxis, ax.yaxis):
        formatter = axis.get_major_formatter()
        if isinstance(formatter, ScalarFormatter):
            formatter.set_useOffset(False)
            formatter.set_scientific(False)


def set_title(ax, text: str, fontsize: float) -> None:
    """An axes title wrapped to the axes' width (a longer one spills over its neighbour or off the figure)."""
    width = ax.get_position().width * ax.get_figure(root=True).get_figwidth()
    ax.set_title(wrap_to_width(text, width, fontsize), fontsize=fontsize)


def set_suptitle(fig: Figure, text: str, fontsize: float) -> None:
    fig.suptitle(wrap_to_width(text, 0.95 * fig.get_figwidth(), fontsize), fontsize=fontsize)


def save(fig: Figure, path: str | os.PathLike[str] | BinaryIO) -> None:
    """Write the PNG atomically to a file, or into a binary buffer (the report writes all its files together)."""
    if hasattr(path, "write"):
        fig.savefig(path, format="png", dpi=DPI, bbox_inches="tight")
        return
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")


def _roc(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    with warnings.catch_warnings():  # no positives or negatives: the curve is degenerate, the report says why
        warnings.simplefilter("ignore", UserWarning)
        fpr, tpr, _ = roc_curve(labels, scores)
    return fpr, tpr, float(area_under(fpr, tpr))


def zoom_side(curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> float | None:
    """The side ``s`` of the top-left square (false positive rate <= s, true positive rate >= 1 - s) worth a zoom
    panel, chosen from the curves ``(fpr, tpr)``: twice the farthest any curve stays from the corner (its nearest
    point, in the larger of the two gaps), rounded up to ``ZOOM_STEP``, so every curve crosses the window. None when a
    zoom adds nothing: every curve reaches the corner, or one never comes near it (``s >= NO_ZOOM_FROM``)."""
    reach = []
    for fpr, tpr in curves:
        gaps = np.maximum(np.asarray(fpr, dtype=float), 1.0 - np.asarray(tpr, dtype=float))
        if np.isfinite(gaps).any():
            reach.append(float(np.nanmin(gaps)))
    if not reach or max(reach) == 0.0:
        return None
    side = ZOOM_STEP * math.ceil(round(2 * max(reach) / ZOOM_STEP, 9))
    return side if side < NO_ZOOM_FROM else None


def _zoom_to(ax, side: float) -> None:
    margin = side / 40
    ax.set_xlim(-margin, side)
    ax.set_ylim(1.0 - side, 1.0 + margin)


def _roc_panel(ax, folds: Sequence[Curves], ensemble: Curves | None, cls: int, title: str) -> None:
    """One one-vs-rest ROC panel; where the curves hug the top-left corner an inset zooms into the corner window
    they pass through (``zoom_side``)."""
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="chance")
    lines = []
    for curve in folds:
        fpr, tpr, auc = _roc(curve.labels == cls, curve.probs[:, cls])
        lines.append((fpr, tpr, {"linewidth": 1, "alpha": 0.75}, auc, curve.name))
    if ensemble is not None:
        fpr, tpr, auc = _roc(ensemble.labels == cls, ensemble.probs[:, cls])
        lines.append((fpr, tpr, {"linewidth": 2.8, "color": "black"}, auc, ensemble.name))
    for fpr, tpr, style, auc, name in lines:
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.4f})", **style)
    ax.set_xlim(-0.01, 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_aspect("equal")
    set_title(ax, title, 11)
    ax.set_xlabel("False positive rate (1 − specificity)")
    ax.set_ylabel("True positive rate (sensitivity)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    plain_ticks(ax)
    side = zoom_side([(fpr, tpr) for fpr, tpr, *_ in lines])
    if side is not None:
        inset = ax.inset_axes((0.36, 0.36, 0.5, 0.4))
        inset.set_label("zoom")
        for fpr, tpr, style, _auc, _name in lines:
            inset.plot(fpr, tpr, **style)
        _zoom_to(inset, side)
        inset.set_title(f"zoom: FPR ≤ {side:.2f}, TPR ≥ {1 - side:.2f}", fontsize=8)
        inset.tick_params(labelsize=7)
        inset.grid(alpha=0.3)
        plain_ticks(inset)


def roc_figure(
    title: str,
    folds: Sequence[Curves],
    ensemble: Curves | None,
    class_names: Sequence[str],
    positive_class: str,
) -> Figure:
    """One panel per class, one-vs-rest; the positive class first (its panel is the two-class COVID-19 vs rest ROC).

    Folds are thin lines, the ensemble (or the single run) a thick black line; each legend entry gives its AUC.
    """
    p = list(class_names).index(positive_class)
    order = [p, *(c for c in range(len(class_names)) if c != p)]
    fig = Figure(figsize=(5.2 * len(order), 5.6), layout="constrained")
    axes = fig.subplots(1, len(order))
    for ax, c in zip(np.atleast_1d(axes), order, strict=True):
        kind = "two classes" if c == p else "one-vs-rest"
        _roc_panel(ax, folds, ensemble, c, f"{display(class_names[c])} vs rest ({kind})")
    set_suptitle(fig, f"ROC on the test set — {title}", 13)
    return fig


def plot_roc(path: str | os.PathLike[str] | BinaryIO, *args: Any, **kwargs: Any) -> None:
    """``roc_figure(*args)`` as a PNG."""
    save(roc_figure(*args, **kwargs), path)


def roc_comparison_figure(curves: Sequence[Curves], class_names: Sequence[str], positive_class: str) -> Figure:
    """The two-class (COVID-19 vs rest) ROC of every row's ensemble on one plot, and beside it a zoom into the
    top-left window the curves pass through (none where it would show nothing new, see ``zoom_side``)."""
    p = list(class_names).index(positive_class)
    rocs = [(curve, *_roc(curve.labels == p, curve.probs[:, p])) for curve in curves]
    side = zoom_side([(fpr, tpr) for _, fpr, tpr, _ in rocs])
    fig = Figure(figsize=(12 if side is not None else 6.4, 5.8), layout="constrained")
    panels = np.atleast_1d(fig.subplots(1, 2 if side is not None else 1))
    for ax, zoomed in zip(panels, (False, True), strict=False):
        ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1)
        for curve, fpr, tpr, auc in rocs:
            ax.plot(fpr, tpr, linewidth=2, label=f"{curve.name} (AUC {auc:.4f})")
        if zoomed:
            ax.set_label("zoom")
            _zoom_to(ax, side)
            set_title(ax, f"zoom: FPR ≤ {side:.2f}, TPR ≥ {1 - side:.2f}", 11)
        else:
            ax.set_xlim(-0.005, 1.0)
            ax.set_ylim(0.0, 1.005)
            if side is not None:
                set_title(ax, "full range", 11)
        ax.set_aspect("equal")
        ax.set_xlabel("False positive rate (1 − specificity)")
        ax.set_ylabel("True positive rate (sensitivity)")
        ax.grid(alpha=0.3)
        if not zoomed:  # one legend: in the zoom it would cover the curves
            ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
        plain_ticks(ax)
    set_suptitle(fig, f"{display(positive_class)} vs rest: ROC of each row (fold ensemble or single run)", 13)
    return fig


def plot_roc_comparison(path: str | os.PathLike[str] | BinaryIO, *args: Any, **kwargs: Any) -> None:
    """``roc_comparison_figure(*args)`` as a PNG."""
    save(roc_comparison_figure(*args, **kwargs), path)


def confusion_matrix(labels: np.ndarray, probs: np.ndarray, k: int) -> np.ndarray:
    """(true x predicted) counts of argmax decisions."""
    return np.bincount(labels * k + probs.argmax(axis=1), minlength=k * k).reshape(k, k)


def _matrix_panel(
    ax, matrix: np.ndarray, names: Sequence[str], title: str, normalised: bool, small: bool = False, vmax: int = 0
) -> Any:
    """One confusion matrix with its cell values; returns the image (for a colourbar). ``vmax``: the top of the
    colour scale of counts shared with other panels (default: this matrix's largest count)."""
    if normalised:
        sums = matrix.sum(axis=1, keepdims=True)
        shown = np.divide(matrix, sums, out=np.zeros_like(matrix, dtype=float), where=sums > 0)
        image = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=1.0)
        top = 1.0
    else:
        shown = matrix
        top = max(1, vmax or int(matrix.max()))
        image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=top)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            text = f"{100 * shown[i, j]:.1f}%\n({int(matrix[i, j])})" if normalised else f"{int(matrix[i, j])}"
            colour = "white" if shown[i, j] > 0.55 * top else "black"
            ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=9 if small else 11)
    ticks = np.arange(len(names))
    tick_labels = [display(n).replace(" (", "\n(") for n in names]  # "COVID-19 (NCP)" on two lines
    ax.set_xticks(ticks, tick_labels, fontsize=8 if small else None)
    ax.set_yticks(ticks, tick_labels, va="center", fontsize=8 if small else None)
    ax.set_xlabel("Predicted class", fontsize=9 if small else None)
    ax.set_ylabel("True class", fontsize=9 if small else None)
    set_title(ax, title, 10 if small else 11)
    return image


def _colourbar(owner: Any, image: Any, axes: Any, normalised: bool) -> None:
    bar = owner.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    if normalised:
        bar.set_label("fraction of the true class")
    else:  # scans are counted in whole numbers
        bar.locator = MaxNLocator(integer=True)
        bar.update_ticks()
        bar.set_label("scans")
    plain_ticks(bar.ax)


FOLD_COLUMNS = 3


def confusion_figure(
    title: str,
    class_names: Sequence[str],
    ensemble: np.ndarray,
    per_fold: Sequence[tuple[str, np.ndarray]] = (),
    ensemble_name: str = "fold ensemble",
) -> Figure:
    """Counts and row-normalised (recall per true class) matrices of the ensemble (or single run) and, below, the
    counts of each fold model on one colour scale: every fold is tested on the same test set, so a sum over folds
    would count each test scan once per fold."""
    columns = min(FOLD_COLUMNS, len(per_fold))
    rows = math.ceil(len(per_fold) / columns) if per_fold else 0
    fig = Figure(figsize=(11, 5.0 + 3.4 * rows), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=(5.0, 3.4 * rows)) if per_fold else (fig, None)
    for ax, normalised in zip(top.subplots(1, 2), (False, True), strict=True):
        kind = "row-normalised" if normalised else "counts"
        image = _matrix_panel(ax, ensemble, class_names, f"{ensemble_name}: {kind}", normalised)
        _colourbar(top, image, ax, normalised)
    if bottom is not None:
        grid = bottom.subplots(rows, columns, squeeze=False)
        shared = max(int(matrix.max()) for _, matrix in per_fold)
        used = grid.ravel()[: len(per_fold)]
        for ax, (name, matrix) in zip(used, per_fold, strict=True):
            image = _matrix_panel(ax, matrix, class_names, f"{name}: counts", False, small=True, vmax=shared)
        for ax in grid.ravel()[len(per_fold) :]:
            ax.remove()
        _colourbar(bottom, image, list(used), normalised=False)
    set_suptitle(fig, f"Confusion matrices on the test set — {title}", 13)
    return fig


def plot_confusion(path: str | os.PathLike[str] | BinaryIO, *args: Any, **kwargs: Any) -> None:
    """``confusion_figure(*args)`` as a PNG."""
    save(confusion_figure(*args, **kwargs), path)


@dataclass
class Reliability:
    """Top-label reliability of one set of probabilities (scans or patients), in equal-width confidence bins."""

    name: str
    probs: np.ndarray
    labels: np.ndarray
    ece: float | None = None  # the report's number, shown in the legend
    brier: float | None = None


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> tuple[np.ndarray, ...]:
    """Per bin of the top-label confidence: count, mean confidence and accuracy (NaN in empty bins). Bins as
    ``darnet_pl.metrics.expected_calibration_error`` makes them (``edge_i <= confidence < edge_i+1``), except that a
    confidence of exactly 1, a bin of its own there, is drawn in the last bar."""
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_conf = np.where(count > 0, np.bincount(index, confidence, n_bins) / np.maximum(count, 1), np.nan)
        accuracy = np.where(count > 0, np.bincount(index, correct, n_bins) / np.maximum(count, 1), np.nan)
    return count, mean_conf, accuracy


def reliability_figure(title: str, panels: Sequence[Reliability], n_bins: int = 15) -> Figure:
    """One reliability diagram per panel (e.g. scans, patients): accuracy of the argmax decision per confidence
    bin (bars) against the bin's mean confidence (dots; perfect calibration: on the diagonal), the gap between them
    a red line, and below it how many samples each bin holds."""
    fig = Figure(figsize=(5.6 * len(panels), 6.4), layout="constrained")
    grid = fig.add_gridspec(2, len(panels), height_ratios=(3, 1))
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    centres, width = (edges[:-1] + edges[1:]) / 2, 1.0 / n_bins
    for i, panel in enumerate(panels):
        top = fig.add_subplot(grid[0, i])
        bottom = fig.add_subplot(grid[1, i], sharex=top)
        count, mean_conf, accuracy = reliability_bins(panel.probs, panel.labels, n_bins)
        filled = count > 0
        top.plot([0, 1], [0, 1], linestyle="--", color="0.5", linewidth=1, label="perfect calibration")
        top.bar(centres[filled], accuracy[filled], width=width, color="tab:blue", alpha=0.8, edgecolor="white",
                label="accuracy")  # fmt: skip
        top.vlines(centres[filled], accuracy[filled], mean_conf[filled], color="tab:red", linewidth=1.5)
        top.plot(centres[filled], mean_conf[filled], "o", color="tab:red", markersize=4,
                 label="mean confidence (line: the gap)")  # fmt: skip
        # no-break spaces: a wrapped title breaks between the numbers, not inside "ECE 0.0123"
        numbers = [f"ECE\u00a0{panel.ece:.4f}" if panel.ece is not None else None]
        numbers.append(f"Brier\u00a0{panel.brier:.4f}" if panel.brier is not None else None)
        shown = ", ".join(n for n in numbers if n)
        set_title(top, f"{panel.name} (n\u00a0=\u00a0{len(panel.labels)}{', ' + shown if shown else ''})", 11)
        top.set_xlim(0.0, 1.0)
        top.set_ylim(0.0, 1.03)
        top.set_ylabel("Accuracy")
        top.grid(alpha=0.3)
        top.legend(loc="upper left", fontsize=8, framealpha=0.9)
        top.tick_params(labelbottom=False)
        bottom.bar(centres, count, width=width, color="0.5", edgecolor="white")
        bottom.yaxis.set_major_locator(MaxNLocator(integer=True))
        bottom.set_xlabel("Confidence (top-label probability)")
        bottom.set_ylabel("count")
        bottom.grid(alpha=0.3)
        plain_ticks(top)
        plain_ticks(bottom)
    set_suptitle(fig, f"Reliability on the test set — {title}", 13)
    return fig


def plot_reliability(path: str | os.PathLike[str] | BinaryIO, *args: Any, **kwargs: Any) -> None:
    """``reliability_figure(*args)`` as a PNG."""
    save(reliability_figure(*args, **kwargs), path)

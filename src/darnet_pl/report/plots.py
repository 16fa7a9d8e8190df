"""ROC curves, confusion matrices and reliability diagrams as PNG.

Uses matplotlib's object API (``Figure``, rendered by Agg on save) and never ``pyplot``: no global backend is
switched, no GUI is needed, and nothing leaks between figures when a Hydra callback calls this inside a
long-running process. Every file is written atomically.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import auc as area_under
from sklearn.metrics import roc_curve

from darnet_pl.report.tables import CLASS_DISPLAY
from darnet_pl.utils.io import atomic_path

DPI = 150


@dataclass
class Curves:
    """Probabilities of one model (a fold, a single run or an ensemble) on its test scans."""

    name: str
    probs: np.ndarray
    labels: np.ndarray


def display(name: str) -> str:
    return CLASS_DISPLAY.get(name, name)


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


def _roc_panel(ax, folds: Sequence[Curves], ensemble: Curves | None, cls: int, title: str) -> None:
    """One one-vs-rest ROC panel; where every model is good (AUC >= 0.9, as in the paper) the curves hug the
    corner, so an inset zooms into false positive rate <= 0.2, true positive rate >= 0.8."""
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
    ax.set_title(title, fontsize=11)
    ax.set_xlabel("False positive rate (1 − specificity)")
    ax.set_ylabel("True positive rate (sensitivity)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    if lines and min(line[3] for line in lines) >= 0.9:
        inset = ax.inset_axes((0.36, 0.36, 0.5, 0.4))
        for fpr, tpr, style, _auc, _name in lines:
            inset.plot(fpr, tpr, **style)
        inset.set_xlim(-0.005, 0.2)
        inset.set_ylim(0.8, 1.005)
        inset.set_title("zoom", fontsize=8)
        inset.tick_params(labelsize=7)
        inset.grid(alpha=0.3)


def plot_roc(
    path: str | os.PathLike[str] | BinaryIO,
    title: str,
    folds: Sequence[Curves],
    ensemble: Curves | None,
    class_names: Sequence[str],
    positive_class: str,
) -> None:
    """One panel per class, one-vs-rest; the positive class first (its panel is the two-class COVID-19 vs rest ROC).

    Folds are thin lines, the ensemble (or the single run) a thick black line; each legend entry gives its AUC.
    """
    p = list(class_names).index(positive_class)
    order = [p, *(c for c in range(len(class_names)) if c != p)]
    fig = Figure(figsize=(5.2 * len(order), 5.6))
    axes = fig.subplots(1, len(order))
    for ax, c in zip(np.atleast_1d(axes), order, strict=True):
        kind = "two classes" if c == p else "one-vs-rest"
        _roc_panel(ax, folds, ensemble, c, f"{display(class_names[c])} vs rest ({kind})")
    fig.suptitle(f"ROC on the test set — {title}", fontsize=13)
    fig.tight_layout()
    save(fig, path)


def plot_roc_comparison(
    path: str | os.PathLike[str] | BinaryIO, curves: Sequence[Curves], class_names: Sequence[str], positive_class: str
) -> None:
    """The two-class (COVID-19 vs rest) ROC of every row's ensemble on one plot, with a zoom on the top-left."""
    p = list(class_names).index(positive_class)
    fig = Figure(figsize=(12, 5.8))
    full, zoom = fig.subplots(1, 2)
    for ax, limits in ((full, (0.0, 1.0)), (zoom, (0.0, 0.3))):
        ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1)
        for curve in curves:
            fpr, tpr, auc = _roc(curve.labels == p, curve.probs[:, p])
            ax.plot(fpr, tpr, linewidth=2, label=f"{curve.name} (AUC {auc:.4f})")
        ax.set_xlim(limits[0] - 0.005, limits[1])
        ax.set_ylim(1.0 - limits[1], 1.005)
        ax.set_aspect("equal")
        ax.set_xlabel("False positive rate (1 − specificity)")
        ax.set_ylabel("True positive rate (sensitivity)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    full.set_title("full range", fontsize=11)
    zoom.set_title("zoom: top-left corner", fontsize=11)
    fig.suptitle(f"{display(positive_class)} vs rest: ROC of each row (fold ensemble or single run)", fontsize=13)
    fig.tight_layout()
    save(fig, path)


def confusion_matrix(labels: np.ndarray, probs: np.ndarray, k: int) -> np.ndarray:
    """(true x predicted) counts of argmax decisions."""
    return np.bincount(labels * k + probs.argmax(axis=1), minlength=k * k).reshape(k, k)


def _matrix_panel(ax, matrix: np.ndarray, names: Sequence[str], title: str, normalised: bool) -> None:
    if normalised:
        sums = matrix.sum(axis=1, keepdims=True)
        shown = np.divide(matrix, sums, out=np.zeros_like(matrix, dtype=float), where=sums > 0)
        image = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=1.0)
    else:
        shown = matrix
        image = ax.imshow(shown, cmap="Blues", vmin=0)
    top = float(shown.max()) or 1.0
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            text = f"{100 * shown[i, j]:.1f}%\n({int(matrix[i, j])})" if normalised else f"{int(matrix[i, j])}"
            colour = "white" if shown[i, j] > 0.55 * top else "black"
            ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=11)
    ticks = np.arange(len(names))
    tick_labels = [display(n).replace(" (", "\n(") for n in names]  # "COVID-19 (NCP)" on two lines
    ax.set_xticks(ticks, tick_labels)
    ax.set_yticks(ticks, tick_labels, va="center")
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    ax.set_title(title, fontsize=11)
    bar = ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("fraction of the true class" if normalised else "scans")


def plot_confusion(
    path: str | os.PathLike[str] | BinaryIO,
    title: str,
    class_names: Sequence[str],
    ensemble: np.ndarray,
    folds_summed: np.ndarray | None,
    n_folds: int,
    ensemble_name: str = "fold ensemble",
) -> None:
    """Counts and row-normalised (recall per true class) matrices: the ensemble, and the folds' matrices summed."""
    panels = [(ensemble, f"{ensemble_name}: counts", False), (ensemble, f"{ensemble_name}: row-normalised", True)]
    if folds_summed is not None:
        panels += [
            (folds_summed, f"{n_folds} folds summed: counts", False),
            (folds_summed, f"{n_folds} folds summed: row-normalised", True),
        ]
    rows = len(panels) // 2
    fig = Figure(figsize=(11, 5.0 * rows))
    axes = np.atleast_2d(fig.subplots(rows, 2))
    for ax, (matrix, subtitle, normalised) in zip(axes.ravel(), panels, strict=True):
        _matrix_panel(ax, matrix, class_names, subtitle, normalised)
    fig.suptitle(f"Confusion matrices on the test set — {title}", fontsize=13)
    fig.tight_layout()
    save(fig, path)


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


def plot_reliability(
    path: str | os.PathLike[str] | BinaryIO, title: str, panels: Sequence[Reliability], n_bins: int = 15
) -> None:
    """One reliability diagram per panel (e.g. scans, patients): accuracy of the argmax decision per confidence
    bin (bars) against the bin's mean confidence (dots; perfect calibration: on the diagonal), the gap between them
    a red line, and below it how many samples each bin holds."""
    fig = Figure(figsize=(5.6 * len(panels), 6.4))
    grid = fig.add_gridspec(2, len(panels), height_ratios=(3, 1), hspace=0.08)
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
        numbers = [f"ECE {panel.ece:.4f}" if panel.ece is not None else None]
        numbers.append(f"Brier {panel.brier:.4f}" if panel.brier is not None else None)
        shown = ", ".join(n for n in numbers if n)
        top.set_title(f"{panel.name} (n = {len(panel.labels)}{', ' + shown if shown else ''})", fontsize=11)
        top.set_xlim(0.0, 1.0)
        top.set_ylim(0.0, 1.03)
        top.set_ylabel("Accuracy")
        top.grid(alpha=0.3)
        top.legend(loc="upper left", fontsize=8, framealpha=0.9)
        top.tick_params(labelbottom=False)
        bottom.bar(centres, count, width=width, color="0.5", edgecolor="white")
        bottom.set_xlabel("Confidence (top-label probability)")
        bottom.set_ylabel("count")
        bottom.grid(alpha=0.3)
    fig.suptitle(f"Reliability on the test set — {title}", fontsize=13)
    save(fig, path)

"""Plots without defects (issue #20, item 5): every figure the report and ``darnet-predict --cam`` draw is rendered
and checked on its matplotlib objects - titles inside the figure, tick labels without offset or scientific
notation, ROC zoom windows chosen from the curves (each curve crosses the window) or no zoom, integer ticks on
colourbars of counts, and the folds' shared test set counted once per panel, never summed over folds.
"""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import ScalarFormatter

from darnet_pl.explain.overlay import depth_curve_figure, montage_figure
from darnet_pl.report import plots
from tests.helpers.report_jobs import CLASSES, cohort, model_probs

SCANS = cohort(30, seed=0)
LABELS = np.array([s[2] for s in SCANS])
LONG = "DARNet (w/o DA; shortcut control), experiment=ablation model.optimizer.lr=0.0001 data.size=[16,64,64]"


def curves(strength: float, n_folds: int = 3) -> tuple[list[plots.Curves], plots.Curves]:
    folds = [plots.Curves(f"fold {k}", model_probs(SCANS, seed=k, strength=strength), LABELS) for k in range(n_folds)]
    mean = np.mean([c.probs for c in folds], axis=0)
    return folds, plots.Curves("fold ensemble", mean, LABELS)


def drawn(fig: Figure) -> Figure:
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    return fig


def all_axes(fig: Figure) -> list[Axes]:
    """Every Axes of the figure: subfigures', insets and colourbars included."""
    return list(fig.findobj(lambda artist: isinstance(artist, Axes)))


def with_subfigures(fig) -> list:
    return [fig, *(part for sub in fig.subfigs for part in with_subfigures(sub))]


def defects(fig: Figure) -> list[str]:
    """What a reader would see wrong: a title cut off at the figure's edge, an offset or scientific multiplier
    beside an axis, a fractional tick on a colourbar of counts."""
    drawn(fig)
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    found = []
    titles = [part._suptitle for part in with_subfigures(fig)]
    for ax in all_axes(fig):
        titles += [ax.title, ax._left_title, ax._right_title]
        for axis in (ax.xaxis, ax.yaxis):
            formatter = axis.get_major_formatter()
            if isinstance(formatter, ScalarFormatter) and axis.get_offset_text().get_text():
                found.append(f"offset {axis.get_offset_text().get_text()!r} on {ax.get_label() or ax}")
        bar = getattr(ax, "_colorbar", None)
        if bar is not None and bar.ax.get_ylabel() == "scans":
            low, high = bar.ax.get_ylim()
            ticks = [t for t in bar.get_ticks() if low <= t <= high]
            if any(float(t) != round(float(t)) for t in ticks):
                found.append(f"fractional ticks on a colourbar of counts: {ticks}")
    for title in titles:
        if title is None or not title.get_text() or not title.get_visible():
            continue
        extent = title.get_window_extent(renderer)
        if extent.x0 < box.x0 - 1 or extent.x1 > box.x1 + 1 or extent.y0 < box.y0 - 1 or extent.y1 > box.y1 + 1:
            found.append(f"title cut off: {title.get_text()!r}")
    return found


def zooms(fig: Figure) -> list[Axes]:
    return [ax for ax in all_axes(fig) if ax.get_label() == "zoom"]


def curve_lines(ax: Axes) -> list[Line2D]:
    """The ROC curves drawn in ``ax`` (the chance diagonal aside)."""
    return [line for line in ax.get_lines() if len(line.get_xdata()) > 2 or line.get_linestyle() != "--"]


def crosses(line: Line2D, ax: Axes) -> bool:
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
    return bool(np.any((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)))


@pytest.mark.parametrize("strength", [3.5, 2.2, 0.4], ids=["strong", "good", "weak"])
def test_roc_figures_have_no_defects_and_zoom_where_the_curves_are(strength: float) -> None:
    folds, ensemble = curves(strength)
    for fig in (
        plots.roc_figure(LONG, folds, ensemble, CLASSES, "NCP"),
        plots.roc_comparison_figure([ensemble, folds[0]], CLASSES, "NCP"),
    ):
        assert defects(fig) == []
        windows = zooms(fig)
        if strength == 0.4:  # curves far from the corner: a zoom would show nothing new
            assert windows == []
            continue
        assert windows, "the curves hug the corner: a zoom belongs there"
        for ax in windows:
            assert curve_lines(ax) and all(crosses(line, ax) for line in curve_lines(ax)), "an empty zoom"
            side = ax.get_xlim()[1]
            assert side < plots.NO_ZOOM_FROM and ax.get_ylim()[0] == pytest.approx(1 - side)


def test_the_zoom_window_follows_the_data() -> None:
    strong, good = (plots.roc_comparison_figure([curves(s)[0][0]], CLASSES, "NCP") for s in (3.5, 2.2))
    (strong_zoom,), (good_zoom,) = zooms(drawn(strong)), zooms(drawn(good))
    assert strong_zoom.get_xlim()[1] < good_zoom.get_xlim()[1]
    assert plots.zoom_side([(np.array([0.0, 0.0, 1.0]), np.array([0.0, 1.0, 1.0]))]) is None  # perfect: no zoom


def test_confusion_counts_each_test_scan_once_per_panel_with_integer_colourbars() -> None:
    folds, ensemble = curves(2.2, n_folds=5)
    k = len(CLASSES)
    per_fold = [(c.name, plots.confusion_matrix(c.labels, c.probs, k)) for c in folds]
    matrix = plots.confusion_matrix(ensemble.labels, ensemble.probs, k)
    fig = plots.confusion_figure(LONG, CLASSES, matrix, per_fold)
    assert defects(fig) == []
    panels = {ax.get_title(): ax for ax in all_axes(fig) if ax.images}
    assert not any("summed" in title for title in panels)
    count_panels = [ax for title, ax in panels.items() if title.endswith("counts")]
    assert len(count_panels) == 1 + len(folds)
    for ax in count_panels:  # every panel of counts holds the test set once
        assert ax.images[0].get_array().sum() == len(SCANS)
    tiny = np.array([[1, 0, 0], [0, 2, 0], [0, 0, 1]])  # counts of 0..2: a default colourbar would tick 0.25, 0.5...
    assert defects(plots.confusion_figure("single run", CLASSES, tiny, ensemble_name="run (fold 0)")) == []


def test_reliability_figure_has_no_defects() -> None:
    _, ensemble = curves(2.2)
    panels = [plots.Reliability(f"{LONG}, {which}", ensemble.probs, ensemble.labels, 0.0123, 0.2345)
              for which in ("scans", "patients")]  # fmt: skip
    fig = plots.reliability_figure(LONG, panels)
    assert defects(fig) == []
    counts = [ax for ax in all_axes(fig) if ax.get_ylabel() == "count"]
    assert counts and all(float(t).is_integer() for ax in counts for t in ax.get_yticks())


def test_depth_attention_curve_and_montage_have_no_defects() -> None:
    name = "patient017_series2_a_rather_long_scan_name_from_a_dicom_folder"
    weights = 0.5012 + 2e-6 * np.sin(np.linspace(0, 6, 64))  # so flat that matplotlib would write "1e-6+5.012e-1"
    fig = depth_curve_figure(weights, title=f"{name}: depth attention (mean of 5 model(s), all DA modules)")
    assert defects(fig) == []
    (ax,) = fig.axes
    assert all(float(t).is_integer() for t in ax.get_xticks())  # slices
    volume = np.random.default_rng(0).random((16, 32, 32), dtype=np.float32)
    montage = montage_figure(volume, volume, title=f"{name}: predicted NCP; CAM for NCP",
                             probabilities={"CP": 0.1, "NCP": 0.8, "Normal": 0.1})  # fmt: skip
    assert defects(montage) == []

"""Pictures of an explanation: a montage of axial slices with the heat map over the CT, and the DA curve.

Volumes are (D, H, W) in the preprocessing's orientation (docs/explanation/preprocessing.md): slice 0 is superior,
row 0 anterior, column 0 the patient's right. ``imshow`` draws row 0 at the top and column 0 on the left, so the
slices appear in the radiological convention without any flip: anterior at the top, the patient's right on the
image's left. The panels carry A/P/R/L marks so that a reader can check it.

Matplotlib is used through ``Figure`` objects and the Agg canvas, never through ``pyplot``: no global figure
state, no display needed, safe in worker threads and in a Lightning callback. Every PNG is written atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from darnet_pl.utils.io import atomic_path
from darnet_pl.utils.text import wrap_to_width

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DEFAULT_SLICES = 12
DEFAULT_CMAP = "jet"
TITLE_POINTS = 9
TITLE_LINE_INCHES = 0.16
"""Height of one line of a 9-point title."""


def pick_slices(depth: int, n: int = DEFAULT_SLICES) -> list[int]:
    """``n`` evenly spaced slice indices from the first to the last (all slices when there are fewer)."""
    if depth < 1:
        raise ValueError(f"depth must be positive, got {depth}")
    if n >= depth:
        return list(range(depth))
    return sorted(set(np.rint(np.linspace(0, depth - 1, n)).astype(int).tolist()))


def format_probabilities(probabilities: Mapping[str, float]) -> str:
    """``CP 0.12 · NCP 0.80 · Normal 0.08``."""
    return " · ".join(f"{name} {float(p):.2f}" for name, p in probabilities.items())


def _as_volume(array: np.ndarray | object, name: str) -> np.ndarray:
    volume = np.asarray(array, dtype=np.float32)
    if volume.ndim != 3:
        raise ValueError(f"{name} must be a (D, H, W) volume, got shape {volume.shape}")
    return volume


def _heat_rgba(heat: np.ndarray, cmap_name: str, alpha: float) -> np.ndarray:
    """RGBA image of ``heat`` whose opacity grows with the heat: cold regions leave the CT visible."""
    from matplotlib import colormaps

    rgba = colormaps[cmap_name](np.clip(heat, 0.0, 1.0))
    rgba[..., 3] = alpha * np.clip(heat, 0.0, 1.0)
    return rgba


def montage_figure(
    volume: np.ndarray,
    heatmap: np.ndarray,
    *,
    title: str = "",
    probabilities: Mapping[str, float] | None = None,
    slices: Sequence[int] | None = None,
    n_slices: int = DEFAULT_SLICES,
    cmap: str = DEFAULT_CMAP,
    alpha: float = 0.5,
    panel_inches: float = 2.0,
) -> Figure:
    """A grid of axial slices with ``heatmap`` (in [0, 1], same shape) blended over ``volume`` (0-1 or uint8).

    The title holds ``title`` and the class probabilities; every panel is labelled with its slice index.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    image = _as_volume(volume, "volume")
    if image.max(initial=0.0) > 1.0:
        image = image / 255.0
    heat = _as_volume(heatmap, "heatmap")
    if heat.shape != image.shape:
        raise ValueError(f"heat map shape {heat.shape} differs from the volume's {image.shape}")
    depth = image.shape[0]
    chosen = list(slices) if slices is not None else pick_slices(depth, n_slices)
    columns = min(len(chosen), 4 if len(chosen) <= 16 else 6)
    rows = math.ceil(len(chosen) / columns)
    aspect = image.shape[1] / image.shape[2]
    width = columns * panel_inches + 0.8
    lines = [title] if title else []
    if probabilities:
        lines.append(format_probabilities(probabilities))
    lines.append(f"slice index / {depth - 1} (0 = superior); A top, patient R on the left")
    heading = wrap_to_width("\n".join(lines), 0.9 * width, TITLE_POINTS)  # a long scan name must not be cut off
    header = 0.2 + TITLE_LINE_INCHES * (heading.count("\n") + 1)
    fig = Figure(figsize=(width, rows * panel_inches * aspect + header))
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(rows, columns, left=0.01, right=0.9, bottom=0.01, top=1 - header / fig.get_figheight())
    grid.update(wspace=0.03, hspace=0.03)
    for i, index in enumerate(chosen):
        ax = fig.add_subplot(grid[i // columns, i % columns])
        ax.imshow(image[index], cmap="gray", vmin=0.0, vmax=1.0, interpolation="bilinear")
        ax.imshow(_heat_rgba(heat[index], cmap, alpha), interpolation="bilinear")
        ax.set_axis_off()
        ax.text(
            0.03, 0.97, f"{index}/{depth - 1}", transform=ax.transAxes, va="top", ha="left", fontsize=8,
            color="white", bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "linewidth": 0},
        )  # fmt: skip
        if i == 0:
            _orientation_marks(ax)
    colorbar_axes = fig.add_axes((0.92, 0.1, 0.02, 0.7))
    fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap=cmap), cax=colorbar_axes, label="relevance")
    fig.suptitle(heading, fontsize=TITLE_POINTS, y=0.995, va="top")
    return fig


def _orientation_marks(ax: object) -> None:
    """A, P, R, L at the edges of a panel (radiological view)."""
    style = {"transform": ax.transAxes, "color": "yellow", "fontsize": 8, "fontweight": "bold"}
    ax.text(0.5, 0.98, "A", ha="center", va="top", **style)
    ax.text(0.5, 0.02, "P", ha="center", va="bottom", **style)
    ax.text(0.02, 0.5, "R", ha="left", va="center", **style)
    ax.text(0.98, 0.5, "L", ha="right", va="center", **style)


def depth_curve_figure(weights: np.ndarray, *, title: str = "depth attention") -> Figure:
    """Line plot of a per-slice DA curve (slice 0 = superior on the left); the title wrapped to the figure's width
    (a long scan name is not cut off) and the weights written as they are (no offset notation)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    curve = np.asarray(weights, dtype=np.float32).reshape(-1)
    width = 4.5
    wrapped = wrap_to_width(title, 0.9 * width, TITLE_POINTS)
    fig = Figure(figsize=(width, 2.4 + TITLE_LINE_INCHES * wrapped.count("\n")), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(np.arange(len(curve)), curve, marker="o", markersize=2.5, linewidth=1.2)
    ax.set_xlim(-0.5, len(curve) - 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # slices are whole numbers
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")  # never "+5.012e-1" beside the axis
    ax.set_xlabel("slice (0 = superior)")
    ax.set_ylabel("mean DA weight")
    fig.suptitle(wrapped, fontsize=TITLE_POINTS)  # centred on the figure, whose width it was wrapped to
    ax.grid(alpha=0.3)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG, atomically."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", facecolor="white")
    return Path(path)


def figure_to_rgb(fig: Figure) -> np.ndarray:
    """(H, W, 3) uint8 rendering of ``fig`` (for loggers that take arrays)."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def save_montage(path: str | os.PathLike[str], volume: np.ndarray, heatmap: np.ndarray, **kwargs: object) -> Path:
    """``montage_figure`` written as a PNG."""
    return save_figure(montage_figure(volume, heatmap, **kwargs), path)


def save_depth_curve(path: str | os.PathLike[str], weights: np.ndarray, **kwargs: object) -> Path:
    """``depth_curve_figure`` written as a PNG."""
    return save_figure(depth_curve_figure(weights, **kwargs), path)

"""Small geometric helpers in patient coordinates (lung, dome, heart and body outlines; vessel trees)."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from darnet_pl.data.phantoms.params import Anatomy, Lung


def smoothstep(t: np.ndarray) -> np.ndarray:
    """C1 ramp from 0 to 1: soft lesion borders without a visible kink."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def norm2d(
    x: np.ndarray,
    y: np.ndarray,
    cx: float,
    cy: float,
    ax: float,
    ay: float,
    angle: float = 0.0,
    p: float = 2.0,
) -> np.ndarray:
    """Superellipse 'radius' (1 on the outline) of points around a rotated shape; homogeneous of degree 1."""
    dx, dy = x - cx, y - cy
    if angle:
        c, s = math.cos(angle), math.sin(angle)
        dx, dy = c * dx + s * dy, -s * dx + c * dy
    if p == 2.0:
        return np.sqrt((dx / ax) ** 2 + (dy / ay) ** 2)
    return (np.abs(dx / ax) ** p + np.abs(dy / ay) ** p) ** (1.0 / p)


def lung_scale(a: Anatomy, z: np.ndarray, inspiration: float = 1.0) -> np.ndarray:
    """Lung cross-section scale at depth ``z``: domed apex, full mid-zone, narrowing base; -1 outside."""
    z = np.asarray(z, dtype=np.float64)
    up = np.clip((z - a.z_apex) / (a.z_full - a.z_apex), 0.0, 1.0)
    down = np.clip((z - a.z_full) / (a.z_base - a.z_full), 0.0, 1.0)
    s = np.sqrt(1.0 - (1.0 - up) ** 2) * (1.0 - 0.12 * down**2) * inspiration
    return np.where((z >= a.z_apex) & (z <= a.z_base + 0.03), s, -1.0)


def dome_scale(a: Anatomy, z: np.ndarray, side_index: int) -> np.ndarray:
    """Diaphragm dome (liver / spleen) cross-section: a spherical cap growing caudally, covering the base."""
    z = np.asarray(z, dtype=np.float64)
    t = (z - a.dome_start[side_index]) / (a.z_base + 0.02 - a.dome_start[side_index])
    s = np.sqrt(1.0 - (1.0 - np.clip(t, 0.0, 1.0)) ** 2)
    return np.where(t >= 0.0, s, -1.0)


def heart_scale(a: Anatomy, z: np.ndarray) -> np.ndarray:
    """Heart cross-section: an ellipsoid from ``z_top`` merging into the diaphragm; -1 above it."""
    z = np.asarray(z, dtype=np.float64)
    z_top, z_c = a.heart[4], a.heart[5]
    t = np.clip((z - z_c) / (z_c - z_top), -1.0, 0.0)  # full size from the centre down to the diaphragm
    return np.where(z >= z_top, np.sqrt(1.0 - t**2), -1.0)


def body_scale(z: np.ndarray) -> np.ndarray:
    """Body cross-section: slightly narrower at the thoracic inlet, slightly wider over the upper abdomen."""
    z = np.asarray(z, dtype=np.float64)
    return 1.0 - 0.06 * (1.0 - smoothstep(z / 0.25)) + 0.03 * np.clip((z - 0.75) / 0.25, 0.0, 1.0)


def mediastinum_scale(z: np.ndarray) -> np.ndarray:
    """Mediastinum width: widest at the aortic arch / great vessels."""
    z = np.asarray(z, dtype=np.float64)
    return 1.0 + 0.35 * np.exp(-(((z - 0.3) / 0.09) ** 2))


def in_lung(a: Anatomy, x: float, y: float, z: float, margin: float = 0.9) -> bool:
    """Whether a point lies well inside a lung (not under the heart, mediastinum or diaphragm)."""
    s = float(lung_scale(a, z))
    if s <= 0.2:
        return False
    inside = any(float(norm2d(x, y, L.cx, L.cy, L.ax, L.ay, L.tilt)) < margin * s for L in a.lungs)
    hx, hy, hax, hay = a.heart[:4]
    blocked = float(norm2d(x, y, hx, hy, hax, hay)) < float(heart_scale(a, z)) * 1.1
    mx, my, max_, may = a.mediastinum
    blocked |= float(norm2d(x, y, mx, my, max_, may)) < float(mediastinum_scale(z)) * 1.1
    for i, L in enumerate(a.lungs):
        dcx, dcy, dax, day = dome_geometry(L)
        blocked |= float(norm2d(x, y, dcx, dcy, dax, day)) < float(dome_scale(a, z, i)) * 1.1
    return inside and not blocked


def dome_geometry(lung: Lung) -> tuple[float, float, float, float]:
    """Dome ellipse under a lung: centred anteriorly so the posterior costophrenic recess goes last."""
    return lung.cx * 0.92, lung.cy - 0.25 * lung.ay, lung.ax * 1.4, lung.ay * 1.5


def lung_point(a: Anatomy, side: int, z: ArrayLike, delta: ArrayLike, rho: ArrayLike) -> tuple:
    """Point(s) of the ``side`` lung at depth ``z``; ``delta`` turns from lateral (0) to posterior (+pi/2)."""
    lung = a.lungs[0] if side < 0 else a.lungs[1]
    s = np.maximum(lung_scale(a, z), 0.0)
    theta = (math.pi if side < 0 else 0.0) + side * np.asarray(delta)
    lx, ly = rho * s * lung.ax * np.cos(theta), rho * s * lung.ay * np.sin(theta)
    c, sn = math.cos(lung.tilt), math.sin(lung.tilt)
    return lung.cx + c * lx - sn * ly, lung.cy + sn * lx + c * ly

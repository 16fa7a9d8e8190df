"""Deterministic synthetic chest-CT phantoms for CP / NCP (COVID-19) / Normal.

The project's built-in default dataset: no download, any volume size, seeded, and hard enough that a
3D CNN has to look at lesion morphology and location (not at global intensity) to classify.

Volume layout and orientation
-----------------------------
Volumes are ``(D, H, W)`` float32 arrays in ``[0, 1]``, intensities as in a lung window (air 0, lung
parenchyma ~0.1-0.2, ground-glass ~0.35-0.5, consolidation / soft tissue ~0.6-0.75, bone ~0.9-1):

* axis 0 (D) is cranio-caudal: slice 0 is at the lung apex (top), the last slice below the lung bases;
* axis 1 (H) is anterior -> posterior: row 0 is the front of the chest, the spine is at the bottom;
* axis 2 (W) is patient right -> patient left: column 0 is the patient's right, as radiologists view
  axial slices (the right lung is on the left of the image, the heart bulges to the image right).

Geometry is defined in continuous patient coordinates and only rasterised at the end, so one phantom
looks the same at every size: ``x`` in ``[-1, 1]`` along W (``x < 0`` is the right lung), ``y`` in
``[-1, 1]`` along H (``y < 0`` is anterior) and ``z`` in ``[0, 1]`` along D. Physical lengths (radii,
vessels) are in x-units (1 x-unit ~ 175 mm, half the field of view); ``_Z_LEN`` converts z to x-units.

What is simulated
-----------------
Anatomy: body with skin and subcutaneous fat, ribs, two lungs tapering to the apex and carved at the base
by the diaphragm domes, mediastinum, heart, aorta, spine, trachea and main bronchi, and branching
pulmonary vessels. Findings: NCP has several faint, soft, subpleural ground-glass opacities, usually in
both lungs and in the lower / posterior zones; CP has a dense lobar or segmental consolidation in one lung
(often with air bronchograms), sometimes with a small contralateral focus; Normal has none. About one
diseased patient in five is a mild case (few, small, faint lesions). Nuisances: patient size and shape,
in-plane rotation and translation, breathing, lesion progression between scans, a smooth bias field,
global contrast / brightness jitter and Gaussian noise, so that global intensity statistics are useless
as a shortcut. Lesions of mild cases can vanish below ~16x48x48.

Randomness
----------
A patient (anatomy, disease pattern, lesion layout) is drawn from ``default_rng([seed, patient, label,
1])``, a scan of that patient (pose, breathing, lesion progression, contrast) from ``default_rng([seed,
patient, label, 2, scan])`` and its noise from ``default_rng([seed, patient, label, 2, scan, 1])``. A
volume therefore depends only on those numbers and the size, never on which other scans were rendered
before it or in which process. The number of scans of a patient in :func:`synthetic_cohort` comes from
``default_rng([seed, patient, 3])``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike

CLASS_NAMES: tuple[str, ...] = ("CP", "NCP", "Normal")
CP, NCP, NORMAL = 0, 1, 2

_Z_LEN = 1.7  # length of the scanned range (z from 0 to 1) in x-units: ~300 mm of chest vs 175 mm
_TAG_PATIENT, _TAG_SCAN, _TAG_COHORT = 1, 2, 3

# Lung-window intensities before the scanner nuisances (contrast, bias field, noise) are applied.
_SKIN, _FAT, _SOFT, _MEDIASTINUM, _HEART = 0.76, 0.55, 0.68, 0.6, 0.71
_BONE, _MARROW, _RIB, _VESSEL, _AIRWAY = 0.97, 0.84, 0.9, 0.62, 0.03

_CONTRAST_PIVOT = 0.2  # contrast jitter pivots near the lung level, so air stays the darkest

Box = tuple[slice, slice, slice]


@dataclass(frozen=True)
class SyntheticScan:
    """One synthetic CT scan: identifiers, label and the indices that seed its rendering."""

    patient_id: str
    scan_id: str
    label: int
    patient_index: int
    scan_index: int


# ----------------------------------------------------------------------------------------------------------
# Sampled parameters (patient level and scan level)
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Lung:
    """An elliptical lung cross-section at full size; ``side`` is -1 (right, x < 0) or +1 (left)."""

    side: int
    cx: float
    cy: float
    ax: float
    ay: float
    tilt: float


@dataclass(frozen=True, eq=False)
class _Anatomy:
    """Patient-specific anatomy, shared by all scans of a patient (this is what makes patients distinct)."""

    body_cy: float
    body_ax: float
    body_ay: float
    body_p: float
    skin: float
    fat_lat: float
    fat_ant: float
    fat_post: float
    lungs: tuple[_Lung, _Lung]
    z_apex: float
    z_full: float
    z_base: float
    dome_start: tuple[float, float]
    lung_value: float
    lung_gradient: float
    heart: tuple[float, float, float, float, float, float]  # cx, cy, ax, ay, z_top, z_centre
    mediastinum: tuple[float, float, float, float]  # cx, cy, ax, ay
    aorta: tuple[float, float, float]  # cx, cy, radius
    spine: tuple[float, float]  # centre y, vertebral-body radius
    vertebra_pitch: float
    vertebra_phase: float
    rib_pitch: float
    rib_phase: float
    rib_slope: float
    vessels: np.ndarray  # (n, 8): p0 (x, y, z_phys), p1, radius at p0, radius at p1
    airways: np.ndarray  # same layout: trachea and main bronchi


@dataclass(frozen=True, eq=False)
class _Lesion:
    """One opacity: a lobulated soft ellipsoid, optionally cut by a plane (fissure / wedge edge)."""

    dense: bool  # consolidation-like (painted over the vessels) rather than ground glass
    side: int
    center: tuple[float, float, float]  # x, y, z (z in z-units)
    radii: tuple[float, float, float]  # along ``angle``, across it, cranio-caudal; x-units
    angle: float
    intensity: float
    softness: float
    waves: np.ndarray  # (n, 4): frequencies on the normalised lesion coordinates and a phase
    wave_amp: float
    cut: tuple[float, float, float, float] | None  # unit normal (x, y, z_phys), offset from the centre
    bronchi: np.ndarray | None  # air-bronchogram tubes, tube layout as ``_Anatomy.vessels``
    bronchi_depth: float


@dataclass(frozen=True, eq=False)
class _Patient:
    """Everything that stays fixed across the scans of one patient."""

    label: int
    anatomy: _Anatomy
    lesions: tuple[_Lesion, ...]
    trend: float  # log lesion growth per follow-up scan
    pose: tuple[float, float, float, float, float]  # angle, tx, ty, z offset, z span


@dataclass(frozen=True, eq=False)
class _ScanParams:
    """What changes from one scan of a patient to the next."""

    pose: tuple[float, float, float, float, float]
    inspiration: float
    growth: np.ndarray  # per-lesion size factor
    noise: float
    contrast: float
    brightness: float
    bias_xy: tuple[float, float, float, float, float, float, float]  # amp_u, f_u, ph_u, amp_v, f_v, ph_v, cup
    bias_z: tuple[float, float, float]  # amplitude, frequency, phase


# ----------------------------------------------------------------------------------------------------------
# Small geometric helpers
# ----------------------------------------------------------------------------------------------------------


def _smoothstep(t: np.ndarray) -> np.ndarray:
    """C1 ramp from 0 to 1: soft lesion borders without a visible kink."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _norm2d(
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


def _lung_scale(a: _Anatomy, z: np.ndarray, inspiration: float = 1.0) -> np.ndarray:
    """Lung cross-section scale at depth ``z``: domed apex, full mid-zone, narrowing base; -1 outside."""
    z = np.asarray(z, dtype=np.float64)
    up = np.clip((z - a.z_apex) / (a.z_full - a.z_apex), 0.0, 1.0)
    down = np.clip((z - a.z_full) / (a.z_base - a.z_full), 0.0, 1.0)
    s = np.sqrt(1.0 - (1.0 - up) ** 2) * (1.0 - 0.12 * down**2) * inspiration
    return np.where((z >= a.z_apex) & (z <= a.z_base + 0.03), s, -1.0)


def _dome_scale(a: _Anatomy, z: np.ndarray, side_index: int) -> np.ndarray:
    """Diaphragm dome (liver / spleen) cross-section: a spherical cap growing caudally, covering the base."""
    z = np.asarray(z, dtype=np.float64)
    t = (z - a.dome_start[side_index]) / (a.z_base + 0.02 - a.dome_start[side_index])
    s = np.sqrt(1.0 - (1.0 - np.clip(t, 0.0, 1.0)) ** 2)
    return np.where(t >= 0.0, s, -1.0)


def _heart_scale(a: _Anatomy, z: np.ndarray) -> np.ndarray:
    """Heart cross-section: an ellipsoid from ``z_top`` merging into the diaphragm; -1 above it."""
    z = np.asarray(z, dtype=np.float64)
    z_top, z_c = a.heart[4], a.heart[5]
    t = np.clip((z - z_c) / (z_c - z_top), -1.0, 0.0)  # full size from the centre down to the diaphragm
    return np.where(z >= z_top, np.sqrt(1.0 - t**2), -1.0)


def _body_scale(z: np.ndarray) -> np.ndarray:
    """Body cross-section: slightly narrower at the thoracic inlet, slightly wider over the upper abdomen."""
    z = np.asarray(z, dtype=np.float64)
    return 1.0 - 0.06 * (1.0 - _smoothstep(z / 0.25)) + 0.03 * np.clip((z - 0.75) / 0.25, 0.0, 1.0)


def _mediastinum_scale(z: np.ndarray) -> np.ndarray:
    """Mediastinum width: widest at the aortic arch / great vessels."""
    z = np.asarray(z, dtype=np.float64)
    return 1.0 + 0.35 * np.exp(-(((z - 0.3) / 0.09) ** 2))


def _in_lung(a: _Anatomy, x: float, y: float, z: float, margin: float = 0.9) -> bool:
    """Whether a point lies well inside a lung (not under the heart, mediastinum or diaphragm)."""
    s = float(_lung_scale(a, z))
    if s <= 0.2:
        return False
    inside = any(float(_norm2d(x, y, L.cx, L.cy, L.ax, L.ay, L.tilt)) < margin * s for L in a.lungs)
    hx, hy, hax, hay = a.heart[:4]
    blocked = float(_norm2d(x, y, hx, hy, hax, hay)) < float(_heart_scale(a, z)) * 1.1
    mx, my, max_, may = a.mediastinum
    blocked |= float(_norm2d(x, y, mx, my, max_, may)) < float(_mediastinum_scale(z)) * 1.1
    for i, L in enumerate(a.lungs):
        dcx, dcy, dax, day = _dome_geometry(L)
        blocked |= float(_norm2d(x, y, dcx, dcy, dax, day)) < float(_dome_scale(a, z, i)) * 1.1
    return inside and not blocked


def _dome_geometry(lung: _Lung) -> tuple[float, float, float, float]:
    """Dome ellipse under a lung: centred anteriorly so the posterior costophrenic recess goes last."""
    return lung.cx * 0.92, lung.cy - 0.25 * lung.ay, lung.ax * 1.4, lung.ay * 1.5


def _lung_point(a: _Anatomy, side: int, z: ArrayLike, delta: ArrayLike, rho: ArrayLike) -> tuple:
    """Point(s) of the ``side`` lung at depth ``z``; ``delta`` turns from lateral (0) to posterior (+pi/2)."""
    lung = a.lungs[0] if side < 0 else a.lungs[1]
    s = np.maximum(_lung_scale(a, z), 0.0)
    theta = (math.pi if side < 0 else 0.0) + side * np.asarray(delta)
    lx, ly = rho * s * lung.ax * np.cos(theta), rho * s * lung.ay * np.sin(theta)
    c, sn = math.cos(lung.tilt), math.sin(lung.tilt)
    return lung.cx + c * lx - sn * ly, lung.cy + sn * lx + c * ly


# ----------------------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------------------


def _branching_tree(
    rng: np.random.Generator,
    root: np.ndarray,
    directions: np.ndarray,
    length: float,
    radius: float,
    generations: int,
    spread: float,
) -> np.ndarray:
    """Random branching tubes (vessels, bronchi): each branch splits in 2-3 thinner, shorter children."""
    starts = np.repeat(root[None, :], len(directions), axis=0)
    dirs = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    segments = []
    for _ in range(generations):
        d = dirs + spread * rng.standard_normal(dirs.shape)
        d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-9
        ends = starts + d * (length * rng.uniform(0.7, 1.3, len(d)))[:, None]
        n = len(d)
        segments.append(np.column_stack([starts, ends, np.full(n, radius), np.full(n, radius * 0.8)]))
        parent = np.repeat(np.arange(n), rng.integers(2, 4, size=n))
        frac = rng.uniform(0.55, 1.0, len(parent))
        starts = starts[parent] + (ends - starts)[parent] * frac[:, None]
        dirs = d[parent]
        length *= 0.7
        radius *= 0.7
    return np.concatenate(segments).astype(np.float64)


def _sample_anatomy(rng: np.random.Generator) -> _Anatomy:
    """Patient anatomy: body habitus, fat, lung size/shape and extent, heart, spine, vessel trees."""
    bs = rng.uniform(0.85, 1.08)  # overall patient size
    body_ax = 0.85 * bs * rng.uniform(0.94, 1.06)
    body_ay = 0.6 * bs * rng.uniform(0.9, 1.08)
    lung_cx = 0.37 * bs * rng.uniform(0.95, 1.05)
    lung_cy = rng.uniform(-0.03, 0.05)
    lung_ax = 0.3 * bs * rng.uniform(0.9, 1.08)
    lung_ay = 0.44 * bs * rng.uniform(0.9, 1.06)
    tilt = rng.uniform(-0.05, 0.2)
    lungs = (
        _Lung(-1, -lung_cx, lung_cy, lung_ax * 1.03, lung_ay, -tilt),
        _Lung(+1, lung_cx, lung_cy, lung_ax * 0.97, lung_ay, tilt),
    )
    z_apex = rng.uniform(0.0, 0.08)
    z_full = z_apex + rng.uniform(0.22, 0.36)
    z_base = rng.uniform(0.86, 0.96)
    dome_r = z_base - rng.uniform(0.14, 0.22)
    dome_start = (dome_r, dome_r + rng.uniform(0.02, 0.06))  # the right hemidiaphragm sits higher
    heart_top = rng.uniform(0.4, 0.5)
    heart = (
        rng.uniform(0.05, 0.12) * bs,
        lung_cy - rng.uniform(0.12, 0.2) * bs,
        0.25 * bs * rng.uniform(0.9, 1.15),
        0.2 * bs * rng.uniform(0.9, 1.1),
        heart_top,
        heart_top + rng.uniform(0.22, 0.3),
    )
    mediastinum = (0.0, lung_cy - 0.08 * bs, 0.085 * bs * rng.uniform(0.9, 1.2), 0.34 * bs)
    spine_y = lung_cy + lung_ay * 0.78
    spine = (spine_y, 0.075 * bs * rng.uniform(0.9, 1.1))
    aorta = (0.07 * bs, spine_y - 0.13 * bs, 0.045 * bs * rng.uniform(0.85, 1.15))

    carina = np.array([rng.uniform(-0.015, 0.015), lung_cy - 0.06 * bs, rng.uniform(0.38, 0.46) * _Z_LEN])
    r_tr = 0.036 * bs
    airways = [np.r_[carina[0], carina[1], -0.1, carina, r_tr, r_tr]]
    for lung in lungs:
        hilum = np.array([lung.cx - lung.side * 0.5 * lung.ax, lung.cy - 0.04, carina[2] + 0.12])
        airways.append(np.r_[carina, hilum, r_tr * 0.7, r_tr * 0.55])

    airway_segments = np.stack(airways)
    anatomy = _Anatomy(
        body_cy=rng.uniform(0.0, 0.04),
        body_ax=body_ax,
        body_ay=body_ay,
        body_p=rng.uniform(2.1, 2.7),
        skin=0.012,
        fat_lat=rng.uniform(0.02, 0.09) * bs,
        fat_ant=rng.uniform(0.02, 0.08) * bs,
        fat_post=rng.uniform(0.015, 0.05) * bs,
        lungs=lungs,
        z_apex=z_apex,
        z_full=z_full,
        z_base=z_base,
        dome_start=dome_start,
        lung_value=rng.uniform(0.11, 0.17),
        lung_gradient=rng.uniform(0.01, 0.04),
        heart=heart,
        mediastinum=mediastinum,
        aorta=aorta,
        spine=spine,
        vertebra_pitch=rng.uniform(9.5, 11.5),
        vertebra_phase=rng.uniform(0.0, 1.0),
        rib_pitch=rng.uniform(8.0, 10.0),
        rib_phase=rng.uniform(0.0, 1.0),
        rib_slope=rng.uniform(0.6, 1.0),
        vessels=np.zeros((0, 8)),
        airways=airway_segments,
    )
    vessels = _sample_vessels(rng, anatomy, bs)
    vessels.flags.writeable = airway_segments.flags.writeable = False  # shared via the patient cache
    return replace(anatomy, vessels=vessels)


def _sample_vessels(rng: np.random.Generator, a: _Anatomy, bs: float) -> np.ndarray:
    """Pulmonary vessels: a branching tree from each hilum plus scattered small peripheral vessels.

    The trees give the large hilar vessels and branching lines; the scattered short segments (pointing away
    from the hilum) give the many small bronchovascular dots seen in every axial slice of a real lung.
    """
    vessels = []
    z_hilum = (a.z_apex + 0.45 * (a.z_base - a.z_apex)) * _Z_LEN
    for lung in a.lungs:
        sd = lung.side
        root = np.array([lung.cx - sd * 0.55 * lung.ax, lung.cy - 0.05, z_hilum])
        trunks = np.array(
            [
                [0.35 * sd, 0.0, -1.0],
                [0.3 * sd, 0.4, -1.0],
                [0.8 * sd, -0.2, -0.6],
                [1.0 * sd, 0.1, 0.1],
                [0.5 * sd, 0.2, 0.85],
                [0.25 * sd, 0.6, 0.75],
                [0.2 * sd, -0.2, 1.0],
                [0.5 * sd, -0.8, 0.3],
            ]
        )
        vessels.append(_branching_tree(rng, root, trunks, 0.26 * bs, 0.017 * bs, 5, 0.6))
        n = 150
        z = a.z_apex + (a.z_base - a.z_apex) * rng.uniform(0.05, 0.97, n)
        x, y = _lung_point(a, sd, z, rng.uniform(-math.pi, math.pi, n), np.sqrt(rng.uniform(0.0, 0.9, n)))
        mid = np.column_stack([x, y, z * _Z_LEN])
        d = mid - root + 0.15 * rng.standard_normal((n, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-9
        half = 0.5 * rng.uniform(0.04, 0.1, n)[:, None] * d
        r = rng.uniform(0.0035, 0.007, n)
        vessels.append(np.column_stack([mid - half, mid + half, r, r * 0.8]))
    return np.concatenate(vessels)


def _waves(rng: np.random.Generator, n: int = 3) -> np.ndarray:
    """Random low-frequency plane waves that make a lesion outline lobulated instead of a clean ellipsoid."""
    k = rng.standard_normal((n, 3)) * 2.2
    return np.column_stack([k, rng.uniform(0.0, 2.0 * math.pi, n)])


def _place_peripheral(
    rng: np.random.Generator, a: _Anatomy, side: int, z_beta: tuple[float, float], rho: tuple[float, float]
) -> tuple[float, float, float, float]:
    """Rejection-sample a point in one lung (lower zones / posterior favoured); returns x, y, z, angle."""
    x = y = z = theta = 0.0
    for _ in range(40):
        z = a.z_apex + (a.z_base - a.z_apex) * (0.08 + 0.84 * rng.beta(*z_beta))
        delta = rng.uniform(-1.6, 2.2) if rng.random() < 0.6 else rng.uniform(0.2, 1.8)
        x, y = _lung_point(a, side, z, delta, rng.uniform(*rho))
        theta = (math.pi if side < 0 else 0.0) + side * delta
        if _in_lung(a, x, y, z, margin=0.97):
            break
    return x, y, z, theta


def _ggo_lesions(rng: np.random.Generator, a: _Anatomy, severity: float, mild: bool) -> list[_Lesion]:
    """COVID-19 pattern: several faint, soft, subpleural ground-glass opacities, usually in both lungs."""
    n = int(rng.integers(1, 4)) if mild else int(rng.integers(3, 6) + round(3 * severity))
    sides = rng.choice([-1, 1], size=n)
    if n >= 2 and rng.random() < 0.95:  # bilateral
        sides[0], sides[1] = -1, 1
    lesions = []
    for side in sides:
        x, y, z, theta = _place_peripheral(rng, a, int(side), (2.2, 1.5), (0.65, 0.9))
        r = (rng.uniform(0.055, 0.09) if mild else rng.uniform(0.07, 0.15)) * (1.0 + 0.4 * severity)
        radii = (r * rng.uniform(1.0, 1.7), r, r * rng.uniform(0.8, 1.5))  # elongated along the pleura
        intensity = rng.uniform(0.27, 0.35) if mild else rng.uniform(0.34, 0.5)
        lesions.append(
            _Lesion(
                dense=False,
                side=int(side),
                center=(x, y, z),
                radii=radii,
                angle=theta + math.pi / 2,
                intensity=intensity,
                softness=rng.uniform(0.35, 0.7),
                waves=_waves(rng),
                wave_amp=rng.uniform(0.06, 0.18),
                cut=None,
                bronchi=None,
                bronchi_depth=0.0,
            )
        )
        if not mild and rng.random() < 0.25 * severity:  # a denser core: mixed GGO / consolidation
            lesions.append(
                _Lesion(
                    dense=False,
                    side=int(side),
                    center=(x, y, z),
                    radii=tuple(v * rng.uniform(0.35, 0.5) for v in radii),
                    angle=theta + math.pi / 2,
                    intensity=rng.uniform(0.5, 0.6),
                    softness=0.5,
                    waves=_waves(rng),
                    wave_amp=0.1,
                    cut=None,
                    bronchi=None,
                    bronchi_depth=0.0,
                )
            )
    return lesions


def _bronchograms(rng: np.random.Generator, a: _Anatomy, center: np.ndarray, side: int, r: float) -> np.ndarray:
    """Air bronchograms: a few branching tubes running from the hilar side of a consolidation outwards."""
    lung = a.lungs[0] if side < 0 else a.lungs[1]
    hilum = np.array([lung.cx - side * 0.55 * lung.ax, lung.cy - 0.05, center[2]])
    out = center - hilum
    out /= np.linalg.norm(out) + 1e-9
    root = center - 0.7 * r * out
    dirs = out[None, :] + 0.5 * rng.standard_normal((int(rng.integers(2, 4)), 3))
    return _branching_tree(rng, root, dirs, 0.7 * r, rng.uniform(0.01, 0.015), 2, 0.35)


# Lobar consolidation templates: centre offset (x in lung half-widths towards lateral, y in half-depths,
# z as a fraction of the lung's height), radius ranges (fractions of the lung's half-width, half-depth and
# height) and the normal of the fissure that bounds it (x, y, z_phys) or None.
_LOBES: dict[str, tuple[tuple[float, float, float], tuple[tuple[float, float], ...], tuple | None]] = {
    "lower": ((0.0, 0.3, 0.72), ((0.9, 1.2), (0.7, 1.0), (0.25, 0.35)), (0.0, 0.7, 0.7)),
    "upper": ((0.0, -0.1, 0.3), ((0.9, 1.2), (0.85, 1.1), (0.22, 0.32)), (0.0, -0.7, -0.7)),
    "middle": ((0.1, -0.45, 0.62), ((0.7, 0.95), (0.45, 0.6), (0.12, 0.18)), None),
}


def _consolidation(
    rng: np.random.Generator,
    a: _Anatomy,
    side: int,
    kind: str,
    extent: float,
    intensity: float,
    bronchi_prob: float,
) -> _Lesion:
    """A dense opacity: 'lobar' fills most of a lobe up to a fissure, 'segmental' is a pleura-based wedge."""
    lung = a.lungs[0] if side < 0 else a.lungs[1]
    height = (a.z_base - a.z_apex) * _Z_LEN
    cut = None
    if kind in _LOBES:
        (ox, oy, oz), (fx, fy, fz), normal = _LOBES[kind]
        center = (
            lung.cx + side * ox * lung.ax,
            lung.cy + oy * lung.ay,
            a.z_apex + oz * (a.z_base - a.z_apex),
        )
        radii = (lung.ax * rng.uniform(*fx), lung.ay * rng.uniform(*fy), height * rng.uniform(*fz))
        if normal is not None:
            n = np.asarray(normal) / np.linalg.norm(normal)
            cut = (float(n[0]), float(n[1]), float(n[2]), -rng.uniform(0.1, 0.25) * lung.ay)
        angle = 0.0
    else:  # segmental wedge against the pleura, flat on its hilar side
        x, y, z, theta = _place_peripheral(rng, a, side, (1.6, 1.4), (0.6, 0.85))
        center = (x, y, z)
        r = rng.uniform(0.16, 0.28)
        radii = (r * rng.uniform(1.0, 1.5), r, r * rng.uniform(0.8, 1.4))
        angle = theta + math.pi / 2
        cut = (math.cos(theta), math.sin(theta), 0.0, -rng.uniform(0.2, 0.5) * r)
    radii = tuple(v * extent for v in radii)
    c = np.array([center[0], center[1], center[2] * _Z_LEN])
    bronchi = _bronchograms(rng, a, c, side, float(np.mean(radii))) if rng.random() < bronchi_prob else None
    return _Lesion(
        dense=True,
        side=side,
        center=center,
        radii=radii,
        angle=angle,
        intensity=intensity,
        softness=rng.uniform(0.12, 0.25),
        waves=_waves(rng),
        wave_amp=rng.uniform(0.08, 0.18),
        cut=cut,
        bronchi=bronchi,
        bronchi_depth=rng.uniform(0.25, 0.45),
    )


def _focus(rng: np.random.Generator, a: _Anatomy, side: int, r: float, intensity: float, dense: bool) -> _Lesion:
    """A small, roundish opacity: a satellite or contralateral focus of pneumonia."""
    x, y, z, _ = _place_peripheral(rng, a, side, (1.8, 1.4), (0.4, 0.8))
    return _Lesion(
        dense=dense,
        side=side,
        center=(x, y, z),
        radii=(r * rng.uniform(0.9, 1.3), r, r * rng.uniform(0.8, 1.2)),
        angle=rng.uniform(0.0, math.pi),
        intensity=intensity,
        softness=rng.uniform(0.2, 0.4),
        waves=_waves(rng),
        wave_amp=rng.uniform(0.05, 0.15),
        cut=None,
        bronchi=None,
        bronchi_depth=0.0,
    )


def _cp_lesions(rng: np.random.Generator, a: _Anatomy, severity: float, mild: bool) -> list[_Lesion]:
    """Common pneumonia: dense lobar / segmental consolidation in one lung, maybe a contralateral focus."""
    side = -1 if rng.random() < 0.55 else 1
    if mild:
        r = rng.uniform(0.07, 0.11)
        return [_focus(rng, a, side, r, rng.uniform(0.5, 0.6), dense=True)]
    kind = rng.choice(["lower", "upper", "middle", "segmental", "segmental"], p=[0.3, 0.15, 0.1, 0.25, 0.2])
    intensity = rng.uniform(0.6, 0.74)
    main = _consolidation(rng, a, side, str(kind), rng.uniform(0.75, 1.05), intensity, 0.7)
    lesions = [main]
    if rng.random() < 0.35:  # a second, confluent region next to the first
        c = np.array(main.center[:2]) + rng.standard_normal(2) * 0.6 * np.array(main.radii[:2])
        lesions.append(
            _Lesion(
                dense=True,
                side=side,
                center=(float(c[0]), float(c[1]), main.center[2] + rng.normal(0.0, 0.04)),
                radii=tuple(v * rng.uniform(0.45, 0.7) for v in main.radii),
                angle=rng.uniform(0.0, math.pi),
                intensity=intensity * rng.uniform(0.9, 1.0),
                softness=main.softness,
                waves=_waves(rng),
                wave_amp=main.wave_amp,
                cut=None,
                bronchi=None,
                bronchi_depth=0.0,
            )
        )
    if rng.random() < 0.25:  # small contralateral focus, so that "bilateral" is not a perfect rule
        lesions.append(_focus(rng, a, -side, rng.uniform(0.035, 0.06), rng.uniform(0.45, 0.62), dense=True))
    return lesions


@functools.lru_cache(maxsize=1024)
def _sample_patient(seed: int, patient_index: int, label: int) -> _Patient:
    """Draw one patient; cached because all scans of a patient (and every size) share it."""
    rng = np.random.default_rng([seed, patient_index, label, _TAG_PATIENT])
    anatomy = _sample_anatomy(rng)
    mild = bool(rng.random() < 0.2)  # hard cases: few, small, faint lesions
    severity = float(rng.uniform(0.0, 1.0))
    if label == NCP:
        lesions = _ggo_lesions(rng, anatomy, severity, mild)
    elif label == CP:
        lesions = _cp_lesions(rng, anatomy, severity, mild)
    elif label == NORMAL:
        lesions = []
    else:
        raise ValueError(f"label must be 0 (CP), 1 (NCP) or 2 (Normal), got {label}")
    for lesion in lesions:  # the patient is cached and shared: make its arrays read-only
        for array in (lesion.waves, lesion.bronchi):
            if array is not None:
                array.flags.writeable = False
    pose = (
        math.radians(rng.uniform(-4.0, 4.0)),
        rng.uniform(-0.04, 0.04),
        rng.uniform(-0.05, 0.03),
        rng.uniform(-0.03, 0.03),
        rng.uniform(0.94, 1.06),
    )
    return _Patient(label, anatomy, tuple(lesions), float(rng.uniform(-0.2, 0.25)), pose)


def _sample_scan(seed: int, scan: SyntheticScan, patient: _Patient) -> _ScanParams:
    """Per-scan variation: re-positioning, breathing, lesion progression and scanner nuisances."""
    rng = np.random.default_rng([seed, scan.patient_index, scan.label, _TAG_SCAN, scan.scan_index])
    angle, tx, ty, z_off, span = patient.pose
    pose = (
        angle + math.radians(rng.normal(0.0, 0.8)),
        tx + rng.normal(0.0, 0.008),
        ty + rng.normal(0.0, 0.008),
        z_off + rng.normal(0.0, 0.008),
        span * rng.uniform(0.99, 1.01),
    )
    log_growth = patient.trend * scan.scan_index + rng.normal(0.0, 0.05)
    growth = np.clip(np.exp(log_growth + rng.normal(0.0, 0.04, len(patient.lesions))), 0.75, 1.5)
    return _ScanParams(
        pose=pose,
        inspiration=rng.uniform(0.975, 1.025),
        growth=growth,
        noise=float(np.exp(rng.uniform(math.log(0.008), math.log(0.05)))),
        contrast=rng.uniform(0.85, 1.15),
        brightness=rng.uniform(-0.07, 0.07),
        bias_xy=(
            rng.uniform(0.0, 0.05),
            rng.uniform(0.2, 0.8),
            rng.uniform(0.0, 2 * math.pi),
            rng.uniform(0.0, 0.05),
            rng.uniform(0.2, 0.8),
            rng.uniform(0.0, 2 * math.pi),
            rng.uniform(-0.06, 0.03),
        ),
        bias_z=(rng.uniform(0.0, 0.04), rng.uniform(0.3, 1.2), rng.uniform(0.0, 2 * math.pi)),
    )


# ----------------------------------------------------------------------------------------------------------
# Rasterisation
# ----------------------------------------------------------------------------------------------------------


class _Grid:
    """Voxel centres of one scan in patient coordinates, and the inverse map used to stamp tubes."""

    def __init__(self, size: tuple[int, int, int], pose: tuple[float, float, float, float, float]) -> None:
        self.shape = size
        d, h, w = size
        angle, self.tx, self.ty, self.z_off, self.span = pose
        self.cos, self.sin = math.cos(angle), math.sin(angle)
        u = ((2.0 * np.arange(w) + 1.0) / w - 1.0).astype(np.float32)[None, :]
        v = ((2.0 * np.arange(h) + 1.0) / h - 1.0).astype(np.float32)[:, None]
        self.u, self.v = u, v
        self.x = (self.cos * (u - self.tx) + self.sin * (v - self.ty)).astype(np.float32)
        self.y = (-self.sin * (u - self.tx) + self.cos * (v - self.ty)).astype(np.float32)
        self.z = self.z_off + self.span * (np.arange(d) + 0.5) / d
        self.px_u, self.px_v = 2.0 / w, 2.0 / h
        self.px = math.sqrt(self.px_u * self.px_v)
        self.pz = self.span * _Z_LEN / d  # slice spacing in x-units

    def to_index(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fractional (slice, row, column) of physical points (x, y, z_phys)."""
        d, h, w = self.shape
        u = self.cos * pts[:, 0] - self.sin * pts[:, 1] + self.tx
        v = self.sin * pts[:, 0] + self.cos * pts[:, 1] + self.ty
        k = (pts[:, 2] / _Z_LEN - self.z_off) / self.span * d - 0.5
        return k, (v + 1.0) * h / 2.0 - 0.5, (u + 1.0) * w / 2.0 - 0.5

    def box(self, cx: float, cy: float, radius: float, z_lo: float = -1e9, z_hi: float = 1e9) -> Box | None:
        """Voxel box covering a disc of ``radius`` around (cx, cy) between two depths; None if empty."""
        d, h, w = self.shape
        _, i, j = self.to_index(np.array([[cx, cy, 0.0]]))
        i0, i1 = int(i[0] - radius * h / 2 - 2), int(i[0] + radius * h / 2 + 3)
        j0, j1 = int(j[0] - radius * w / 2 - 2), int(j[0] + radius * w / 2 + 3)
        k0 = math.floor((z_lo - self.z_off) / self.span * d - 0.5) if z_lo > -1e8 else 0
        k1 = math.ceil((z_hi - self.z_off) / self.span * d - 0.5) + 1 if z_hi < 1e8 else d
        k0, k1, i0, i1, j0, j1 = max(k0, 0), min(k1, d), max(i0, 0), min(i1, h), max(j0, 0), min(j1, w)
        if k0 >= k1 or i0 >= i1 or j0 >= j1:
            return None
        return slice(k0, k1), slice(i0, i1), slice(j0, j1)

    def z_box(self, scale: np.ndarray, cx: float, cy: float, radius: float) -> Box | None:
        """Box of a z-scaled shape: the slices where its scale is positive, and its largest extent."""
        present = np.nonzero(scale > 0)[0]
        if present.size == 0:
            return None
        b = self.box(cx, cy, radius * float(scale.max()))
        if b is None:
            return None
        return slice(int(present[0]), int(present[-1]) + 1), b[1], b[2]


def _scaled_alpha(
    grid: _Grid, b: Box, scale: np.ndarray | None, cx: float, cy: float, ax: float, ay: float, **kw: float
) -> np.ndarray:
    """Anti-aliased coverage of a shape whose size follows ``scale`` over depth (or is constant if None)."""
    r = _norm2d(grid.x[b[1], b[2]], grid.y[b[1], b[2]], cx, cy, ax, ay, **kw)
    k = np.float32(0.5 * (ax + ay) / grid.px)
    if scale is None:
        return np.clip(0.5 + (1.0 - r) * k, 0.0, 1.0)[None]
    s = scale[b[0]].astype(np.float32)[:, None, None]
    out = s - r[None]
    out *= k
    out += 0.5
    return np.clip(out, 0.0, 1.0, out=out)


def _paint(vol: np.ndarray, b: Box, alpha: np.ndarray, value: float | np.ndarray) -> None:
    """Alpha-blend ``value`` into ``vol[b]`` in place (layers are painted back to front)."""
    region = vol[b]
    delta = np.asarray(value, dtype=np.float32) - region
    delta *= alpha
    region += delta


def _tube_field(shape: tuple[int, ...], origin: tuple[int, int, int], grid: _Grid, segs: np.ndarray) -> np.ndarray:
    """Coverage in [0, 1] of tubes (p0 -> p1, radius r0 -> r1, physical units) on a block of the volume.

    Tubes are drawn as closely spaced anti-aliased discs, max-composited: fast for the few thousand points a
    vessel tree needs, any orientation, and thin vessels fade (rather than alias) at coarse resolutions.
    Thick slices are approximated by shrinking the cranio-caudal distance by the slice thickness
    (partial-volume effect). ``origin`` is the voxel index of the block's first voxel.
    """
    field = np.zeros(shape, dtype=np.float32)
    if len(segs) == 0:
        return field
    step = 0.5 * min(grid.px, grid.pz)
    p0, p1 = segs[:, 0:3], segs[:, 3:6]
    n = np.maximum(2, np.ceil(np.linalg.norm(p1 - p0, axis=1) / step).astype(np.int64) + 1)
    seg = np.repeat(np.arange(len(segs)), n)
    t = (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)) / np.repeat(n - 1, n)
    pts = p0[seg] + t[:, None] * (p1 - p0)[seg]
    rad = (segs[seg, 6] + t * (segs[seg, 7] - segs[seg, 6])).astype(np.float32)
    k, i, j = grid.to_index(pts)
    k, i, j = k - origin[0], i - origin[1], j - origin[2]
    kc, ic, jc = np.rint(k), np.rint(i), np.rint(j)
    aa, slab = grid.px, 0.5 * max(grid.pz - grid.px, 0.0)
    reach = rad + 0.5 * aa  # coverage is zero beyond r + aa / 2
    hz = np.ceil((reach + slab) / grid.pz + 0.5).astype(np.int64)
    hy = np.ceil(reach / grid.px_v + 0.5).astype(np.int64)
    hx = np.ceil(reach / grid.px_u + 0.5).astype(np.int64)
    keep = (kc >= -hz) & (kc < shape[0] + hz) & (ic >= -hy) & (ic < shape[1] + hy) & (jc >= -hx) & (jc < shape[2] + hx)
    if not keep.any():
        return field
    # Stamp into a padded block so that no per-voxel bounds checks are needed: a kept kernel overlaps the
    # block, so it reaches at most twice its half-size beyond it.
    pad = (2 * int(hz[keep].max()), 2 * int(hy[keep].max()), 2 * int(hx[keep].max()))
    padded = np.zeros([s + 2 * p for s, p in zip(shape, pad, strict=True)], dtype=np.float32)
    s0, s1 = padded.shape[1] * padded.shape[2], padded.shape[2]
    base = ((kc + pad[0]) * s0 + (ic + pad[1]) * s1 + (jc + pad[2])).astype(np.int64)
    fk, fi, fj = (k - kc).astype(np.float32), (i - ic).astype(np.float32), (j - jc).astype(np.float32)
    key = (hz * 1000 + hy) * 1000 + hx
    flat = padded.reshape(-1)
    for group in np.unique(key[keep]):
        sel = keep & (key == group)
        h = (int(group // 1_000_000), int(group // 1000 % 1000), int(group % 1000))
        oz, oy, ox = (np.arange(-v, v + 1, dtype=np.float32) for v in h)
        dz = np.maximum(np.abs(oz[None] - fk[sel][:, None]) * np.float32(grid.pz) - np.float32(slab), 0.0)
        dv = (oy[None] - fi[sel][:, None]) * np.float32(grid.px_v)
        du = (ox[None] - fj[sel][:, None]) * np.float32(grid.px_u)
        d2 = (dz * dz)[:, :, None, None] + (dv * dv)[:, None, :, None] + (du * du)[:, None, None, :]
        w = rad[sel][:, None, None, None] - np.sqrt(d2)
        w *= np.float32(1.0 / aa)
        w += np.float32(0.5)
        np.clip(w, 0.0, 1.0, out=w)
        off = (oz[:, None, None] * s0 + oy[None, :, None] * s1 + ox[None, None, :]).astype(np.int64).ravel()
        np.maximum.at(flat, (base[sel][:, None] + off[None]).ravel(), w.reshape(-1))
    field[...] = padded[pad[0] : pad[0] + shape[0], pad[1] : pad[1] + shape[1], pad[2] : pad[2] + shape[2]]
    return field


def _render_anatomy(grid: _Grid, a: _Anatomy, inspiration: float) -> tuple[np.ndarray, np.ndarray]:
    """Paint the healthy chest back to front; returns the volume and the (soft) lung-parenchyma fraction."""
    vol = np.zeros(grid.shape, dtype=np.float32)
    lung = np.zeros(grid.shape, dtype=np.float32)
    z = grid.z

    # Body: skin, subcutaneous fat, then muscle / chest wall.
    sb = _body_scale(z)
    full = grid.z_box(sb, 0.0, a.body_cy, max(a.body_ax, a.body_ay) * 1.1)
    if full is None:
        return vol, lung
    body = dict(cx=0.0, cy=a.body_cy, ax=a.body_ax, ay=a.body_ay, p=a.body_p)
    _paint(vol, full, _scaled_alpha(grid, full, sb, **body), _SKIN)
    skin = dict(body, ax=a.body_ax - a.skin, ay=a.body_ay - a.skin)
    _paint(vol, full, _scaled_alpha(grid, full, sb, **skin), _FAT)
    wall = dict(
        cx=0.0,
        cy=a.body_cy + 0.5 * (a.fat_ant - a.fat_post),
        ax=a.body_ax - a.fat_lat,
        ay=a.body_ay - 0.5 * (a.fat_ant + a.fat_post),
        p=a.body_p,
    )
    inner = np.zeros(grid.shape, dtype=np.float32)  # inside the chest wall: organs must not poke out
    inner[full] = _scaled_alpha(grid, full, sb, **wall)
    _paint(vol, full, inner[full], _SOFT)

    # Ribs: a band around the lungs, visible in slanted stripes (ribs run downwards to the front).
    s_lung = _lung_scale(a, z, inspiration)
    right = a.lungs[0]
    rib_ax, rib_ay = abs(right.cx) + right.ax + 0.05, right.ay + 0.06
    rib_scale = np.clip(np.where(s_lung > 0, s_lung, np.where(z > 0.5, 0.95, 0.55)), 0.55, 1.0)
    r = _norm2d(grid.x, grid.y, 0.0, right.cy, rib_ax, rib_ay)
    band = np.abs(r[None] - rib_scale.astype(np.float32)[:, None, None])
    band *= np.float32(-0.5 * (rib_ax + rib_ay) / grid.px)
    band += np.float32(0.5 + 0.022 / grid.px)
    np.clip(band, 0.0, 1.0, out=band)
    phase = 2 * np.pi * (a.rib_pitch * z + a.rib_phase)
    stripes = np.cos(phase.astype(np.float32)[:, None, None] - (2 * np.pi * a.rib_slope * grid.y)[None])
    stripes -= np.float32(0.45)
    stripes *= np.float32(3.0)
    np.clip(stripes, 0.0, 1.0, out=stripes)
    band *= stripes
    band *= np.clip((np.abs(grid.x) - 0.08) / 0.05, 0.0, 1.0)[None]  # no ribs at the midline
    _paint(vol, (slice(None),) * 3, band, _RIB)
    del band, stripes

    # Lungs, denser towards the dependent (posterior) side.
    for L in a.lungs:
        b = grid.z_box(s_lung, L.cx, L.cy, max(L.ax, L.ay) * 1.05)
        if b is None:
            continue
        alpha = _scaled_alpha(grid, b, s_lung, L.cx, L.cy, L.ax, L.ay, angle=L.tilt)
        value = a.lung_value + a.lung_gradient * (grid.y[b[1], b[2]] - L.cy) / L.ay
        _paint(vol, b, alpha, value.astype(np.float32))
        np.maximum(lung[b], alpha, out=lung[b])

    def solid(b: Box, alpha: np.ndarray, value: float | np.ndarray) -> None:
        """Paint an organ over the lungs, removing it from the parenchyma fraction."""
        _paint(vol, b, alpha, value)
        lung[b] *= 1.0 - alpha

    # Mediastinum, heart, descending aorta and the diaphragm domes carve the lungs into bean shapes.
    mx, my, max_, may = a.mediastinum
    sm = _mediastinum_scale(z)
    b = grid.z_box(sm, mx, my, may)
    if b is not None:
        solid(b, _scaled_alpha(grid, b, sm, mx, my, max_, may), _MEDIASTINUM)
    sh = _heart_scale(a, z)
    hx, hy, hax, hay = a.heart[:4]
    b = grid.z_box(sh, hx, hy, max(hax, hay))
    if b is not None:
        solid(b, _scaled_alpha(grid, b, sh, hx, hy, hax, hay), _HEART)
    ax_, ay_, ar = a.aorta
    b = grid.box(ax_, ay_, ar, z_lo=0.28)
    if b is not None:
        solid(b, _scaled_alpha(grid, b, None, ax_, ay_, ar, ar), _HEART)
    for side_index, L in enumerate(a.lungs):
        sd = _dome_scale(a, z, side_index)
        dcx, dcy, dax, day = _dome_geometry(L)
        b = grid.z_box(sd, dcx, dcy, max(dax, day))
        if b is not None:
            solid(b, _scaled_alpha(grid, b, sd, dcx, dcy, dax, day) * inner[b], _SOFT)

    # Spine: vertebral body (cortex, marrow, intervertebral discs), canal, arch and spinous process.
    sy, sr = a.spine
    disc = np.clip((np.cos(2 * np.pi * (a.vertebra_pitch * z + a.vertebra_phase)) - 0.7) * 4.0, 0.0, 1.0)
    marrow = (_MARROW - disc * (_MARROW - _SOFT)).astype(np.float32)[:, None, None]
    arch = (0.0, sy + 1.55 * sr, 0.9 * sr, 0.65 * sr)
    b = grid.box(0.0, sy + sr, 3.2 * sr)
    if b is not None:
        solid(b, _scaled_alpha(grid, b, None, *arch), _BONE)
        solid(b, _scaled_alpha(grid, b, None, 0.0, sy + 2.3 * sr, 0.22 * sr, 0.6 * sr), _BONE)
        solid(b, _scaled_alpha(grid, b, None, 0.0, sy, sr, 0.92 * sr), _BONE)
        solid(b, _scaled_alpha(grid, b, None, 0.0, sy, 0.82 * sr, 0.75 * sr), marrow[b[0]])
        solid(b, _scaled_alpha(grid, b, None, 0.0, sy + 1.45 * sr, 0.42 * sr, 0.4 * sr), _SOFT)

    # Trachea and main bronchi (air).
    air = _tube_field(grid.shape, (0, 0, 0), grid, a.airways)
    _paint(vol, (slice(None),) * 3, air, _AIRWAY)
    return vol, lung


def _lesion_alpha(grid: _Grid, les: _Lesion, growth: float) -> tuple[Box, np.ndarray] | None:
    """Soft, lobulated, optionally plane-cut ellipsoid opacity (before clipping to the lungs)."""
    rx, ry, rz = (r * growth for r in les.radii)
    cx, cy, cz = les.center
    slab = 0.5 * max(grid.pz - grid.px, 0.0)
    # The half-opacity contour sits at r = 1 - softness / 2 at every resolution; at coarse ones the ramp
    # around it is widened to at least 1.5 voxels so that small lesions are anti-aliased, not shrunk.
    width = max(les.softness, 1.5 * grid.px / min(rx, ry))
    reach = (1.0 - 0.5 * les.softness + 0.5 * width) / (1.0 - les.wave_amp) + 0.02  # where opacity ends
    b = grid.box(cx, cy, max(rx, ry) * reach, cz - (rz * reach + slab) / _Z_LEN, cz + (rz * reach + slab) / _Z_LEN)
    if b is None:
        return None
    dx = grid.x[b[1], b[2]] - cx
    dy = grid.y[b[1], b[2]] - cy
    c, s = math.cos(les.angle), math.sin(les.angle)
    p = (c * dx + s * dy) / rx
    q = (-s * dx + c * dy) / ry
    dz = (grid.z[b[0]] - cz) * _Z_LEN
    zn = (np.sign(dz) * np.maximum(np.abs(dz) - slab, 0.0) / rz).astype(np.float32)
    r = np.sqrt((p * p + q * q)[None] + (zn * zn)[:, None, None])
    pert = np.zeros_like(r)
    for kx, ky, kz, ph in les.waves:
        pert += np.cos((kx * p + ky * q)[None] + (kz * zn + ph)[:, None, None])
    r *= 1.0 + np.float32(les.wave_amp / len(les.waves)) * pert
    r -= np.float32(1.0 - 0.5 * les.softness)
    r *= np.float32(-1.0 / width)
    r += np.float32(0.5)
    alpha = _smoothstep(r).astype(np.float32)
    if les.cut is not None:
        nx, ny, nz, off = les.cut
        plane = (nx * dx + ny * dy)[None] + (nz * dz).astype(np.float32)[:, None, None] - off * growth
        alpha *= np.clip(0.5 + plane / grid.px, 0.0, 1.0)
    return b, alpha


def _render_lesions(
    grid: _Grid,
    vol: np.ndarray,
    lung: np.ndarray,
    mask: np.ndarray,
    patient: _Patient,
    sp: _ScanParams,
    dense: bool,
    lesion_scale: float = 1.0,
) -> None:
    """Paint the ground-glass (``dense=False``) or consolidation layer into ``vol``; record it in ``mask``."""
    lung_value = patient.anatomy.lung_value
    for les, g in zip(patient.lesions, sp.growth, strict=True):
        if les.dense != dense:
            continue
        hit = _lesion_alpha(grid, les, float(g) * lesion_scale)
        if hit is None:
            continue
        b, alpha = hit
        alpha *= lung[b]
        np.maximum(mask[b], alpha, out=mask[b])
        target = lung_value + (les.intensity - lung_value) * float(np.clip(np.sqrt(g), 0.75, 1.15))
        _paint(vol, b, alpha, min(target, 0.8))
        if les.bronchi is not None:
            c = np.array([les.center[0], les.center[1], les.center[2] * _Z_LEN])
            segs = les.bronchi.copy()
            segs[:, 0:3] = c + (segs[:, 0:3] - c) * g * lesion_scale
            segs[:, 3:6] = c + (segs[:, 3:6] - c) * g * lesion_scale
            tubes = _tube_field(alpha.shape, (b[0].start, b[1].start, b[2].start), grid, segs)
            tubes *= alpha
            tubes *= np.float32(les.bronchi_depth)
            vol[b] -= tubes


def _apply_nuisance(grid: _Grid, vol: np.ndarray, sp: _ScanParams, rng: np.random.Generator) -> None:
    """Scanner / protocol variation: smooth bias field, global contrast and brightness, and noise."""
    au, fu, pu, av, fv, pv, cup = sp.bias_xy
    gain_xy = 1.0 + au * np.cos(np.pi * fu * grid.u + pu) + av * np.cos(np.pi * fv * grid.v + pv)
    gain_xy += cup * (1.0 - grid.u**2 - grid.v**2)  # cupping / capping
    az, fz, pz = sp.bias_z
    gain_z = az * np.cos(np.pi * fz * np.linspace(0.0, 1.0, grid.shape[0]) + pz)
    gain = sp.contrast * (gain_xy[None] + gain_z[:, None, None].astype(np.float32))
    vol -= np.float32(_CONTRAST_PIVOT)
    vol *= gain.astype(np.float32)
    vol += np.float32(_CONTRAST_PIVOT + sp.brightness)
    noise = rng.standard_normal(grid.shape, dtype=np.float32)
    noise *= np.float32(sp.noise)
    vol += noise
    np.clip(vol, 0.0, 1.0, out=vol)


def render_scan(
    scan: SyntheticScan, size: tuple[int, int, int], seed: int = 0, lesion_scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Render one scan: (volume float32 in [0, 1] of shape ``size``, lesion mask bool of shape ``size``).

    The result depends only on (seed, scan.patient_index, scan.scan_index, scan.label, size, lesion_scale); the
    same phantom rendered at another size shows the same anatomy and lesions at that resolution.
    ``lesion_scale`` enlarges every lesion (radii), for small input sizes where true-size lesions are a few voxels.
    """
    volume, lesions, _ = render_scan_with_lungs(scan, size, seed, lesion_scale)
    return volume, lesions


def render_scan_with_lungs(
    scan: SyntheticScan, size: tuple[int, int, int], seed: int = 0, lesion_scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Like :func:`render_scan`, plus the ground-truth lung mask (bool; lung parenchyma incl. lesions)."""
    if lesion_scale <= 0:
        raise ValueError(f"lesion_scale must be positive, got {lesion_scale}")
    size = tuple(int(s) for s in size)
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"size must be three positive sizes (D, H, W), got {size}")
    if seed < 0 or scan.patient_index < 0 or scan.scan_index < 0:
        raise ValueError("seed, patient_index and scan_index must be non-negative")
    patient = _sample_patient(int(seed), int(scan.patient_index), int(scan.label))
    sp = _sample_scan(int(seed), scan, patient)
    grid = _Grid(size, sp.pose)
    vol, lung = _render_anatomy(grid, patient.anatomy, sp.inspiration)
    mask = np.zeros(size, dtype=np.float32)
    _render_lesions(grid, vol, lung, mask, patient, sp, dense=False, lesion_scale=lesion_scale)
    vessels = _tube_field(size, (0, 0, 0), grid, patient.anatomy.vessels)
    vessels *= lung
    _paint(vol, (slice(None),) * 3, vessels, _VESSEL)
    del vessels
    _render_lesions(grid, vol, lung, mask, patient, sp, dense=True, lesion_scale=lesion_scale)
    noise_rng = np.random.default_rng([seed, scan.patient_index, scan.label, _TAG_SCAN, scan.scan_index, 1])
    _apply_nuisance(grid, vol, sp, noise_rng)
    return vol, mask > 0.5, lung > 0.5


def synthetic_cohort(
    patients_per_class: int, scans_per_patient: Sequence[int] = (1, 3), seed: int = 0
) -> list[SyntheticScan]:
    """Deterministic list of scans; each patient gets a seeded number of scans in the inclusive range.

    Patient ``i`` of class ``c`` has the global index ``3 * i + c``: indices are unique across classes and a
    smaller cohort is a prefix-subset of a larger one (same patients, same scans).
    """
    lo, hi = (int(v) for v in scans_per_patient)
    if patients_per_class < 0 or not 1 <= lo <= hi:
        raise ValueError(f"need patients_per_class >= 0 and 1 <= lo <= hi, got {patients_per_class}, {(lo, hi)}")
    scans = []
    for i in range(patients_per_class):
        for label, name in enumerate(CLASS_NAMES):
            index = len(CLASS_NAMES) * i + label
            n = int(np.random.default_rng([seed, index, _TAG_COHORT]).integers(lo, hi + 1))
            patient_id = f"syn-{name}-{index:04d}"
            for s in range(n):
                scans.append(SyntheticScan(patient_id, f"{patient_id}-s{s}", label, index, s))
    return scans

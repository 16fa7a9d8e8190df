"""Drawing a patient (anatomy, disease pattern, lesion layout) and a scan of it (pose, breathing, nuisances)."""

from __future__ import annotations

import functools
import math
from dataclasses import replace

import numpy as np

from darnet_pl.data.phantoms.cohort import SyntheticScan
from darnet_pl.data.phantoms.geometry import in_lung, lung_point
from darnet_pl.data.phantoms.params import (
    CP,
    NCP,
    NORMAL,
    TAG_PATIENT,
    TAG_SCAN,
    Z_LEN,
    Anatomy,
    Lesion,
    Lung,
    Patient,
    ScanParams,
)


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


def _sample_anatomy(rng: np.random.Generator) -> Anatomy:
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
        Lung(-1, -lung_cx, lung_cy, lung_ax * 1.03, lung_ay, -tilt),
        Lung(+1, lung_cx, lung_cy, lung_ax * 0.97, lung_ay, tilt),
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

    carina = np.array([rng.uniform(-0.015, 0.015), lung_cy - 0.06 * bs, rng.uniform(0.38, 0.46) * Z_LEN])
    r_tr = 0.036 * bs
    airways = [np.r_[carina[0], carina[1], -0.1, carina, r_tr, r_tr]]
    for lung in lungs:
        hilum = np.array([lung.cx - lung.side * 0.5 * lung.ax, lung.cy - 0.04, carina[2] + 0.12])
        airways.append(np.r_[carina, hilum, r_tr * 0.7, r_tr * 0.55])

    airway_segments = np.stack(airways)
    anatomy = Anatomy(
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


def _sample_vessels(rng: np.random.Generator, a: Anatomy, bs: float) -> np.ndarray:
    """Pulmonary vessels: a branching tree from each hilum plus scattered small peripheral vessels.

    The trees give the large hilar vessels and branching lines; the scattered short segments (pointing away
    from the hilum) give the many small bronchovascular dots seen in every axial slice of a real lung.
    """
    vessels = []
    z_hilum = (a.z_apex + 0.45 * (a.z_base - a.z_apex)) * Z_LEN
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
        x, y = lung_point(a, sd, z, rng.uniform(-math.pi, math.pi, n), np.sqrt(rng.uniform(0.0, 0.9, n)))
        mid = np.column_stack([x, y, z * Z_LEN])
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
    rng: np.random.Generator, a: Anatomy, side: int, z_beta: tuple[float, float], rho: tuple[float, float]
) -> tuple[float, float, float, float]:
    """Rejection-sample a point in one lung (lower zones / posterior favoured); returns x, y, z, angle."""
    x = y = z = theta = 0.0
    for _ in range(40):
        z = a.z_apex + (a.z_base - a.z_apex) * (0.08 + 0.84 * rng.beta(*z_beta))
        delta = rng.uniform(-1.6, 2.2) if rng.random() < 0.6 else rng.uniform(0.2, 1.8)
        x, y = lung_point(a, side, z, delta, rng.uniform(*rho))
        theta = (math.pi if side < 0 else 0.0) + side * delta
        if in_lung(a, x, y, z, margin=0.97):
            break
    return x, y, z, theta


def _ggo_lesions(rng: np.random.Generator, a: Anatomy, severity: float, mild: bool) -> list[Lesion]:
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
            Lesion(
                dense=False,
                side=int(side),
                center=(x, y, z),
                radii=radii,
                angle=theta + math.pi / 2,
                intensity=intensity,
                softness=rng.uniform(0.35, 0.7),
                waves=_waves(rng),
                wave_amp=rng.uniform(0.06, 0.18),
            )
        )
        if not mild and rng.random() < 0.25 * severity:  # a denser core: mixed GGO / consolidation
            lesions.append(
                Lesion(
                    dense=False,
                    side=int(side),
                    center=(x, y, z),
                    radii=tuple(v * rng.uniform(0.35, 0.5) for v in radii),
                    angle=theta + math.pi / 2,
                    intensity=rng.uniform(0.5, 0.6),
                    softness=0.5,
                    waves=_waves(rng),
                    wave_amp=0.1,
                )
            )
    return lesions


def _bronchograms(rng: np.random.Generator, a: Anatomy, center: np.ndarray, side: int, r: float) -> np.ndarray:
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
    a: Anatomy,
    side: int,
    kind: str,
    extent: float,
    intensity: float,
    bronchi_prob: float,
) -> Lesion:
    """A dense opacity: 'lobar' fills most of a lobe up to a fissure, 'segmental' is a pleura-based wedge."""
    lung = a.lungs[0] if side < 0 else a.lungs[1]
    height = (a.z_base - a.z_apex) * Z_LEN
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
    c = np.array([center[0], center[1], center[2] * Z_LEN])
    bronchi = _bronchograms(rng, a, c, side, float(np.mean(radii))) if rng.random() < bronchi_prob else None
    return Lesion(
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


def _focus(rng: np.random.Generator, a: Anatomy, side: int, r: float, intensity: float, dense: bool) -> Lesion:
    """A small, roundish opacity: a satellite or contralateral focus of pneumonia."""
    x, y, z, _ = _place_peripheral(rng, a, side, (1.8, 1.4), (0.4, 0.8))
    return Lesion(
        dense=dense,
        side=side,
        center=(x, y, z),
        radii=(r * rng.uniform(0.9, 1.3), r, r * rng.uniform(0.8, 1.2)),
        angle=rng.uniform(0.0, math.pi),
        intensity=intensity,
        softness=rng.uniform(0.2, 0.4),
        waves=_waves(rng),
        wave_amp=rng.uniform(0.05, 0.15),
    )


def _cp_lesions(rng: np.random.Generator, a: Anatomy, severity: float, mild: bool) -> list[Lesion]:
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
            Lesion(
                dense=True,
                side=side,
                center=(float(c[0]), float(c[1]), main.center[2] + rng.normal(0.0, 0.04)),
                radii=tuple(v * rng.uniform(0.45, 0.7) for v in main.radii),
                angle=rng.uniform(0.0, math.pi),
                intensity=intensity * rng.uniform(0.9, 1.0),
                softness=main.softness,
                waves=_waves(rng),
                wave_amp=main.wave_amp,
            )
        )
    if rng.random() < 0.25:  # small contralateral focus, so that "bilateral" is not a perfect rule
        lesions.append(_focus(rng, a, -side, rng.uniform(0.035, 0.06), rng.uniform(0.45, 0.62), dense=True))
    return lesions


@functools.lru_cache(maxsize=1024)
def sample_patient(seed: int, patient_index: int, label: int) -> Patient:
    """Draw one patient; cached because all scans of a patient (and every size) share it."""
    rng = np.random.default_rng([seed, patient_index, label, TAG_PATIENT])
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
    return Patient(label, anatomy, tuple(lesions), float(rng.uniform(-0.2, 0.25)), pose)


def sample_scan(seed: int, scan: SyntheticScan, patient: Patient) -> ScanParams:
    """Per-scan variation: re-positioning, breathing, lesion progression and scanner nuisances."""
    rng = np.random.default_rng([seed, scan.patient_index, scan.label, TAG_SCAN, scan.scan_index])
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
    return ScanParams(
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

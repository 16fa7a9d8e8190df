"""What a phantom is made of: the sampled patient/scan parameters and the intensity constants."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from darnet_pl.data.records import CLASS_NAMES

# the label of each finding the phantoms render (the order is records.CLASS_NAMES')
CP = CLASS_NAMES.index("CP")
NCP = CLASS_NAMES.index("NCP")
NORMAL = CLASS_NAMES.index("Normal")


Z_LEN = 1.7  # length of the scanned range (z from 0 to 1) in x-units: ~300 mm of chest vs 175 mm


TAG_PATIENT, TAG_SCAN, TAG_COHORT = 1, 2, 3


# Lung-window intensities before the scanner nuisances (contrast, bias field, noise) are applied.
SKIN, FAT, SOFT, MEDIASTINUM, HEART = 0.76, 0.55, 0.68, 0.6, 0.71


BONE, MARROW, RIB, VESSEL, AIRWAY = 0.97, 0.84, 0.9, 0.62, 0.03


CONTRAST_PIVOT = 0.2  # contrast jitter pivots near the lung level, so air stays the darkest


Box = tuple[slice, slice, slice]


@dataclass(frozen=True, eq=False)
class Lung:
    """An elliptical lung cross-section at full size; ``side`` is -1 (right, x < 0) or +1 (left)."""

    side: int
    cx: float
    cy: float
    ax: float
    ay: float
    tilt: float


@dataclass(frozen=True, eq=False)
class Anatomy:
    """Patient-specific anatomy, shared by all scans of a patient (this is what makes patients distinct)."""

    body_cy: float
    body_ax: float
    body_ay: float
    body_p: float
    skin: float
    fat_lat: float
    fat_ant: float
    fat_post: float
    lungs: tuple[Lung, Lung]
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
class Lesion:
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
    cut: tuple[float, float, float, float] | None = None  # unit normal (x, y, z_phys), offset from the centre
    bronchi: np.ndarray | None = None  # air-bronchogram tubes, tube layout as ``Anatomy.vessels``
    bronchi_depth: float = 0.0


@dataclass(frozen=True, eq=False)
class Patient:
    """Everything that stays fixed across the scans of one patient."""

    label: int
    anatomy: Anatomy
    lesions: tuple[Lesion, ...]
    trend: float  # log lesion growth per follow-up scan
    pose: tuple[float, float, float, float, float]  # angle, tx, ty, z offset, z span


@dataclass(frozen=True, eq=False)
class ScanParams:
    """What changes from one scan of a patient to the next."""

    pose: tuple[float, float, float, float, float]
    inspiration: float
    growth: np.ndarray  # per-lesion size factor
    noise: float
    contrast: float
    brightness: float
    bias_xy: tuple[float, float, float, float, float, float, float]  # amp_u, f_u, ph_u, amp_v, f_v, ph_v, cup
    bias_z: tuple[float, float, float]  # amplitude, frequency, phase

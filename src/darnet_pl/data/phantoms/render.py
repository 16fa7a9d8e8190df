"""Rasterisation: anatomy, lesions and scanner nuisances stamped into a (D, H, W) volume; ``render_scan``."""

from __future__ import annotations

import math

import numpy as np

from darnet_pl.data.phantoms.cohort import SyntheticScan
from darnet_pl.data.phantoms.geometry import (
    body_scale,
    dome_geometry,
    dome_scale,
    heart_scale,
    lung_scale,
    mediastinum_scale,
    norm2d,
    smoothstep,
)
from darnet_pl.data.phantoms.params import (
    AIRWAY,
    BONE,
    CONTRAST_PIVOT,
    FAT,
    HEART,
    MARROW,
    MEDIASTINUM,
    RIB,
    SKIN,
    SOFT,
    TAG_SCAN,
    VESSEL,
    Z_LEN,
    Anatomy,
    Box,
    Lesion,
    Patient,
    ScanParams,
)
from darnet_pl.data.phantoms.sampling import sample_patient, sample_scan


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
        self.pz = self.span * Z_LEN / d  # slice spacing in x-units

    def to_index(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fractional (slice, row, column) of physical points (x, y, z_phys)."""
        d, h, w = self.shape
        u = self.cos * pts[:, 0] - self.sin * pts[:, 1] + self.tx
        v = self.sin * pts[:, 0] + self.cos * pts[:, 1] + self.ty
        k = (pts[:, 2] / Z_LEN - self.z_off) / self.span * d - 0.5
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
    r = norm2d(grid.x[b[1], b[2]], grid.y[b[1], b[2]], cx, cy, ax, ay, **kw)
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


def _render_anatomy(grid: _Grid, a: Anatomy, inspiration: float) -> tuple[np.ndarray, np.ndarray]:
    """Paint the healthy chest back to front; returns the volume and the (soft) lung-parenchyma fraction."""
    vol = np.zeros(grid.shape, dtype=np.float32)
    lung = np.zeros(grid.shape, dtype=np.float32)
    z = grid.z

    # Body: skin, subcutaneous fat, then muscle / chest wall.
    sb = body_scale(z)
    full = grid.z_box(sb, 0.0, a.body_cy, max(a.body_ax, a.body_ay) * 1.1)
    if full is None:
        return vol, lung
    body = dict(cx=0.0, cy=a.body_cy, ax=a.body_ax, ay=a.body_ay, p=a.body_p)
    _paint(vol, full, _scaled_alpha(grid, full, sb, **body), SKIN)
    skin = dict(body, ax=a.body_ax - a.skin, ay=a.body_ay - a.skin)
    _paint(vol, full, _scaled_alpha(grid, full, sb, **skin), FAT)
    wall = dict(
        cx=0.0,
        cy=a.body_cy + 0.5 * (a.fat_ant - a.fat_post),
        ax=a.body_ax - a.fat_lat,
        ay=a.body_ay - 0.5 * (a.fat_ant + a.fat_post),
        p=a.body_p,
    )
    inner = np.zeros(grid.shape, dtype=np.float32)  # inside the chest wall: organs must not poke out
    inner[full] = _scaled_alpha(grid, full, sb, **wall)
    _paint(vol, full, inner[full], SOFT)

    # Ribs: a band around the lungs, visible in slanted stripes (ribs run downwards to the front).
    s_lung = lung_scale(a, z, inspiration)
    right = a.lungs[0]
    rib_ax, rib_ay = abs(right.cx) + right.ax + 0.05, right.ay + 0.06
    rib_scale = np.clip(np.where(s_lung > 0, s_lung, np.where(z > 0.5, 0.95, 0.55)), 0.55, 1.0)
    r = norm2d(grid.x, grid.y, 0.0, right.cy, rib_ax, rib_ay)
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
    _paint(vol, (slice(None),) * 3, band, RIB)
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
    sm = mediastinum_scale(z)
    b = grid.z_box(sm, mx, my, may)
    if b is not None:
        solid(b, _scaled_alpha(grid, b, sm, mx, my, max_, may), MEDIASTINUM)
    sh = heart_scale(a, z)
    hx, hy, hax, hay = a.heart[:4]
    b = grid.z_box(sh, hx, hy, max(hax, hay))
    if b is not None:
        solid(b, _scaled_alpha(grid, b, sh, hx, hy, hax, hay), HEART)
    ax_, ay_, ar = a.aorta
    b = grid.box(ax_, ay_, ar, z_lo=0.28)
    if b is not None:
        solid(b, _scaled_alpha(grid, b, None, ax_, ay_, ar, ar), HEART)
    for side_index, L in enumerate(a.lungs):
        sd = dome_scale(a, z, side_index)
        dcx, dcy, dax, day = dome_geometry(L)
        b = grid.z_box(sd, dcx, dcy, max(dax, day))
        if b is not None:
            solid(b, _scaled_alpha(grid, b, sd, dcx, dcy, dax, day) * inner[b], SOFT)

    # Spine: vertebral body (cortex, marrow, intervertebral discs), canal, arch and spinous process.
    sy, sr = a.spine
    disc = np.clip((np.cos(2 * np.pi * (a.vertebra_pitch * z + a.vertebra_phase)) - 0.7) * 4.0, 0.0, 1.0)
    marrow = (MARROW - disc * (MARROW - SOFT)).astype(np.float32)[:, None, None]
    arch = (0.0, sy + 1.55 * sr, 0.9 * sr, 0.65 * sr)
    b = grid.box(0.0, sy + sr, 3.2 * sr)
    if b is not None:
        solid(b, _scaled_alpha(grid, b, None, *arch), BONE)
        solid(b, _scaled_alpha(grid, b, None, 0.0, sy + 2.3 * sr, 0.22 * sr, 0.6 * sr), BONE)
        solid(b, _scaled_alpha(grid, b, None, 0.0, sy, sr, 0.92 * sr), BONE)
        solid(b, _scaled_alpha(grid, b, None, 0.0, sy, 0.82 * sr, 0.75 * sr), marrow[b[0]])
        solid(b, _scaled_alpha(grid, b, None, 0.0, sy + 1.45 * sr, 0.42 * sr, 0.4 * sr), SOFT)

    # Trachea and main bronchi (air).
    air = _tube_field(grid.shape, (0, 0, 0), grid, a.airways)
    _paint(vol, (slice(None),) * 3, air, AIRWAY)
    return vol, lung


def _lesion_alpha(grid: _Grid, les: Lesion, growth: float) -> tuple[Box, np.ndarray] | None:
    """Soft, lobulated, optionally plane-cut ellipsoid opacity (before clipping to the lungs)."""
    rx, ry, rz = (r * growth for r in les.radii)
    cx, cy, cz = les.center
    slab = 0.5 * max(grid.pz - grid.px, 0.0)
    # The half-opacity contour sits at r = 1 - softness / 2 at every resolution; at coarse ones the ramp
    # around it is widened to at least 1.5 voxels so that small lesions are anti-aliased, not shrunk.
    width = max(les.softness, 1.5 * grid.px / min(rx, ry))
    reach = (1.0 - 0.5 * les.softness + 0.5 * width) / (1.0 - les.wave_amp) + 0.02  # where opacity ends
    b = grid.box(cx, cy, max(rx, ry) * reach, cz - (rz * reach + slab) / Z_LEN, cz + (rz * reach + slab) / Z_LEN)
    if b is None:
        return None
    dx = grid.x[b[1], b[2]] - cx
    dy = grid.y[b[1], b[2]] - cy
    c, s = math.cos(les.angle), math.sin(les.angle)
    p = (c * dx + s * dy) / rx
    q = (-s * dx + c * dy) / ry
    dz = (grid.z[b[0]] - cz) * Z_LEN
    zn = (np.sign(dz) * np.maximum(np.abs(dz) - slab, 0.0) / rz).astype(np.float32)
    r = np.sqrt((p * p + q * q)[None] + (zn * zn)[:, None, None])
    pert = np.zeros_like(r)
    for kx, ky, kz, ph in les.waves:
        pert += np.cos((kx * p + ky * q)[None] + (kz * zn + ph)[:, None, None])
    r *= 1.0 + np.float32(les.wave_amp / len(les.waves)) * pert
    r -= np.float32(1.0 - 0.5 * les.softness)
    r *= np.float32(-1.0 / width)
    r += np.float32(0.5)
    alpha = smoothstep(r).astype(np.float32)
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
    patient: Patient,
    sp: ScanParams,
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
            c = np.array([les.center[0], les.center[1], les.center[2] * Z_LEN])
            segs = les.bronchi.copy()
            segs[:, 0:3] = c + (segs[:, 0:3] - c) * g * lesion_scale
            segs[:, 3:6] = c + (segs[:, 3:6] - c) * g * lesion_scale
            tubes = _tube_field(alpha.shape, (b[0].start, b[1].start, b[2].start), grid, segs)
            tubes *= alpha
            tubes *= np.float32(les.bronchi_depth)
            vol[b] -= tubes


def _apply_nuisance(grid: _Grid, vol: np.ndarray, sp: ScanParams, rng: np.random.Generator) -> None:
    """Scanner / protocol variation: smooth bias field, global contrast and brightness, and noise."""
    au, fu, pu, av, fv, pv, cup = sp.bias_xy
    gain_xy = 1.0 + au * np.cos(np.pi * fu * grid.u + pu) + av * np.cos(np.pi * fv * grid.v + pv)
    gain_xy += cup * (1.0 - grid.u**2 - grid.v**2)  # cupping / capping
    az, fz, pz = sp.bias_z
    gain_z = az * np.cos(np.pi * fz * np.linspace(0.0, 1.0, grid.shape[0]) + pz)
    gain = sp.contrast * (gain_xy[None] + gain_z[:, None, None].astype(np.float32))
    vol -= np.float32(CONTRAST_PIVOT)
    vol *= gain.astype(np.float32)
    vol += np.float32(CONTRAST_PIVOT + sp.brightness)
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
    patient = sample_patient(int(seed), int(scan.patient_index), int(scan.label))
    sp = sample_scan(int(seed), scan, patient)
    grid = _Grid(size, sp.pose)
    vol, lung = _render_anatomy(grid, patient.anatomy, sp.inspiration)
    mask = np.zeros(size, dtype=np.float32)
    _render_lesions(grid, vol, lung, mask, patient, sp, dense=False, lesion_scale=lesion_scale)
    vessels = _tube_field(size, (0, 0, 0), grid, patient.anatomy.vessels)
    vessels *= lung
    _paint(vol, (slice(None),) * 3, vessels, VESSEL)
    del vessels
    _render_lesions(grid, vol, lung, mask, patient, sp, dense=True, lesion_scale=lesion_scale)
    noise_rng = np.random.default_rng([seed, scan.patient_index, scan.label, TAG_SCAN, scan.scan_index, 1])
    _apply_nuisance(grid, vol, sp, noise_rng)
    return vol, mask > 0.5, lung > 0.5

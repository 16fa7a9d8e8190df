"""In-plane augmentation as one float32 resampling: random flips and an affine composed into one 2-D map.

The augmentation presets only flip H or W, rotate about the depth axis, and translate and zoom H and W, so every
slice of a scan gets the same 2-D warp. MONAI's ``RandAffined`` resamples it as a 3-D warp, in float64, through a
grid of 3 x D x H x W coordinates built per scan: about 0.3 s per 64x224x224 scan on one core. Here:

- the random transforms (:class:`RandInPlaneAffined`, :class:`RandInPlaneFlipd`, :class:`RandOneInPlaneFlipd`)
  make the random draws of MONAI's ``RandAffined`` and ``RandFlipd`` (same random streams, same calls, so a seed
  gives the same parameters, and the affine is MONAI's matrix, rotation @ translation @ scale, in float64) but
  move no voxel: each composes its output-to-input map into one 3x3 matrix over (h, w, 1) held in the item under
  :data:`PENDING`;
- :class:`InPlaneWarpd` (in a loader worker) or :func:`warp` (a batch, on the training device) resamples with
  that map once: a float32 (H, W) grid per scan built where the images are, and one 2-D ``grid_sample`` with the
  depth slices as channels. A map made of flips only is applied as flips (exact, no interpolation).

Geometry is MONAI's: centred voxel coordinates (0 at the volume's centre), output-to-input maps, bilinear
interpolation, zero padding, ``align_corners=False``. Against MONAI's float64 resampling the output differs by
float32 rounding of the sampling coordinates only (tests/data/test_inplane.py states the tolerance).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.transforms import Compose, MapTransform, RandAffineGrid, RandomizableTransform

# the item key of the pending map: 3x3 float64, output (h, w, 1) -> input (h, w, 1), centred voxel coordinates
PENDING = "inplane_map"


def identity_map() -> np.ndarray:
    return np.eye(3)


def flip_map(spatial_axis: int) -> np.ndarray:
    """The map of a flip of spatial axis 1 (H) or 2 (W) of (D, H, W): one centred coordinate changes sign."""
    if spatial_axis not in (1, 2):
        raise ValueError(f"in-plane flips are of spatial axis 1 (H) or 2 (W), got {spatial_axis}")
    m = np.eye(3)
    m[spatial_axis - 1, spatial_axis - 1] = -1.0
    return m


def _then(data: Mapping[Hashable, Any], m: np.ndarray) -> dict[Hashable, Any]:
    """``data`` with ``m`` composed after the transforms already pending (their map, then this one's)."""
    d = dict(data)
    d[PENDING] = d.get(PENDING, identity_map()) @ m
    return d


class RandInPlaneFlipd(RandomizableTransform):
    """With probability ``prob``, a flip of spatial axis 1 (H) or 2 (W): ``RandFlipd``'s draw, composed lazily."""

    def __init__(self, prob: float, spatial_axis: int) -> None:
        RandomizableTransform.__init__(self, prob)
        self.map = flip_map(spatial_axis)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        self.randomize(None)
        return _then(data, self.map) if self._do_transform else dict(data)


class RandOneInPlaneFlipd(RandomizableTransform):
    """Exactly one in-plane flip every call, as in the authors' code: H (spatial axis 1 of D, H, W) with
    probability ``h_prob``, otherwise W (spatial axis 2). Never no flip, never both, never depth."""

    def __init__(self, h_prob: float = 0.5) -> None:
        RandomizableTransform.__init__(self, prob=1.0)
        if not 0.0 <= h_prob <= 1.0:
            raise ValueError(f"h_prob must be in [0, 1], got {h_prob}")
        self.h_prob = h_prob
        self.spatial_axis = 1

    def randomize(self, data: Any = None) -> None:
        self.spatial_axis = 1 if self.R.rand() < self.h_prob else 2

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        self.randomize()
        return _then(data, flip_map(self.spatial_axis))


class RandInPlaneAffined(RandomizableTransform):
    """With probability ``prob``, an affine in the H-W plane, drawn as MONAI's ``RandAffined`` draws it.

    Equivalent to ``RandAffined(prob=prob, rotate_range=(rotate, 0, 0), translate_range=(0, *translate),
    scale_range=(0, *scale))``: rotation U(-rotate, rotate) radians about depth, translation U(-t, t) voxels and zoom
    1 + U(-s, s) on H and on W, composed by MONAI as rotation @ translation @ scale. The draws are those of
    MONAI's ``RandAffineGrid``; ``RandAffined`` draws its parameters twice from the grid's stream (once in
    ``randomize``, again when it builds the grid) and uses the second draw, and so does this transform.
    """

    def __init__(self, prob: float, rotate: float, translate: Sequence[float], scale: Sequence[float]) -> None:
        RandomizableTransform.__init__(self, prob)
        self.rand_affine_grid = RandAffineGrid(
            rotate_range=(rotate, 0.0, 0.0),  # MONAI's first 3-D angle rotates in the plane of axes 1 and 2 (H, W)
            translate_range=(0.0, *translate),
            scale_range=(0.0, *scale),
        )

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandInPlaneAffined:
        self.rand_affine_grid.set_random_state(seed, state)
        super().set_random_state(seed, state)
        return self

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        if self._do_transform:
            self.rand_affine_grid.randomize()
            self.rand_affine_grid.randomize()

    def matrix(self) -> np.ndarray:
        """The in-plane map of the last draw: MONAI's rotation @ translation @ scale, in float64 (MONAI builds
        the same product in float32; the test suite checks they agree)."""
        grid = self.rand_affine_grid
        theta, (t_h, t_w), (s_h, s_w) = grid.rotate_params[0], grid.translate_params[1:], grid.scale_params[1:]
        cos, sin = math.cos(theta), math.sin(theta)
        rotation = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
        translation = np.array([[1.0, 0.0, t_h], [0.0, 1.0, t_w], [0.0, 0.0, 1.0]])
        return rotation @ translation @ np.diag([s_h, s_w, 1.0])

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        self.randomize()
        return _then(data, self.matrix()) if self._do_transform else dict(data)


def _flip_dims(m: np.ndarray) -> tuple[int, ...] | None:
    """The in-plane axes (1 = H, 2 = W of D, H, W) of a map made of flips only, else None."""
    diagonal = np.diag(m[:2, :2])
    if not (np.array_equal(m[:2, :2], np.diag(diagonal)) and np.all(np.abs(diagonal) == 1) and not m[:2, 2].any()):
        return None
    return tuple(axis for axis in (1, 2) if diagonal[axis - 1] < 0)


def sampling_grid(maps: torch.Tensor, height: int, width: int, device: torch.device | str) -> torch.Tensor:
    """``grid_sample``'s (B, H, W, 2) float32 grid of the (B, 3, 3) output-to-input maps, built on ``device``.

    ``align_corners=False`` puts -1 and 1 at the outer edges of the border voxels, so a centred coordinate c of an
    axis of n voxels is 2c/n. Elementwise products only (no matmul, which may run in TF32 on a GPU).
    """
    scale = torch.tensor([2.0 / height, 2.0 / width], dtype=torch.float64)
    m = (maps[:, :2, :].to(torch.float64) * scale[None, :, None]).to(device=device, dtype=torch.float32)
    ch = (torch.arange(height, device=device, dtype=torch.float32) - (height - 1) / 2)[None, :, None]
    cw = (torch.arange(width, device=device, dtype=torch.float32) - (width - 1) / 2)[None, None, :]
    rows = [m[:, r, 0, None, None] * ch + m[:, r, 1, None, None] * cw + m[:, r, 2, None, None] for r in (0, 1)]
    return torch.stack((rows[1], rows[0]), dim=-1)  # grid_sample's last axis is (x = W, y = H)


def warp(images: torch.Tensor, maps: np.ndarray) -> torch.Tensor:
    """Resample float32 ``images`` (B, C, D, H, W) with one in-plane map per scan (B, 3, 3), where they are."""
    maps = np.asarray(maps, dtype=np.float64)
    b, c, d, h, w = images.shape
    grid = sampling_grid(torch.from_numpy(maps), h, w, images.device)
    out = F.grid_sample(
        images.reshape(b, c * d, h, w), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    ).reshape(b, c, d, h, w)
    for i, m in enumerate(maps):  # flips only: exact, as MONAI's Flip
        dims = _flip_dims(m)
        if dims is not None:
            out[i] = torch.flip(images[i], dims=[1 + a for a in dims]) if dims else images[i]
    return out


def warp_one(image: torch.Tensor, m: np.ndarray) -> torch.Tensor:
    """:func:`warp` for one (C, D, H, W) image; a map of flips only costs no resampling."""
    dims = _flip_dims(m)
    if dims is not None:
        return torch.flip(image, dims=[1 + a for a in dims]) if dims else image
    return warp(image[None], m[None])[0]


class InPlaneWarpd(MapTransform):
    """Applies the pending in-plane map to ``keys`` (float32 (C, D, H, W)) and removes it from the item."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        m = d.pop(PENDING, None)
        if m is None:
            return d
        for key in self.key_iterator(d):
            d[key] = warp_one(torch.as_tensor(d[key]), m)
        return d


class InPlaneMaps:
    """The pending maps the random transforms ``draws`` give for each of ``seeds`` ((B, 3, 3)), as a seeded
    ``Compose`` of them would: the same per-item seeds as in a loader worker, so the same maps."""

    def __init__(self, draws: Sequence[RandomizableTransform]) -> None:
        self.draws = Compose(list(draws))

    def __call__(self, seeds: Sequence[int]) -> np.ndarray:
        maps = []
        for seed in seeds:
            self.draws.set_random_state(seed=int(seed))
            maps.append(self.draws({}).get(PENDING, identity_map()))
        return np.stack(maps) if maps else np.zeros((0, 3, 3))

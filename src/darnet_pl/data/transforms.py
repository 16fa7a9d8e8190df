"""MONAI dictionary pipelines: random spatial augmentation for training, none for validation and testing.

The paper augments online with random flipping, rotation, translation and scaling. Two recipes (presets) are
implemented, chosen with the config group ``data/augment`` (``data/augment=default`` or ``data/augment=authors``,
which set ``data.augment.preset``); the paper's experiments (``+experiment=darnet``, ``ablation``,
``shortcut_control``) use ``authors``, everything else ``default``. Both keep the slice order that depth
attention relies on: no depth flip, rotation only in the axial (H-W) plane, no depth translation or zoom.

``default`` (this project's recipe, tunable with ``data.augment.flip_prob`` and the other keys of
:class:`AugmentConfig`): a left-right flip and an anterior-posterior flip, each independently with probability
``flip_prob`` (so none, one or both), then with probability ``affine_prob`` one in-plane affine: rotation
U(-10, 10) degrees about the depth axis, translation U(-5 %, 5 %) of H and of W, zoom 1 + U(-0.1, 0.1) on H and
on W (MONAI draws every axis of ``scale_range`` independently).

``authors`` (fixed; the authors' code, shijun18/COVID-19_CLS ``data_utils/transform.py`` and ``trainer.py``):

- an affine every time (``RandAffined`` with ``prob=1``), one combined warp about the volume centre: rotation
  U(-5, 5) degrees about the depth axis (in the H-W plane), translation U(-5, 5) voxels on H and on W (none on
  depth), zoom factors U(0.9, 1.1) on H and on W drawn independently (depth 1); linear interpolation, zero
  padding;
- then exactly one in-plane flip every time (:class:`RandOneInPlaneFlipd`): H (axis 1 of D, H, W) with
  probability 0.5, else W (axis 2); never none, never both, never depth;
- no intensity augmentation.

Zoom direction: MONAI's affine maps output coordinates to input coordinates, so a scale factor > 1 zooms out (the
content shrinks), and so does the authors' scale, which their code also uses as an inverse map. Both conventions
agree; U(0.9, 1.1) is near-symmetric in any case. MONAI composes the matrix as rotation @ translation @ scale.

Known difference: the authors' later code also augments the validation set with the training pipeline; here
validation (and testing and inference) is never augmented, whatever the preset.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import Compose, EnsureTyped, Flip, MapTransform, RandAffined, RandFlipd, RandomizableTransform

KEYS = ("image",)
PRESETS = ("default", "authors")

# the authors' recipe (fixed: the ``authors`` preset has no tunable key)
AUTHORS_ROTATE_DEGREES = 5.0  # U(-5, 5) degrees about the depth axis
AUTHORS_TRANSLATE_VOXELS = 5.0  # U(-5, 5) voxels on H and on W
AUTHORS_SCALE_RANGE = 0.1  # zoom 1 + U(-0.1, 0.1) on H and on W, independently
AUTHORS_H_FLIP_PROB = 0.5  # exactly one flip: H with this probability, else W

# keys that tune the ``default`` preset only
_DEFAULT_PRESET_KEYS = ("flip_prob", "affine_prob", "rotate_degrees", "translate_fraction", "scale_range")


@dataclass(frozen=True)
class AugmentConfig:
    enabled: bool = True
    # the ``default`` preset's settings (the ``authors`` preset is fixed and refuses other values)
    flip_prob: float = 0.5
    affine_prob: float = 0.5
    rotate_degrees: float = 10.0
    translate_fraction: float = 0.05
    scale_range: float = 0.1
    # run the random transforms on the training device (GPU) after the batch is transferred, not in the loader's
    # CPU workers: the same transforms with the same per-scan seeds, so a few CPU cores can feed a fast GPU
    on_device: bool = False
    # which recipe: "default" (the settings above) or "authors" (the authors' code; see the module docstring)
    preset: str = "default"

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(
                f"data.augment.preset must be one of {', '.join(PRESETS)}, got {self.preset!r} "
                "(choose it with data/augment=default or data/augment=authors)"
            )
        if self.preset == "authors":
            defaults = {f.name: f.default for f in fields(self)}
            tuned = [key for key in _DEFAULT_PRESET_KEYS if getattr(self, key) != defaults[key]]
            if tuned:
                settings = ", ".join(f"data.augment.{key}={getattr(self, key)}" for key in tuned)
                raise ValueError(
                    f"{settings}: tunes the 'default' augmentation preset, but data.augment.preset is 'authors' "
                    "(the authors' fixed recipe); use data/augment=default to tune it"
                )


class RandOneInPlaneFlipd(RandomizableTransform, MapTransform):
    """Exactly one in-plane flip every call, as in the authors' code: H (spatial axis 1 of D, H, W) with
    probability ``h_prob``, otherwise W (spatial axis 2). Never no flip, never both, never depth.

    Randomizable the MONAI way (``set_random_state`` / ``self.R``), so a ``Compose`` seeded per item draws the same
    axis in a loader worker and in :class:`DeviceAugmentation`; ``torch.flip`` runs wherever the tensor lives.
    """

    backend = Flip.backend

    def __init__(self, keys: KeysCollection, h_prob: float = 0.5, allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob=1.0)
        if not 0.0 <= h_prob <= 1.0:
            raise ValueError(f"h_prob must be in [0, 1], got {h_prob}")
        self.h_prob = h_prob
        self.spatial_axis = 1
        self._flips = {1: Flip(spatial_axis=1), 2: Flip(spatial_axis=2)}

    def randomize(self, data: Any = None) -> None:
        self.spatial_axis = 1 if self.R.rand() < self.h_prob else 2

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        self.randomize()
        flip = self._flips[self.spatial_axis]
        for key in self.key_iterator(d):
            d[key] = flip(d[key])
        return d


def train_transforms(size: tuple[int, int, int], augment: AugmentConfig) -> Compose:
    """The training pipeline of ``augment.preset`` on ``image`` shaped (C, D, H, W); none when disabled."""
    if not augment.enabled:
        return eval_transforms()
    if augment.preset == "authors":
        return authors_transforms(size)
    return default_transforms(size, augment)


def default_transforms(size: tuple[int, int, int], augment: AugmentConfig) -> Compose:
    """Independent flips and, with ``affine_prob``, an in-plane affine (rotation, translation, scaling)."""
    depth, height, width = size
    return Compose(
        [
            RandFlipd(keys=KEYS, prob=augment.flip_prob, spatial_axis=2),  # left-right
            RandFlipd(keys=KEYS, prob=augment.flip_prob, spatial_axis=1),  # anterior-posterior
            RandAffined(
                keys=KEYS,
                prob=augment.affine_prob,
                rotate_range=(math.radians(augment.rotate_degrees), 0.0, 0.0),
                translate_range=(
                    0.0,
                    augment.translate_fraction * height,
                    augment.translate_fraction * width,
                ),
                scale_range=(0.0, augment.scale_range, augment.scale_range),
                mode="bilinear",
                padding_mode="zeros",
                cache_grid=True,
                spatial_size=(depth, height, width),
            ),
            EnsureTyped(keys=KEYS, track_meta=False),
        ]
    )


def authors_transforms(size: Sequence[int]) -> Compose:
    """The authors' recipe: an in-plane affine every time, then exactly one of the two in-plane flips."""
    depth, height, width = (int(s) for s in size)
    return Compose(
        [
            RandAffined(
                keys=KEYS,
                prob=1.0,
                # MONAI's first 3-D angle rotates in the plane of spatial axes 1 and 2 (H, W): about depth
                rotate_range=(math.radians(AUTHORS_ROTATE_DEGREES), 0.0, 0.0),
                translate_range=(0.0, AUTHORS_TRANSLATE_VOXELS, AUTHORS_TRANSLATE_VOXELS),  # voxels
                # each axis 1 + U(-s, s), drawn independently
                scale_range=(0.0, AUTHORS_SCALE_RANGE, AUTHORS_SCALE_RANGE),
                mode="bilinear",  # (tri)linear; depth coordinates stay on the voxel grid
                padding_mode="zeros",
                cache_grid=True,
                spatial_size=(depth, height, width),
            ),
            RandOneInPlaneFlipd(keys=KEYS, h_prob=AUTHORS_H_FLIP_PROB),
            EnsureTyped(keys=KEYS, track_meta=False),
        ]
    )


def eval_transforms() -> Compose:
    """Validation and test: no augmentation, ever."""
    return Compose([EnsureTyped(keys=KEYS, track_meta=False)])


class DeviceAugmentation:
    """The random training transforms applied to a collated batch where it lives (e.g. on the GPU).

    MONAI's transforms run on CUDA tensors (flips and the affine's ``grid_sample`` on the GPU). Item ``i`` is
    transformed with the random state seeded by its ``aug_seed`` (from the dataset), so it draws the same
    flips and affine parameters as it would in a loader worker: on the CPU both paths give the same tensors.
    """

    def __init__(self, transform: Compose) -> None:
        self.transform = transform

    def __call__(self, batch: dict) -> dict:
        seeds = batch.pop("aug_seed")
        images = []
        for image, seed in zip(batch["image"], seeds.tolist(), strict=True):
            self.transform.set_random_state(seed=int(seed))
            images.append(self.transform({"image": image})["image"])
        batch["image"] = torch.stack([torch.as_tensor(image) for image in images])
        return batch

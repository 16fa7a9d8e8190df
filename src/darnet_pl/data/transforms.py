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

- an affine every time (``RandAffined``'s draws with ``prob=1``), one combined warp about the volume centre: rotation
  U(-5, 5) degrees about the depth axis (in the H-W plane), translation U(-5, 5) voxels on H and on W (none on
  depth), zoom factors U(0.9, 1.1) on H and on W drawn independently (depth 1); linear interpolation, zero
  padding;
- then exactly one in-plane flip every time (:class:`RandOneInPlaneFlipd`): H (axis 1 of D, H, W) with
  probability 0.5, else W (axis 2); never none, never both, never depth;
- no intensity augmentation.

Zoom direction: MONAI's affine maps output coordinates to input coordinates, so a scale factor > 1 zooms out (the
content shrinks), and so does the authors' scale, which their code also uses as an inverse map. Both conventions
agree; U(0.9, 1.1) is near-symmetric in any case. MONAI composes the matrix as rotation @ translation @ scale.

How (darnet_pl/data/inplane.py): the random transforms make exactly MONAI's ``RandFlipd`` / ``RandAffined`` draws
(a seed gives the same parameters and the same matrix as those transforms), compose flips and affine into one
in-plane map, and the scan is resampled once, in float32, as a 2-D warp of all its slices: about 25 times faster on
a CPU core than ``RandAffined``'s 3-D float64 resampling, equal to it within float32 rounding, and the same code
resamples a whole batch on the GPU with ``data.augment.on_device=true``.

Known difference: the authors' later code also augments the validation set with the training pipeline; here
validation (and testing and inference) is never augmented, whatever the preset.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

from monai.transforms import Compose, EnsureTyped, RandomizableTransform

from darnet_pl.data.inplane import (
    InPlaneMaps,
    InPlaneWarpd,
    RandInPlaneAffined,
    RandInPlaneFlipd,
    RandOneInPlaneFlipd,
    warp,
)

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
    # resample on the training device (GPU) after the batch is transferred, not in the loader's CPU workers: the
    # same draws with the same per-scan seeds, the sampling grids built on the device, one grid_sample per batch
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


def train_transforms(size: Sequence[int], augment: AugmentConfig) -> Compose:
    """The training pipeline of ``augment.preset`` on ``image`` shaped (C, D, H, W); none when disabled.

    The preset's random draws (:func:`augmentation_draws`), then one float32 resampling with the map they composed.
    """
    if not augment.enabled:
        return eval_transforms()
    return Compose(
        [*augmentation_draws(size, augment), InPlaneWarpd(keys=KEYS), EnsureTyped(keys=KEYS, track_meta=False)]
    )


def augmentation_draws(size: Sequence[int], augment: AugmentConfig) -> list[RandomizableTransform]:
    """The random transforms of ``augment.preset``, in order; they compose an in-plane map and move no voxel."""
    if augment.preset == "authors":
        return authors_draws(size)
    return default_draws(size, augment)


def default_draws(size: Sequence[int], augment: AugmentConfig) -> list[RandomizableTransform]:
    """Independent flips and, with ``affine_prob``, an in-plane affine (rotation, translation, scaling)."""
    _, height, width = (int(s) for s in size)
    shift = augment.translate_fraction
    return [
        RandInPlaneFlipd(prob=augment.flip_prob, spatial_axis=2),  # left-right
        RandInPlaneFlipd(prob=augment.flip_prob, spatial_axis=1),  # anterior-posterior
        RandInPlaneAffined(
            prob=augment.affine_prob,
            rotate=math.radians(augment.rotate_degrees),
            translate=(shift * height, shift * width),
            scale=(augment.scale_range, augment.scale_range),
        ),
    ]


def authors_draws(size: Sequence[int]) -> list[RandomizableTransform]:
    """The authors' recipe: an in-plane affine every time, then exactly one of the two in-plane flips."""
    return [
        RandInPlaneAffined(
            prob=1.0,
            rotate=math.radians(AUTHORS_ROTATE_DEGREES),
            translate=(AUTHORS_TRANSLATE_VOXELS, AUTHORS_TRANSLATE_VOXELS),  # voxels
            scale=(AUTHORS_SCALE_RANGE, AUTHORS_SCALE_RANGE),  # each axis 1 + U(-s, s), drawn independently
        ),
        RandOneInPlaneFlipd(h_prob=AUTHORS_H_FLIP_PROB),
    ]


def eval_transforms() -> Compose:
    """Validation and test: no augmentation, ever."""
    return Compose([EnsureTyped(keys=KEYS, track_meta=False)])


class DeviceAugmentation:
    """The random training transforms applied to a collated batch where it lives (e.g. on the GPU), batched.

    Item ``i``'s map is drawn with the random state seeded by its ``aug_seed`` (from the dataset), so it is the map
    a loader worker would draw (a few small matrices, on the CPU); the (H, W) sampling grids are then built on the
    batch's device and the whole batch is resampled in one ``grid_sample`` (:func:`~darnet_pl.data.inplane.warp`).
    On the CPU both paths give the same tensors.
    """

    def __init__(self, size: Sequence[int], augment: AugmentConfig) -> None:
        self.maps = InPlaneMaps(augmentation_draws(size, augment))

    def __call__(self, batch: dict) -> dict:
        seeds = batch.pop("aug_seed")
        batch["image"] = warp(batch["image"], self.maps(seeds.tolist()))
        return batch

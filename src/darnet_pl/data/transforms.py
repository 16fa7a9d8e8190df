"""MONAI dictionary pipelines: random spatial augmentation for training, none for validation and testing.

The paper augments online with random flipping, rotation, translation and scaling. Rotation is in-plane (about
the depth axis) and flips are left-right and anterior-posterior, like the authors' 'hv' flips, so the slice order
that depth attention relies on is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from monai.transforms import Compose, EnsureTyped, RandAffined, RandFlipd

KEYS = ("image",)


@dataclass(frozen=True)
class AugmentConfig:
    enabled: bool = True
    flip_prob: float = 0.5
    affine_prob: float = 0.5
    rotate_degrees: float = 10.0
    translate_fraction: float = 0.05
    scale_range: float = 0.1
    # run the random transforms on the training device (GPU) after the batch is transferred, not in the loader's
    # CPU workers: the same transforms with the same per-scan seeds, so a few CPU cores can feed a fast GPU
    on_device: bool = False


def train_transforms(size: tuple[int, int, int], augment: AugmentConfig) -> Compose:
    """Random flips and an in-plane affine (rotation, translation, scaling) on ``image`` shaped (C, D, H, W)."""
    if not augment.enabled:
        return eval_transforms()
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

"""The float32 in-plane resampling against MONAI's float64 one: same draws, same geometry within the tolerance.

Tolerance (intensities in [0, 1]): |in-plane float32 - MONAI RandAffined float64| <= 1e-4 per voxel, a fortieth of
one uint8 gray level. Both paths compute the sampling coordinates in float32 (MONAI builds its grid in float32 and
only interpolates in float64), so the difference is coordinate rounding and grows with the size: measured here
up to about 1e-5 at these sizes and 5e-5 at 64x224x224 (``python -m darnet_pl.bench.loader``,
``max_abs_diff_vs_before``). Sizes are not square, so an H/W mix-up cannot hide.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping

import numpy as np
import pytest
import torch
from monai.transforms import Compose, EnsureTyped, Flip, MapTransform, RandAffined, RandFlipd, RandomizableTransform

from darnet_pl.data.inplane import (
    PENDING,
    InPlaneMaps,
    RandInPlaneAffined,
    RandInPlaneFlipd,
    warp,
    warp_one,
)
from darnet_pl.data.transforms import AugmentConfig, augmentation_draws, train_transforms

TOLERANCE = 1e-4
SIZES = [(6, 20, 28), (8, 36, 30)]


def _volume(size: tuple[int, int, int], seed: int = 0) -> torch.Tensor:
    """Blocks of random intensity in [0, 1] (sharp edges, where interpolation differences show) plus noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand((1, size[0], size[1] // 4 + 1, size[2] // 4 + 1), generator=g)
    blocks = coarse.repeat_interleave(4, 2).repeat_interleave(4, 3)[:, :, : size[1], : size[2]]
    return (0.8 * blocks + 0.2 * torch.rand((1, *size), generator=g)).contiguous()


class _OldOneInPlaneFlipd(RandomizableTransform, MapTransform):
    """The authors' exactly-one flip as this package had it before (MONAI ``Flip`` on the image)."""

    def __init__(self) -> None:
        MapTransform.__init__(self, ("image",))
        RandomizableTransform.__init__(self, prob=1.0)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        axis = 1 if self.R.rand() < 0.5 else 2
        return {**data, "image": Flip(spatial_axis=axis)(data["image"])}


def _monai_pipeline(size: tuple[int, int, int], preset: str) -> Compose:
    """The MONAI pipeline of each preset as it was before: RandAffined (3-D grid, float64 resampling)."""
    authors = preset == "authors"
    affine = RandAffined(
        keys=("image",),
        prob=1.0 if authors else 0.5,
        rotate_range=(math.radians(5.0 if authors else 10.0), 0.0, 0.0),
        translate_range=(0.0, 5.0, 5.0) if authors else (0.0, 0.05 * size[1], 0.05 * size[2]),
        scale_range=(0.0, 0.1, 0.1),
        mode="bilinear",
        padding_mode="zeros",
        cache_grid=True,
        spatial_size=size,
    )
    if authors:
        steps = [affine, _OldOneInPlaneFlipd()]
    else:
        steps = [
            RandFlipd(("image",), prob=0.5, spatial_axis=2),
            RandFlipd(("image",), prob=0.5, spatial_axis=1),
            affine,
        ]
    return Compose([*steps, EnsureTyped(keys=("image",), track_meta=False)])


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("preset", ["authors", "default"])
def test_each_preset_gives_monais_output_within_the_float32_tolerance(preset: str, size: tuple) -> None:
    old, new = _monai_pipeline(size, preset), train_transforms(size, AugmentConfig(preset=preset))
    image = _volume(size)
    worst = 0.0
    for seed in range(60):
        old.set_random_state(seed=seed)
        new.set_random_state(seed=seed)
        before = torch.as_tensor(old({"image": image})["image"])
        after = new({"image": image})["image"]
        assert after.dtype == torch.float32 and after.shape == before.shape
        worst = max(worst, float((after - before).abs().max()))
    assert worst <= TOLERANCE
    assert worst > 0  # the check compares resampled volumes (a bug returning the input would fail above)


@pytest.mark.parametrize("prob", [1.0, 0.5])
def test_the_affine_draws_monais_parameters_and_matrix(prob: float) -> None:
    size = SIZES[0]
    old = RandAffined(
        keys=("image",),
        prob=prob,
        rotate_range=(0.2, 0.0, 0.0),
        translate_range=(0.0, 3.0, 4.0),
        scale_range=(0.0, 0.1, 0.2),
        spatial_size=size,
        cache_grid=True,
    )
    new = RandInPlaneAffined(prob, rotate=0.2, translate=(3.0, 4.0), scale=(0.1, 0.2))
    image = _volume(size)
    applied = 0
    for seed in range(100):
        old.set_random_state(seed=seed)
        new.set_random_state(seed=seed)
        old({"image": image})
        pending = new({}).get(PENDING)
        assert (pending is not None) == bool(old._do_transform), seed
        if pending is None:
            continue
        applied += 1
        monai = np.asarray(old.rand_affine.rand_affine_grid.get_transformation_matrix(), dtype=np.float64)
        # MONAI's matrix leaves depth alone, and its in-plane part is ours (MONAI's is float32)
        np.testing.assert_array_equal(monai[0], [1, 0, 0, 0])
        np.testing.assert_array_equal(monai[:, 0], [1, 0, 0, 0])
        np.testing.assert_allclose(pending, monai[1:, 1:], atol=2e-6, rtol=0)
    assert applied == 100 if prob == 1.0 else 30 < applied < 70


def test_flips_are_drawn_as_randflipd_and_applied_exactly() -> None:
    size = SIZES[1]
    image = _volume(size)
    old, new = RandFlipd(("image",), prob=0.5, spatial_axis=1), RandInPlaneFlipd(prob=0.5, spatial_axis=1)
    flipped = 0
    for seed in range(40):
        old.set_random_state(seed=seed)
        new.set_random_state(seed=seed)
        before = torch.as_tensor(old({"image": image})["image"])
        after = warp_one(image, new({}).get(PENDING, np.eye(3)))
        assert torch.equal(after, before)
        flipped += bool(old._do_transform)
    assert 0 < flipped < 40
    # in a batch too, whether or not other items of the batch are resampled
    maps = np.stack([np.diag([-1.0, -1.0, 1.0]), np.eye(3), np.array([[1.0, 0.1, 0.5], [0.0, 1.0, 0.0], [0, 0, 1]])])
    out = warp(torch.stack([image] * 3), maps)
    assert torch.equal(out[0], torch.flip(image, dims=[2, 3])) and torch.equal(out[1], image)
    assert not torch.allclose(out[2], image)


def test_maps_of_a_batch_are_the_maps_of_the_loader_items() -> None:
    size = SIZES[0]
    augment = AugmentConfig(preset="authors")
    pipeline = Compose(augmentation_draws(size, augment))
    maps = InPlaneMaps(augmentation_draws(size, augment))([11, 12, 13])
    for seed, m in zip([11, 12, 13], maps, strict=True):
        pipeline.set_random_state(seed=seed)
        np.testing.assert_array_equal(pipeline({})[PENDING], m)

"""Training augmentation presets: ``default`` (this project's recipe) and ``authors`` (the authors' code).

The authors' recipe: an in-plane affine every time (rotation <= 5 degrees about depth, translation <= 5 voxels on
H and W, zoom 0.9..1.1 on H and W independently), then exactly one of the two in-plane flips. Each output is
checked against its own draw: warping the input with MONAI's float64 ``Affine`` and the drawn matrix, then flipping
one axis, must give it (within the float32 tolerance of darnet_pl/data/inplane.py, tests/data/test_inplane.py).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from monai.transforms import Affine, Compose, EnsureTyped, RandAffined, RandFlipd
from torch.utils.data import default_collate

from darnet_pl.cli.train import CONFIG_DIR
from darnet_pl.config.resolvers import register_resolvers
from darnet_pl.data.dataset import ScanDataset
from darnet_pl.data.inplane import PENDING, RandInPlaneAffined, RandOneInPlaneFlipd, flip_map
from darnet_pl.data.records import ScanRecord
from darnet_pl.data.transforms import (
    AugmentConfig,
    DeviceAugmentation,
    eval_transforms,
    train_transforms,
)

SIZE = (8, 32, 32)
SEEDS = range(200)
AUTHORS = AugmentConfig(preset="authors")
TOLERANCE = 1e-4  # float32 in-plane resampling against MONAI's float64 one, intensities in [0, 1]


def _volume(seed: int = 0) -> torch.Tensor:
    """A smooth-ish non-symmetric (1, D, H, W) volume: no flip or warp leaves it unchanged."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand((1, *SIZE), generator=g)
    image[:, :, 4:12, 6:20] += 1.0  # an off-centre block
    return image


def _flip(image: torch.Tensor, spatial_axes: tuple[int, ...]) -> torch.Tensor:
    return torch.flip(image, dims=[1 + a for a in spatial_axes]) if spatial_axes else image


def _affine_matrix(pipeline: Compose) -> np.ndarray:
    """The in-plane (h, w, 1) map of the pipeline's last affine draw."""
    return next(t for t in pipeline.transforms if isinstance(t, RandInPlaneAffined)).matrix()


def _warp(image: torch.Tensor, matrix: np.ndarray) -> torch.Tensor:
    """MONAI's own 3-D affine resampling (float64) of the in-plane map, depth left alone."""
    affine = np.eye(4)
    affine[1:, 1:] = matrix
    warp = Affine(affine=torch.as_tensor(affine), mode="bilinear", padding_mode="zeros", image_only=True)
    return torch.as_tensor(warp(image))


def _decompose(m: np.ndarray) -> tuple[float, float, float, np.ndarray]:
    """(degrees, zoom H, zoom W, translation H/W in voxels) of MONAI's rotation @ translation @ scale map."""
    block = m[:2, :2]  # R(theta) @ diag(zoom_h, zoom_w)
    zoom_h, zoom_w = np.linalg.norm(block[:, 0]), np.linalg.norm(block[:, 1])
    theta = math.atan2(block[1, 0], block[0, 0])
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    translation = rotation.T @ m[:2, 2]
    return math.degrees(theta), float(zoom_h), float(zoom_w), translation


def _run(pipeline: Compose, image: torch.Tensor, seed: int) -> torch.Tensor:
    pipeline.set_random_state(seed=seed)
    return torch.as_tensor(pipeline({"image": image})["image"])


FLIPS = {"none": (), "H": (1,), "W": (2,), "both": (1, 2), "depth": (0,)}


def _flips_matching(out: torch.Tensor, warped: torch.Tensor) -> list[str]:
    return [name for name, axes in FLIPS.items() if torch.allclose(out, _flip(warped, axes), atol=TOLERANCE, rtol=0)]


def test_authors_preset_flips_exactly_one_in_plane_axis_after_the_affine() -> None:
    pipeline = train_transforms(SIZE, AUTHORS)
    image = _volume()
    seen = {"H": 0, "W": 0}
    for seed in SEEDS:
        out = _run(pipeline, image, seed)
        matches = _flips_matching(out, _warp(image, _affine_matrix(pipeline)))
        assert matches in (["H"], ["W"]), f"seed {seed}: the output matches the flips {matches}"
        seen[matches[0]] += 1
    # H with probability 0.5: 200 draws, 100 +- 3 sigma (about 21)
    assert 70 <= seen["H"] <= 130, seen


def test_the_flip_transform_alone_never_flips_none_both_or_depth() -> None:
    flip = RandOneInPlaneFlipd()
    counts = {"H": 0, "W": 0}
    for seed in SEEDS:
        flip.set_random_state(seed=seed)
        m = flip({})[PENDING]
        matches = [name for name, axis in (("H", 1), ("W", 2)) if np.array_equal(m, flip_map(axis))]
        assert len(matches) == 1, m
        counts[matches[0]] += 1
    assert 70 <= counts["H"] <= 130, counts
    out = train_transforms(SIZE, AUTHORS)({"image": _volume(1)})["image"]
    assert out.shape == (1, *SIZE) and out.dtype == torch.float32


def test_authors_affine_is_always_applied_within_the_authors_bounds() -> None:
    pipeline = train_transforms(SIZE, AUTHORS)
    image = _volume()
    angles, zooms_h, zooms_w, shifts = [], [], [], []
    for seed in SEEDS:
        out = _run(pipeline, image, seed)
        matrix = _affine_matrix(pipeline)
        degrees, zoom_h, zoom_w, shift = _decompose(matrix)
        assert abs(degrees) <= 5.0 + 1e-6
        assert 0.9 - 1e-6 <= zoom_h <= 1.1 + 1e-6 and 0.9 - 1e-6 <= zoom_w <= 1.1 + 1e-6
        assert np.all(np.abs(shift) <= 5.0 + 1e-6), shift
        # the affine is never the identity, and the output is never a mere flip of the input
        assert not np.allclose(matrix, np.eye(3))
        assert not any(torch.allclose(out, _flip(image, axes), atol=1e-4) for axes in FLIPS.values())
        angles.append(degrees)
        zooms_h.append(zoom_h)
        zooms_w.append(zoom_w)
        shifts.append(shift)
    shifts_hw = np.array(shifts)
    # the draws fill their ranges ...
    assert max(angles) > 4.0 and min(angles) < -4.0
    assert max(zooms_h) > 1.08 and min(zooms_h) < 0.92 and max(zooms_w) > 1.08 and min(zooms_w) < 0.92
    assert shifts_hw.max(axis=0).min() > 4.0 and shifts_hw.min(axis=0).max() < -4.0
    # ... and H and W zoom (and shift) are drawn independently
    assert abs(np.corrcoef(zooms_h, zooms_w)[0, 1]) < 0.3
    assert abs(np.corrcoef(shifts_hw[:, 0], shifts_hw[:, 1])[0, 1]) < 0.3


def test_authors_preset_is_deterministic_under_a_seed() -> None:
    image = _volume()
    first = _run(train_transforms(SIZE, AUTHORS), image, 11)
    again = _run(train_transforms(SIZE, AUTHORS), image, 11)
    other = _run(train_transforms(SIZE, AUTHORS), image, 12)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_default_preset_draws_what_todays_pipeline_drew() -> None:
    # the recipe before presets existed, verbatim: the default (and every existing command) must draw the same
    # flips and affines; the affine is now resampled in float32, so equal within TOLERANCE (flips alone: exactly)
    old = Compose(
        [
            RandFlipd(keys=("image",), prob=0.5, spatial_axis=2),
            RandFlipd(keys=("image",), prob=0.5, spatial_axis=1),
            RandAffined(
                keys=("image",),
                prob=0.5,
                rotate_range=(math.radians(10.0), 0.0, 0.0),
                translate_range=(0.0, 0.05 * SIZE[1], 0.05 * SIZE[2]),
                scale_range=(0.0, 0.1, 0.1),
                mode="bilinear",
                padding_mode="zeros",
                cache_grid=True,
                spatial_size=SIZE,
            ),
            EnsureTyped(keys=("image",), track_meta=False),
        ]
    )
    new = train_transforms(SIZE, AugmentConfig())
    image = _volume()
    exact = 0
    for seed in range(40):
        before, after = _run(old, image, seed), _run(new, image, seed)
        torch.testing.assert_close(after, before, atol=TOLERANCE, rtol=0)
        if not old.transforms[2]._do_transform:
            assert torch.equal(after, before), seed
            exact += 1
    assert 0 < exact < 40


def test_disabled_augmentation_leaves_the_image_alone_in_every_preset() -> None:
    image = _volume()
    for preset in ("default", "authors"):
        pipeline = train_transforms(SIZE, AugmentConfig(preset=preset, enabled=False))
        assert torch.equal(torch.as_tensor(pipeline({"image": image})["image"]), image)
    assert torch.equal(torch.as_tensor(eval_transforms()({"image": image})["image"]), image)


def test_augment_config_checks_the_preset_and_its_keys() -> None:
    assert AugmentConfig(**{"enabled": True, "flip_prob": 0.5, "on_device": False}).preset == "default"  # old hparams
    with pytest.raises(ValueError, match=r"data\.augment\.preset must be one of default, authors"):
        AugmentConfig(preset="paper")
    with pytest.raises(ValueError, match=r"data\.augment\.rotate_degrees=3.*data/augment=default"):
        AugmentConfig(preset="authors", rotate_degrees=3)
    # data.augment.preset=authors typed over the default group: its untouched default keys are fine
    AugmentConfig(preset="authors", flip_prob=0.5, affine_prob=0.5, rotate_degrees=10, scale_range=0.1)


@pytest.mark.parametrize("augment", [AUTHORS, AugmentConfig()], ids=["authors", "default"])
def test_device_augmentation_matches_the_loader_on_cpu(augment: AugmentConfig) -> None:
    volumes = [_volume(i).numpy()[0] for i in range(6)]
    records = [ScanRecord("CP", str(i), str(i)) for i in range(6)]
    loader = {r.key: v for r, v in zip(records, volumes, strict=True)}

    def load(record: ScanRecord) -> np.ndarray:
        return loader[record.key]

    in_loader = ScanDataset(records, ("CP",), load, train_transforms(SIZE, augment), seed=5)
    plain = ScanDataset(records, ("CP",), load, eval_transforms(), seed=5, emit_seed=True)
    keys = [(3, i) for i in range(6)]
    expected = torch.stack([torch.as_tensor(in_loader[k]["image"]) for k in keys])
    batch = default_collate([plain[k] for k in keys])
    got = DeviceAugmentation(SIZE, augment)(batch)["image"]
    assert "aug_seed" not in batch
    assert torch.equal(got, expected)  # one batched grid_sample gives what the loader gives item by item
    assert not torch.allclose(got, torch.stack([torch.as_tensor(plain[k]["image"]) for k in keys]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_augmentation_on_cuda_matches_the_cpu() -> None:
    images = torch.stack([_volume(i) for i in range(4)])
    seeds = torch.tensor([7, 8, 9, 10])
    cpu = DeviceAugmentation(SIZE, AUTHORS)({"image": images.clone(), "aug_seed": seeds})
    gpu = DeviceAugmentation(SIZE, AUTHORS)({"image": images.cuda(), "aug_seed": seeds.cuda()})
    assert gpu["image"].is_cuda
    torch.testing.assert_close(gpu["image"].cpu(), cpu["image"], atol=TOLERANCE, rtol=0)


def _augment_of(*overrides: str) -> AugmentConfig:
    register_resolvers()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    return AugmentConfig(**cfg.data.augment)


@pytest.mark.parametrize("experiment", ["darnet", "ablation", "shortcut_control"])
def test_paper_experiments_use_the_authors_preset(experiment: str, tmp_path: Path) -> None:
    augment = _augment_of(f"+experiment={experiment}", f"data.root={tmp_path}")
    assert augment == AugmentConfig(preset="authors")
    pipeline = train_transforms(SIZE, augment)
    assert any(isinstance(t, RandOneInPlaneFlipd) for t in pipeline.transforms)
    assert any(isinstance(t, RandInPlaneAffined) and t.prob == 1.0 for t in pipeline.transforms)


def test_other_configs_keep_todays_augmentation(tmp_path: Path) -> None:
    assert _augment_of() == AugmentConfig()
    assert _augment_of("+experiment=smoke") == AugmentConfig()
    assert _augment_of("data=ccii", f"data.root={tmp_path}") == AugmentConfig()
    assert _augment_of("data=folder", f"data.scan_list={tmp_path}/scans.csv") == AugmentConfig()


def test_presets_switch_on_the_command_line_and_keep_the_other_keys(tmp_path: Path) -> None:
    assert _augment_of("+experiment=darnet", f"data.root={tmp_path}", "data/augment=default") == AugmentConfig()
    assert _augment_of("data/augment=authors", "data.augment.on_device=true") == AugmentConfig(
        preset="authors", on_device=True
    )
    assert _augment_of("data.augment.preset=authors").preset == "authors"
    assert _augment_of("+experiment=darnet", f"data.root={tmp_path}", "data.augment.enabled=false").enabled is False
    assert _augment_of("data.augment.affine_prob=1.0", "data.augment.on_device=true") == AugmentConfig(
        affine_prob=1.0, on_device=True
    )

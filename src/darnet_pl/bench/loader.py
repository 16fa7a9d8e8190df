"""Training-loader benchmark: scans per second per CPU core, augmentation before and after, and MONAI's affine.

What one loader worker (one core, torch limited to one thread) delivers, per input size (the paper's 64x224x224
and the smoke experiment's 16x64x64), for the ``authors`` augmentation preset (every scan warped: the paper's
recipe and the costliest) and the ``default`` one:

- ``augment_per_s``: the augmentation alone on a float32 scan, three ways with the same random parameters:
  ``before`` (the pipeline this package had: MONAI ``RandAffined``, which resamples in 3-D in float64, then one
  MONAI flip), ``monai_affine_float32`` (MONAI's ``Affine`` with ``dtype=float32``: MONAI's own affine at its
  fastest here, still a 3-D grid) and ``after`` (``train_transforms``: one float32 in-plane resampling,
  darnet_pl/data/inplane.py); ``speedup`` = after / before;
- ``cpu_augmentation_volumes_per_s``: a whole training item in a worker: read a cached uint8 volume (mmap),
  scale to [0, 1], augment (``data.augment.on_device=false``, the default); ``..._before``: the same with the old
  pipeline; ``load_only_volumes_per_s``: without augmentation (the worker's share with ``on_device=true``);
  repeats are interleaved (before, after, ...), so a slow spell of a shared machine hits both alike;
- ``device_augmentation``: the batched augmentation of ``on_device=true`` on a collated batch of 8, on the
  training device (the GPU when there is one, else the CPU), in volumes per second;
- ``max_abs_diff_vs_before``: the largest difference between ``after`` and ``before`` over the benchmark's scans
  (intensities in [0, 1]; float32 rounding of the sampling coordinates, growing with the size).

``make bench`` divides the model's training throughput on this device by the per-core rate
(``cores_to_feed_training``): how many loader workers keep the model busy. ``python -m darnet_pl.bench.loader``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.transforms import Affine, Compose, EnsureTyped, Flipd, OneOf, RandAffined, RandFlipd

from darnet_pl.data.cache import VolumeCache
from darnet_pl.data.dataset import ScanDataset
from darnet_pl.data.inplane import PENDING, RandInPlaneAffined, warp_one
from darnet_pl.data.preprocess import Preprocessing
from darnet_pl.data.records import CLASS_NAMES, ScanRecord
from darnet_pl.data.transforms import (
    AUTHORS_ROTATE_DEGREES,
    AUTHORS_SCALE_RANGE,
    AUTHORS_TRANSLATE_VOXELS,
    KEYS,
    AugmentConfig,
    DeviceAugmentation,
    eval_transforms,
    train_transforms,
)

PAPER_SIZE = (64, 224, 224)
SMOKE_SIZE = (16, 64, 64)


def before_transforms(size: Sequence[int], augment: AugmentConfig) -> Compose:
    """The pipeline this package used before the in-plane resampling, for comparison: MONAI's ``RandAffined``
    (3-D grid, float64 resampling) with the same draws, and MONAI flips (the authors' exactly-one flip as
    ``OneOf``; its choice is drawn otherwise, which costs the same)."""
    depth, height, width = (int(s) for s in size)
    if augment.preset == "authors":
        rotate, scale, prob = AUTHORS_ROTATE_DEGREES, AUTHORS_SCALE_RANGE, 1.0
        translate = (AUTHORS_TRANSLATE_VOXELS, AUTHORS_TRANSLATE_VOXELS)
        flips: list = [OneOf([Flipd(KEYS, spatial_axis=1), Flipd(KEYS, spatial_axis=2)])]
        first: list = []
    else:
        rotate, prob, scale = augment.rotate_degrees, augment.affine_prob, augment.scale_range
        translate = (augment.translate_fraction * height, augment.translate_fraction * width)
        first = [RandFlipd(KEYS, prob=augment.flip_prob, spatial_axis=a) for a in (2, 1)]
        flips = []
    affine = RandAffined(
        keys=KEYS,
        prob=prob,
        rotate_range=(math.radians(rotate), 0.0, 0.0),
        translate_range=(0.0, *translate),
        scale_range=(0.0, scale, scale),
        mode="bilinear",
        padding_mode="zeros",
        cache_grid=True,
        spatial_size=(depth, height, width),
    )
    return Compose([*first, affine, *flips, EnsureTyped(keys=KEYS, track_meta=False)])


def cached_volumes(cache: VolumeCache, n: int, size: tuple[int, int, int], seed: int) -> list[ScanRecord]:
    """``n`` blocky random uint8 volumes in the cache (content does not change the cost of these transforms, and
    blocks have the sharp edges where interpolation differences show)."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        coarse = rng.integers(0, 256, size=[max(1, s // 8) for s in size], dtype=np.uint8)
        volume = np.ascontiguousarray(coarse.repeat(8, 0).repeat(8, 1).repeat(8, 2)[: size[0], : size[1], : size[2]])
        record = ScanRecord("CP", str(i), str(1000 + i))
        cache.store(record, volume)
        records.append(record)
    return records


def _rates(steps: dict[str, Callable[[int], Any]], n_items: int, repeats: int) -> dict[str, float]:
    """Median items per second of each ``step(k)`` for k in 0..n_items-1, after one warm-up call each; the
    repeats are interleaved, so that a slow spell of a shared machine hits every step alike."""
    for step in steps.values():
        step(0)
    rates: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            started = time.perf_counter()
            for k in range(n_items):
                step(k)
            rates[name].append(n_items / (time.perf_counter() - started))
    return {name: statistics.median(values) for name, values in rates.items()}


def _monai_affine_float32(size: Sequence[int]) -> Callable[[torch.Tensor], torch.Tensor]:
    """MONAI's ``Affine`` resampling in float32 with a fixed authors'-range warp (its cost, not its draws)."""
    affine = Affine(
        rotate_params=(math.radians(3.0), 0.0, 0.0),
        translate_params=(0.0, 2.5, -3.0),
        scale_params=(1.0, 1.05, 0.95),
        spatial_size=tuple(size),
        mode="bilinear",
        padding_mode="zeros",
        dtype=torch.float32,
        image_only=True,
    )
    return lambda image: affine(image)


def _augment_rates(images: list[torch.Tensor], augment: AugmentConfig, n_items: int, repeats: int) -> dict:
    size = tuple(images[0].shape[1:])
    before, after = before_transforms(size, augment), train_transforms(size, augment)
    monai32 = _monai_affine_float32(size)

    def run(pipeline: Compose) -> Callable[[int], Any]:
        def step(k: int) -> Any:
            pipeline.set_random_state(seed=k)
            return pipeline({"image": images[k % len(images)]})

        return step

    rates = _rates(
        {
            "before": run(before),
            "monai_affine_float32": lambda k: monai32(images[k % len(images)]),
            "after": run(after),
        },
        n_items,
        repeats,
    )
    return {
        "augment_per_s": {name: round(rate, 3) for name, rate in rates.items()},
        "speedup": round(rates["after"] / rates["before"], 2),
    }


def max_abs_diff_vs_before(images: Sequence[torch.Tensor], augment: AugmentConfig, seeds: Sequence[int]) -> float:
    """The largest |after - before| of the affine alone (flips are exact in both), over ``seeds`` x ``images``."""
    size = tuple(images[0].shape[1:])
    authors = augment.preset == "authors"
    rotate = AUTHORS_ROTATE_DEGREES if authors else augment.rotate_degrees
    shift = (AUTHORS_TRANSLATE_VOXELS,) * 2 if authors else tuple(augment.translate_fraction * s for s in size[1:])
    scale = AUTHORS_SCALE_RANGE if authors else augment.scale_range
    before = RandAffined(
        keys=KEYS,
        prob=1.0,
        rotate_range=(math.radians(rotate), 0.0, 0.0),
        translate_range=(0.0, *shift),
        scale_range=(0.0, scale, scale),
        mode="bilinear",
        padding_mode="zeros",
        cache_grid=True,
        spatial_size=size,
    )
    after = RandInPlaneAffined(1.0, math.radians(rotate), shift, (scale, scale))
    worst = 0.0
    for seed in seeds:
        for image in images:
            before.set_random_state(seed=seed)
            after.set_random_state(seed=seed)
            old = torch.as_tensor(before({"image": image})["image"])
            new = warp_one(image, after({})[PENDING])
            worst = max(worst, float((old - new).abs().max()))
    return worst


def _device_augmentation_per_s(
    dataset: ScanDataset, augment: DeviceAugmentation, batch: int, repeats: int, device: str
) -> float:
    from torch.utils.data import default_collate

    items = default_collate([dataset[(0, k % len(dataset))] for k in range(batch)])
    items["image"] = items["image"].to(device)
    rates = []
    for r in range(repeats + 1):  # the first round warms up (CUDA kernels)
        copy = {**items, "aug_seed": items["aug_seed"].clone()}
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        augment(copy)
        if device == "cuda":
            torch.cuda.synchronize()
        if r:
            rates.append(batch / (time.perf_counter() - started))
    return statistics.median(rates)


def _measure_size(
    size: tuple[int, int, int], n_volumes: int, n_items: int, repeats: int, batch: int, presets: Sequence[str]
) -> dict[str, Any]:
    threads = torch.get_num_threads()
    out: dict[str, Any] = {"size": list(size)}
    with tempfile.TemporaryDirectory(prefix="darnet-bench-loader-") as tmp:
        cache = VolumeCache(Path(tmp), Preprocessing(size=size))
        records = cached_volumes(cache, n_volumes, size, seed=0)
        classes = CLASS_NAMES
        images = [torch.from_numpy(cache.load(r).astype(np.float32) / 255.0)[None] for r in records]
        plain = ScanDataset(records, classes, cache.load, eval_transforms(), seed=0, emit_seed=True)
        for preset in presets:
            augment = AugmentConfig(preset=preset)
            entry = _augment_rates(images, augment, n_items, repeats)
            full = ScanDataset(records, classes, cache.load, train_transforms(size, augment), seed=0)
            old = ScanDataset(records, classes, cache.load, before_transforms(size, augment), seed=0)
            items = _rates(
                {
                    "after": lambda k, d=full: d[(0, k % len(d))],
                    "before": lambda k, d=old: d[(0, k % len(d))],
                    "load_only": lambda k: plain[(0, k % len(plain))],
                },
                n_items,
                repeats,
            )
            entry["cpu_augmentation_volumes_per_s"] = round(items["after"], 3)
            entry["cpu_augmentation_volumes_per_s_before"] = round(items["before"], 3)
            entry["load_only_volumes_per_s"] = round(items["load_only"], 3)
            entry["max_abs_diff_vs_before"] = float(f"{max_abs_diff_vs_before(images[:2], augment, range(3)):.3g}")
            device = "cuda" if torch.cuda.is_available() else "cpu"
            if device == "cuda":
                torch.set_num_threads(threads)
            rate = _device_augmentation_per_s(plain, DeviceAugmentation(size, augment), batch, repeats, device)
            torch.set_num_threads(1)
            entry["device_augmentation"] = {"device": device, "batch": batch, "volumes_per_s": round(rate, 3)}
            out[preset] = entry
    return out


def run_loader_benchmark(
    sizes: Sequence[Sequence[int]] = (PAPER_SIZE, SMOKE_SIZE),
    n_volumes: int = 4,
    n_items: int = 16,
    repeats: int = 3,
    batch: int = 8,
    presets: Sequence[str] = ("authors", "default"),
) -> dict[str, Any]:
    """The rates of the module doc for every size; the headline figures are the first size's, ``presets[0]``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        by_size = {
            "x".join(map(str, s)): _measure_size(tuple(int(v) for v in s), n_volumes, n_items, repeats, batch, presets)
            for s in sizes
        }
    finally:
        torch.set_num_threads(threads)
    first = next(iter(by_size.values()))
    headline = first[presets[0]]
    return {
        "cores": 1,
        "torch_threads": 1,
        "preset": presets[0],
        "size": first["size"],
        "cpu_augmentation_volumes_per_s": headline["cpu_augmentation_volumes_per_s"],
        "cpu_augmentation_volumes_per_s_before": headline["cpu_augmentation_volumes_per_s_before"],
        "load_only_volumes_per_s": headline["load_only_volumes_per_s"],
        "augmentation_speedup": headline["speedup"],
        "device_augmentation": headline["device_augmentation"],
        "augmentation_share_of_loader_time": round(
            1 - headline["cpu_augmentation_volumes_per_s"] / headline["load_only_volumes_per_s"], 3
        ),
        "by_size": by_size,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[*PAPER_SIZE, *SMOKE_SIZE], help="D H W [D H W ...]")
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if len(args.sizes) % 3:
        parser.error("--sizes takes D H W triples")
    sizes = [args.sizes[i : i + 3] for i in range(0, len(args.sizes), 3)]
    print(json.dumps(run_loader_benchmark(sizes, n_items=args.items, repeats=args.repeats), indent=2))


if __name__ == "__main__":
    main()

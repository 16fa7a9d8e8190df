"""Training-loader benchmark: volumes per second per CPU core at the paper's 64x224x224, with and without augmentation.

What one loader worker (one core, torch limited to one thread) delivers from the volume cache:

- ``cpu_augmentation``: read a cached uint8 volume (mmap), scale to [0, 1], random flips and the in-plane affine
  (MONAI, ``data.augment.on_device=false``, the default);
- ``load_only``: the same without the random transforms - the loader's share with ``data.augment.on_device=true``,
  where the transforms run after the batch reached the GPU;
- ``device_augmentation``: those transforms applied to a collated batch of 8 on the training device (the GPU when
  there is one, else the CPU - then it only shows the work that moves), in volumes per second.

``make bench`` divides the model's training throughput on this device by the per-core rate
(``cores_to_feed_training``): how many loader workers keep the model busy. Run ``python -m darnet_pl.bench.loader``
to print the JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from darnet_pl.data.cache import VolumeCache
from darnet_pl.data.dataset import ScanDataset
from darnet_pl.data.preprocess import Preprocessing
from darnet_pl.data.records import ScanRecord
from darnet_pl.data.transforms import AugmentConfig, DeviceAugmentation, eval_transforms, train_transforms


def _volumes(cache: VolumeCache, n: int, size: tuple[int, int, int], seed: int) -> list[ScanRecord]:
    """``n`` smooth random uint8 volumes in the cache (content does not change the cost of these transforms)."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        coarse = rng.integers(0, 256, size=(size[0] // 8, size[1] // 8, size[2] // 8), dtype=np.uint8)
        volume = np.ascontiguousarray(coarse.repeat(8, 0).repeat(8, 1).repeat(8, 2)[: size[0], : size[1], : size[2]])
        record = ScanRecord("CP", str(i), str(1000 + i))
        cache.store(record, volume)
        records.append(record)
    return records


def _items_per_s(dataset: ScanDataset, n_items: int, epoch: int = 0) -> float:
    dataset[(epoch, 0)]  # warm-up (grid cache, first mmap)
    started = time.perf_counter()
    for k in range(n_items):
        dataset[(epoch, k % len(dataset))]
    return n_items / (time.perf_counter() - started)


def run_loader_benchmark(
    size: Sequence[int] = (64, 224, 224), n_volumes: int = 4, n_items: int = 16, repeats: int = 3, batch: int = 8
) -> dict[str, Any]:
    """Median over ``repeats`` of the throughputs described in the module doc."""
    import torch

    size = tuple(int(s) for s in size)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory(prefix="darnet-bench-loader-") as tmp:
            cache = VolumeCache(Path(tmp), Preprocessing(size=size))
            records = _volumes(cache, n_volumes, size, seed=0)
            augmentation = train_transforms(size, AugmentConfig())
            classes = ("CP", "NCP", "Normal")
            full = ScanDataset(records, classes, cache.load, augmentation, seed=0)
            plain = ScanDataset(records, classes, cache.load, eval_transforms(), seed=0, emit_seed=True)
            cpu = [_items_per_s(full, n_items) for _ in range(repeats)]
            load = [_items_per_s(plain, n_items) for _ in range(repeats)]
            device = "cuda" if torch.cuda.is_available() else "cpu"
            if device == "cuda":
                torch.set_num_threads(threads)
            on_device = _device_augmentation_per_s(plain, DeviceAugmentation(augmentation), batch, repeats, device)
    finally:
        torch.set_num_threads(threads)
    per_core = statistics.median(cpu)
    return {
        "size": list(size),
        "cores": 1,
        "torch_threads": 1,
        "cpu_augmentation_volumes_per_s": round(per_core, 3),
        "load_only_volumes_per_s": round(statistics.median(load), 3),
        "device_augmentation": {"device": device, "batch": batch, "volumes_per_s": round(on_device, 3)},
        "augmentation_share_of_loader_time": round(1 - per_core / statistics.median(load), 3),
    }


def _device_augmentation_per_s(
    dataset: ScanDataset, augment: DeviceAugmentation, batch: int, repeats: int, device: str
) -> float:
    import torch
    from torch.utils.data import default_collate

    items = default_collate([dataset[(0, k % len(dataset))] for k in range(batch)])
    items["image"] = items["image"].to(device)
    rates = []
    for r in range(repeats + 1):  # the first round warms up (CUDA kernels, the affine's grid cache)
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


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=3, default=(64, 224, 224), metavar=("D", "H", "W"))
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(json.dumps(run_loader_benchmark(args.size, n_items=args.items, repeats=args.repeats), indent=2))


if __name__ == "__main__":
    main()

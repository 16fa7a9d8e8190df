"""Data-wait benchmark: the share of a training step the loop spends waiting for its next batch.

Runs the real training path for a few dozen steps: ``CTDataModule`` over cached uint8 volumes (blocky random
content, the chosen augmentation preset, ``num_workers`` loader processes, ``data.augment.on_device`` on or off),
``DARNetModule`` and a Lightning ``Trainer``, with a profiler that times each step's parts as Lightning runs them:

- ``wait``: ``train_dataloader_next``, the loop waiting for the loader's next batch;
- ``transfer``: ``batch_to_device``, the copy to the device, including (``device_augment``) the augmentation of
  ``on_device=true`` in ``on_after_batch_transfer``;
- ``step``: ``run_training_batch``, forward, backward and optimizer step (on a GPU synchronised at its end, so
  its work is not billed to the next wait).

The first ``warmup`` steps (worker start-up, cuDNN autotuning) are left out. ``data_wait_share`` = wait / (wait +
transfer + step) over the measured steps; ``input_share`` adds the transfer. On a GPU ``peak_memory_mib`` is
``torch.cuda.max_memory_allocated`` of the run. ``loader=before`` swaps in the augmentation this package used
before (MONAI ``RandAffined``, float64; ``darnet_pl.bench.loader.before_transforms``) to show what it cost.

``make bench`` runs it on the CPU at a small size; ``scripts/gpu_check.sh`` at the paper's size, batch 8, bf16,
8 workers, one setting changed at a time. ``python -m darnet_pl.bench.data_wait --help``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import logging
import statistics
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.profilers import Profiler

from darnet_pl.bench.loader import before_transforms, cached_volumes
from darnet_pl.data.cache import VolumeCache
from darnet_pl.data.datamodule import CTDataModule
from darnet_pl.data.preprocess import Preprocessing
from darnet_pl.data.records import CLASS_NAMES, ScanRecord
from darnet_pl.data.transforms import AugmentConfig
from darnet_pl.training.module import DARNetModule
from darnet_pl.training.speed import resolve_precision

WAIT = "[_TrainingEpochLoop].train_dataloader_next"
STEP = "run_training_batch"
TRANSFER_SUFFIX = ".batch_to_device"
DEVICE_AUGMENT = "[LightningDataModule]CTDataModule.on_after_batch_transfer"


@dataclass(frozen=True)
class Setting:
    """One measured configuration (the names of the config keys they set are in the comments)."""

    on_device: bool = False  # data.augment.on_device
    benchmark: bool = True  # trainer.benchmark (cuDNN autotuner)
    memory_format: str = "auto"  # model.memory_format (auto: contiguous on a GPU, channels_last_3d for CPU bf16)
    loader: str = "inplane"  # "inplane" (this package) or "before" (MONAI RandAffined, float64)


# the GPU check: a baseline and one change at a time
SETTINGS = {
    "base": Setting(),
    "on_device": Setting(on_device=True),
    "no_benchmark": Setting(benchmark=False),
    "channels_last_3d": Setting(memory_format="channels_last_3d"),
    "before": Setting(loader="before"),
}


class StepTimer(Profiler):
    """Records the duration of every start/stop pair of the actions the module doc names; prints nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.durations: dict[str, list[float]] = defaultdict(list)
        self._started: dict[str, float] = {}
        self._cuda = torch.cuda.is_available()

    def _wanted(self, action: str) -> bool:
        return action in (WAIT, STEP, DEVICE_AUGMENT) or action.endswith(TRANSFER_SUFFIX)

    def start(self, action_name: str) -> None:
        if self._wanted(action_name):
            self._started[action_name] = time.perf_counter()

    def stop(self, action_name: str) -> None:
        started = self._started.pop(action_name, None)
        if started is None:
            return
        if action_name == STEP and self._cuda:
            torch.cuda.synchronize()
        key = "transfer" if action_name.endswith(TRANSFER_SUFFIX) else action_name
        self.durations[key].append(time.perf_counter() - started)

    def summary(self) -> str:
        return ""


class _BenchSource:
    """``n_records`` scans (one patient each, classes in turn) reading ``volumes`` cached volumes in turn."""

    def __init__(self, cache: VolumeCache, volumes: Sequence[ScanRecord], n_records: int) -> None:
        self.cache, self.volumes = cache, list(volumes)
        self._records = [ScanRecord(CLASS_NAMES[i % 3], f"p{i}", f"s{i}") for i in range(n_records)]
        self._volume_of = {r.key: self.volumes[i % len(self.volumes)] for i, r in enumerate(self._records)}

    def records(self) -> list[ScanRecord]:
        return list(self._records)

    def prepare(self) -> None:
        pass

    def volume_loader(self) -> _Loader:
        return _Loader(self.cache, self._volume_of)

    def describe(self) -> dict:
        return {"source": "bench"}


class _Loader:
    def __init__(self, cache: VolumeCache, volume_of: dict[str, ScanRecord]) -> None:
        self.cache, self.volume_of = cache, volume_of

    def __call__(self, record: ScanRecord) -> np.ndarray:
        return self.cache.load(self.volume_of[record.key])


def _sums(values: list[float]) -> float:
    return float(sum(values))


def _measure(
    setting: Setting,
    source: _BenchSource,
    size: tuple[int, int, int],
    width: int,
    batch: int,
    workers: int,
    steps: int,
    warmup: int,
    precision: str,
    preset: str,
    device: str,
) -> dict[str, Any]:
    pl.seed_everything(0, workers=True, verbose=False)
    data = CTDataModule(
        source,
        size=size,
        batch_size=batch,
        num_workers=workers,
        persistent_workers=False,
        n_folds=10,
        augment={"preset": preset, "on_device": setting.on_device},
    )
    data.setup("fit")
    if setting.loader == "before":
        if setting.on_device:
            raise ValueError("loader=before runs in the loader: it cannot be combined with on_device")
        data.datasets["train"].transform = before_transforms(size, AugmentConfig(preset=preset))
    model = DARNetModule(
        width=width,
        input_size=size,
        optimizer=functools.partial(torch.optim.Adam, lr=1e-3),
        memory_format=setting.memory_format,
    )
    timer = StepTimer()
    trainer = pl.Trainer(
        accelerator="gpu" if device == "cuda" else "cpu",
        devices=1,
        precision=resolve_precision(precision, "gpu" if device == "cuda" else "cpu"),
        benchmark=setting.benchmark,
        max_steps=warmup + steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        profiler=timer,
    )
    if device == "cuda":  # the previous setting's model and optimizer are gone: the peak is this setting's own
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    with warnings.catch_warnings():
        # Lightning's advice on workers and validation, and its pytree helper's torch deprecation: not results
        warnings.filterwarnings("ignore", message=".*(does not have many workers|limit_val_batches|LeafSpec).*")
        trainer.fit(model, datamodule=data)
    wall = time.perf_counter() - started
    measured = {k: v[warmup:] for k, v in timer.durations.items()}
    wait, step = measured.get(WAIT, []), measured.get(STEP, [])
    transfer, augment = measured.get("transfer", []), measured.get(DEVICE_AUGMENT, [])
    total = _sums(wait) + _sums(transfer) + _sums(step)
    n = len(step)
    out: dict[str, Any] = {
        "settings": asdict(setting),
        "precision": str(trainer.precision),
        "measured_steps": n,
        "wait_s_per_step": round(_sums(wait) / max(n, 1), 5),
        "wait_s_median": round(statistics.median(wait), 5) if wait else None,
        "transfer_s_per_step": round(_sums(transfer) / max(n, 1), 5),
        "device_augment_s_per_step": round(_sums(augment) / max(n, 1), 5) if setting.on_device else 0.0,
        "step_s_per_step": round(_sums(step) / max(n, 1), 5),
        "data_wait_share": round(_sums(wait) / total, 4) if total else None,
        "input_share": round((_sums(wait) + _sums(transfer)) / total, 4) if total else None,
        "volumes_per_s": round(n * batch / total, 3) if total else None,
        "wall_s": round(wall, 1),
    }
    if device == "cuda":
        out["peak_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def run_data_wait_benchmark(
    size: Sequence[int] = (16, 64, 64),
    width: int = 8,
    batch: int = 8,
    workers: int = 1,
    steps: int = 10,
    warmup: int = 2,
    precision: str = "auto",
    preset: str = "authors",
    settings: Sequence[str] = ("base", "on_device"),
    device: str = "auto",
    n_volumes: int = 16,
    out: Path | None = None,
) -> dict[str, Any]:
    """Measure each of ``settings`` (names of :data:`SETTINGS`) in this process, one after the other; with ``out``
    the JSON is rewritten after every setting, so a run stopped by a time limit keeps what it measured."""
    dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    size = tuple(int(s) for s in size)
    result: dict[str, Any] = {
        "benchmark": "data_wait",
        "device": dev,
        "device_name": torch.cuda.get_device_name(0) if dev == "cuda" else None,
        "torch": torch.__version__,
        "size": list(size),
        "width": width,
        "batch": batch,
        "num_workers": workers,
        "preset": preset,
        "steps": steps,
        "warmup": warmup,
        "settings": {},
    }
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="darnet-bench-wait-") as tmp:
        cache = VolumeCache(Path(tmp), Preprocessing(size=size))
        volumes = cached_volumes(cache, n_volumes, size, seed=0)
        # train is 9 of the 11 chunks (10 folds + test): enough scans that every step is in the first epoch
        source = _BenchSource(cache, volumes, n_records=((warmup + steps) * batch * 11) // 9 + 66)
        for name in settings:
            started = time.perf_counter()
            try:
                entry = _measure(
                    SETTINGS[name], source, size, width, batch, workers, steps, warmup, precision, preset, dev
                )
            except Exception as error:  # one setting failing (e.g. out of memory) is a result
                entry = {
                    "settings": asdict(SETTINGS[name]),
                    "status": "failed",
                    "reason": f"{type(error).__name__}: {error}",
                }
                if dev == "cuda":
                    torch.cuda.empty_cache()
            print(f"[bench data_wait] {name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
            result["settings"][name] = entry
            if out is not None:
                out.write_text(json.dumps(result, indent=2))
    base = result["settings"].get(settings[0], {})
    result["data_wait_share"] = base.get("data_wait_share")
    if out is not None:
        out.write_text(json.dumps(result, indent=2))
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=3, default=(16, 64, 64), metavar=("D", "H", "W"))
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10, help="measured steps per setting")
    parser.add_argument("--warmup", type=int, default=2, help="steps left out first (worker start, autotuning)")
    parser.add_argument("--precision", default="auto", help="Lightning precision; auto: as trainer=cpu resolves it")
    parser.add_argument("--preset", default="authors", choices=("authors", "default"))
    parser.add_argument("--settings", nargs="+", default=["base", "on_device"], choices=list(SETTINGS))
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here, after every setting")
    args = parser.parse_args(argv)
    result = run_data_wait_benchmark(
        size=args.size,
        width=args.width,
        batch=args.batch,
        workers=args.workers,
        steps=args.steps,
        warmup=args.warmup,
        precision=args.precision,
        preset=args.preset,
        settings=args.settings,
        device=args.device,
        out=args.out,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

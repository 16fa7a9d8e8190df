"""All benchmarks in one JSON object: ``make bench`` / ``python -m darnet_pl.bench [--quick]``.

- ``model``: DARNet training and inference throughput and peak memory per speed option (``bench_model``; every
  variant in its own subprocess), at the paper's input size, or small with ``--quick``.
- ``ingest``: the fast slice-folder ingest against the baseline reader (``bench_ingest``).
- ``memory``: the training memory of the paper's batch of 8 (model state + saved activations), fp32 and bf16,
  with and without activation checkpointing (``bench_memory``).
- ``volumes``: reading own scans (NIfTI, DICOM in Hounsfield units) through the MONAI transform chain of
  ``darnet_pl.data.volume_transforms``, milliseconds per scan per depth interpolation (``bench_volumes``).
- ``loader``: training-loader volumes per second per core at 64x224x224 and 16x64x64, the augmentation before
  (MONAI ``RandAffined``, float64) and after (one float32 in-plane resampling) and MONAI's float32 ``Affine``, in
  the loader or on the device (``bench_loader``), and how many loader cores the model's training speed on this
  device needs.
- ``data_wait``: the share of a training step spent waiting for the next batch, in the real training loop at a
  small size (16x64x64, width 8, batch 8, one loader worker), augmentation in the loader and on the device
  (``bench_data_wait``).

Top-level ``train_speedup`` (default training configuration of this device over the fp32 eager baseline),
``ingest_speedup``, ``loader_volumes_per_s_per_core`` (authors' augmentation at 64x224x224; ``..._before``: the
MONAI float64 pipeline it replaced) and ``data_wait_share`` repeat the headline numbers. ``--quick`` (a minute or
two) checks that everything runs; its numbers are not the paper-size ones.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from darnet_pl.bench.data_wait import run_data_wait_benchmark
from darnet_pl.bench.ingest import run_ingest_benchmark
from darnet_pl.bench.loader import run_loader_benchmark
from darnet_pl.bench.memory import run_memory_benchmark
from darnet_pl.bench.model import run_model_benchmark
from darnet_pl.bench.volumes import run_volume_benchmark

QUICK_MODEL = {
    "size": (8, 32, 32),
    "width": 8,
    "batch": 2,
    "repeats": 2,
    "variants": ["fp32", "bf16", "bf16_channels_last", "checkpointing", "default"],
}
FULL_MODEL = {"size": (64, 224, 224), "width": 64, "batch": 1, "repeats": 3}
QUICK_INGEST = {"slice_counts": (12, 20), "repeats": 1, "slice_size": 128}
QUICK_LOADER = {"sizes": [(8, 32, 32)], "n_volumes": 2, "n_items": 4, "repeats": 1}
QUICK_DATA_WAIT = {"size": (8, 32, 32), "width": 4, "batch": 4, "steps": 3, "warmup": 1, "n_volumes": 4}
FULL_DATA_WAIT = {"size": (16, 64, 64), "width": 8, "batch": 8, "steps": 10, "warmup": 2}
QUICK_MEMORY = {"size": (8, 32, 32), "width": 4}
QUICK_VOLUMES = {"slice_counts": (12,), "dicom_slices": 6, "size": 64, "prep_size": (8, 32, 32), "repeats": 1}


def _progress(line: str) -> None:
    print(f"[bench model] {line}", file=sys.stderr, flush=True)


def run_benchmarks(quick: bool = False, model_variants: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the model and ingest benchmarks and gather them with the headline speedups."""
    from darnet_pl.data.preprocess import Preprocessing

    started = time.perf_counter()
    model_kwargs: dict[str, Any] = dict(QUICK_MODEL if quick else FULL_MODEL)
    if model_variants:
        model_kwargs["variants"] = list(model_variants)
    model = run_model_benchmark(**model_kwargs, progress=_progress)
    print("[bench ingest] running", file=sys.stderr, flush=True)
    if quick:
        ingest = run_ingest_benchmark(**QUICK_INGEST, prep=Preprocessing(size=(8, 32, 32)))
    else:
        ingest = run_ingest_benchmark()
    print("[bench volumes] running", file=sys.stderr, flush=True)
    volumes = run_volume_benchmark(**(QUICK_VOLUMES if quick else {}))
    print("[bench loader] running", file=sys.stderr, flush=True)
    loader = run_loader_benchmark(**(QUICK_LOADER if quick else {}))
    default = model["variants"].get(model["default"]["variant"], {})
    train_rate = default.get("train", {}).get("volumes_per_s")
    if train_rate and not quick:  # quick sizes differ between the model and the loader benchmark
        loader["model_train_volumes_per_s"] = train_rate
        loader["cores_to_feed_training"] = float(f"{train_rate / loader['cpu_augmentation_volumes_per_s']:.3g}")
    print("[bench data_wait] running", file=sys.stderr, flush=True)
    data_wait = run_data_wait_benchmark(**(QUICK_DATA_WAIT if quick else FULL_DATA_WAIT))
    print("[bench memory] running", file=sys.stderr, flush=True)
    memory = run_memory_benchmark(**(QUICK_MEMORY if quick else {}))
    return {
        "quick": quick,
        "train_speedup": model["train_speedup"],
        "ingest_speedup": ingest["ingest_speedup"],
        "loader_volumes_per_s_per_core": loader["cpu_augmentation_volumes_per_s"],
        "loader_volumes_per_s_per_core_before": loader["cpu_augmentation_volumes_per_s_before"],
        "data_wait_share": data_wait["data_wait_share"],
        "model": model,
        "ingest": ingest,
        "volumes": volumes,
        "loader": loader,
        "data_wait": data_wait,
        "memory": memory,
        "wall_s": round(time.perf_counter() - started, 1),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: about a minute, checks that all runs")
    parser.add_argument("--variants", nargs="+", default=None, help="model variants (default: all)")
    args = parser.parse_args(argv)
    print(json.dumps(run_benchmarks(args.quick, args.variants), indent=2))


if __name__ == "__main__":
    main()

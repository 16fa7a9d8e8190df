"""Ingest benchmark: the fast slice-folder reader (via ``ingest``) against the straightforward baseline.

Builds a synthetic CC-CCII-like tree of 512x512 8-bit PNG slices (a body, two lungs that change along depth,
vessels, mild noise, a black field of view outside - so PNG compression and decoding cost are realistic), with
slice counts at the 5th, 15th, ..., 95th percentiles of the real CC-CCII index (16 to 690 slices, median 70), then
converts the same scans with both pipelines in one process on one core (torch limited to one thread) and
reports scans per second, the speedup, and how far the two volumes differ (they should agree up to rounding).

Two baselines, both decoding every slice at full size and resizing the stack:

- ``authors``: the authors' pipeline - crop, then scikit-image's ``resize(volume, size, anti_aliasing=True)``
  (float64, a Gaussian pre-filter with sigma = (factor - 1) / 2 along every shrunk axis, then linear
  interpolation), reproduced with the SciPy calls scikit-image makes. This is the baseline of ``ingest_speedup``.
  ``linear`` and ``nearest`` do not anti-alias, so their volumes differ from it by more than rounding
  (``authors_mean_abs_diff``); ``antialias`` reproduces it, and is checked against it (``max_abs_diff`` <= 1).
- ``torch``: the same arithmetic as the fast reader in one ``torch.nn.functional.interpolate`` call on the whole
  stack - a much faster baseline, and the exactness check of ``linear``/``nearest`` (``max_abs_diff`` <= 1 gray
  level): ``ingest_speedup_vs_torch`` (not measured for ``antialias``: torch has no such resize).

All three depth interpolations are measured. ``antialias`` decodes every slice; its ingest is timed on one
decoding thread (``DARNET_DECODE_THREADS=1``, the one-core figure comparable with the others) and, where the
machine has more cores, on ``decode_threads()`` threads too (``threaded_ingest_scans_per_s``). The top-level
``antialias_ingest_scans_per_s`` and ``antialias_vs_linear`` (its scans per second over ``linear``'s, one core
each) repeat the headline. Decoding a 512x512 PNG (about 1 ms, as fast with Pillow as with OpenCV or
libspng here) is a floor both pipelines share: the fast reader skips only the slices the depth sampling does not
touch (with ``linear``, two per output slice, so a scan of fewer than 128 slices is decoded whole). The JSON
reports that floor too (``decode_ms_per_slice``, ``decode_share_of_ingest``, ``decode_bound_speedup_vs_torch``:
the speedup over the torch baseline if everything but the decoding of the needed slices were free).

Run ``python -m darnet_pl.bench.ingest`` to print the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from darnet_pl.data.cache import VolumeCache, ingest
from darnet_pl.data.preprocess import DECODE_THREADS_ENV, DEPTH_INTERPOLATIONS, Preprocessing, sampling_plan
from darnet_pl.data.preprocess import decode_threads as default_decode_threads
from darnet_pl.data.readers.slices import read_slice_folder_baseline
from darnet_pl.data.records import CLASS_NAMES, ScanRecord


def synthetic_slice(z: float, rng: np.random.Generator, grid: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """One 8-bit CT-like slice at relative height ``z`` in [0, 1] (0 = top of the lungs)."""
    y, x = grid
    n = x.shape[0]
    image = np.zeros((n, n), dtype=np.float32)
    body = ((x / 0.42) ** 2 + (y / 0.31) ** 2) < 1.0
    image[body] = 150.0
    lung_size = 0.35 + 0.65 * np.sin(np.pi * min(max(z, 0.02), 0.98))
    for side in (-1.0, 1.0):
        lung = (((x - side * 0.17) / (0.12 * lung_size)) ** 2 + ((y + 0.02) / (0.21 * lung_size)) ** 2) < 1.0
        image[lung] = 35.0
    for _ in range(12):  # vessels and nodules: small bright blobs inside the lungs
        cx, cy, r = rng.uniform(-0.3, 0.3), rng.uniform(-0.2, 0.2), rng.uniform(0.005, 0.02)
        image += 90.0 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r)).astype(np.float32)
    image[body] += rng.normal(0.0, 4.0, size=int(body.sum())).astype(np.float32)
    fov = (x**2 + y**2) < 0.49**2
    image[~fov] = 0.0
    image[fov & ~body] += 20.0  # air inside the field of view is not black in a lung window
    return np.clip(image, 0, 255).astype(np.uint8)


def build_synthetic_ccii(root: Path, slice_counts: Sequence[int], size: int = 512, seed: int = 0) -> list[ScanRecord]:
    """A CC-CCII-like tree ``root/<CLASS>/<CLASS>-1/<patient>/<scan>/<i>.png``; returns its records."""
    rng = np.random.default_rng(seed)
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    grid = np.meshgrid(coords, coords, indexing="ij")
    records = []
    for i, n_slices in enumerate(slice_counts):
        class_name = CLASS_NAMES[i % len(CLASS_NAMES)]
        folder = root / class_name / f"{class_name}-1" / str(100 + i) / str(1000 + i)
        folder.mkdir(parents=True)
        for k in range(n_slices):
            Image.fromarray(synthetic_slice(k / max(n_slices - 1, 1), rng, grid)).save(folder / f"{k + 1}.png")
        records.append(ScanRecord(class_name, str(100 + i), str(1000 + i), path=str(folder), n_slices=n_slices))
    return records


def _time_ingest(
    records: list[ScanRecord], prep: Preprocessing, work: Path, decode_threads: int | None = 1
) -> tuple[float, VolumeCache]:
    """Ingest into a fresh cache in this process; ``decode_threads`` (None: the reader's default) for antialias."""
    cache = VolumeCache(Path(tempfile.mkdtemp(dir=work)), prep)
    saved = os.environ.get(DECODE_THREADS_ENV)
    if decode_threads is None:
        os.environ.pop(DECODE_THREADS_ENV, None)
    else:
        os.environ[DECODE_THREADS_ENV] = str(decode_threads)
    try:
        started = time.perf_counter()
        report = ingest(records, cache, workers=0, progress=False)
        elapsed = time.perf_counter() - started
    finally:
        if saved is None:
            os.environ.pop(DECODE_THREADS_ENV, None)
        else:
            os.environ[DECODE_THREADS_ENV] = saved
    if report.failed or report.converted != len(records):
        raise RuntimeError(f"benchmark ingest failed: {report.failed}")
    return elapsed, cache


def resize_like_the_authors(stack: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """Crop, then ``skimage.transform.resize(stack, prep.size, anti_aliasing=True)`` as scikit-image computes it.

    scikit-image is not a dependency; these are the SciPy calls it makes for a uint8 input (converted to float64
    in [0, 1], ``mode="reflect"``, linear order). Depth interpolation is always linear, as in their code.
    """
    from scipy import ndimage

    _, h, w = stack.shape
    left, top, right, bottom = prep.crop_box(h, w)
    image = stack[:, top:bottom, left:right].astype(np.float64) / 255.0
    factors = np.divide(image.shape, prep.size)
    sigma = np.maximum(0.0, (factors - 1.0) / 2.0)
    if np.any(sigma > 0):
        image = ndimage.gaussian_filter(image, sigma, mode="mirror")
    out = ndimage.zoom(image, 1.0 / factors, order=1, mode="mirror", grid_mode=True)
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def _read_like_the_authors(record: ScanRecord, prep: Preprocessing) -> np.ndarray:
    from darnet_pl.data.readers.slices import checked_slices, decode_slice

    paths = checked_slices(record.path, record.n_slices)
    return resize_like_the_authors(np.stack([decode_slice(path) for path in paths]), prep)


def _read_torch_baseline(record: ScanRecord, prep: Preprocessing) -> np.ndarray:
    return read_slice_folder_baseline(record.path, prep, expected_slices=record.n_slices)


def _time_baseline(
    records: list[ScanRecord], prep: Preprocessing, work: Path, read: Callable[[ScanRecord, Preprocessing], np.ndarray]
) -> tuple[float, dict[str, np.ndarray]]:
    out = Path(tempfile.mkdtemp(dir=work))
    volumes = {}
    started = time.perf_counter()
    for record in records:
        volume = read(record, prep)
        np.save(out / f"{record.key}.npy", volume)
        volumes[record.key] = volume
    return time.perf_counter() - started, volumes


# slice counts at the 5th, 15th, ..., 95th percentiles of the 4,178 scans of the CC-CCII index (unzip_filenames.csv)
CCII_SLICE_COUNTS = (26, 47, 56, 60, 66, 77, 95, 128, 150, 257)


def _decode_ms_per_slice(records: list[ScanRecord]) -> float:
    """Median time to decode one slice of the tree with the reader both pipelines use."""
    from darnet_pl.data.readers.slices import decode_slice, list_slices

    paths = [p for r in records for p in list_slices(r.path)][:200]
    times = []
    for path in paths:
        started = time.perf_counter()
        decode_slice(path)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def run_ingest_benchmark(
    slice_counts: Sequence[int] = CCII_SLICE_COUNTS,
    repeats: int = 3,
    prep: Preprocessing | None = None,
    slice_size: int = 512,
    seed: int = 0,
    depth_interpolations: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Time ingest vs baseline on synthetic scans of ``slice_counts`` slices, for each depth interpolation.

    Single process, one core, same scans; times are medians over ``repeats`` runs (each into a fresh cache).
    The top-level figures are those of ``prep.depth_interpolation`` (the configured default); the others are
    under ``by_depth_interpolation``, and antialias's speed against linear's at the top (when both are measured).
    """
    prep = prep or Preprocessing()
    slice_counts = [int(n) for n in slice_counts]
    modes = list(depth_interpolations or dict.fromkeys([prep.depth_interpolation, *DEPTH_INTERPOLATIONS]))
    with tempfile.TemporaryDirectory(prefix="darnet-bench-ingest-") as tmp:
        work = Path(tmp)
        records = build_synthetic_ccii(work / "ccii", slice_counts, size=slice_size, seed=seed)
        decode_ms = _decode_ms_per_slice(records)
        by_mode = {
            mode: _measure(records, replace(prep, depth_interpolation=mode), repeats, work, decode_ms) for mode in modes
        }
    main = by_mode[prep.depth_interpolation]
    headline = {}
    if "antialias" in by_mode and "linear" in by_mode:
        antialias, linear = by_mode["antialias"], by_mode["linear"]
        headline = {
            "antialias_ingest_scans_per_s": antialias["ingest_scans_per_s"],
            "antialias_threaded_ingest_scans_per_s": antialias["threaded_ingest_scans_per_s"],
            "antialias_decode_threads": antialias["decode_threads"],
            "linear_ingest_scans_per_s": linear["ingest_scans_per_s"],
            "antialias_vs_linear": round(antialias["ingest_scans_per_s"] / linear["ingest_scans_per_s"], 3),
        }
    return {
        "n_scans": len(slice_counts),
        "slice_counts": slice_counts,
        "slice_size": slice_size,
        "preprocessing": prep.to_dict(),
        "repeats": repeats,
        **{k: v for k, v in main.items() if k != "preprocessing"},
        **headline,
        "decode_ms_per_slice": round(decode_ms, 3),
        "by_depth_interpolation": by_mode,
        "cores": 1,
        "torch_threads": 1,
    }


def _measure(
    records: list[ScanRecord], prep: Preprocessing, repeats: int, work: Path, decode_ms: float
) -> dict[str, Any]:
    import torch

    slice_counts = [r.n_slices or 0 for r in records]
    antialias = prep.depth_interpolation == "antialias"
    threads = default_decode_threads() if antialias else 1
    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        times: dict[str, list[float]] = {"ingest": [], "threaded": [], "authors": [], "torch": []}
        for _ in range(repeats):  # interleaved, so that a slow spell of the machine hits all of them alike
            elapsed, cache = _time_ingest(records, prep, work, decode_threads=1)
            times["ingest"].append(elapsed)
            if threads > 1:
                times["threaded"].append(_time_ingest(records, prep, work, decode_threads=threads)[0])
            elapsed, authors = _time_baseline(records, prep, work, _read_like_the_authors)
            times["authors"].append(elapsed)
            if not antialias:
                elapsed, reference = _time_baseline(records, prep, work, _read_torch_baseline)
                times["torch"].append(elapsed)
        if antialias:
            reference = authors  # what antialias reproduces
        ours = {r.key: cache.load(r).astype(np.int16) for r in records}
        diffs = [np.abs(ours[key] - reference[key].astype(np.int16)) for key in ours]
        authors_diffs = [np.abs(ours[key] - authors[key].astype(np.int16)) for key in ours]
    finally:
        torch.set_num_threads(threads_before)
    ingest_s, authors_s = (statistics.median(times[k]) for k in ("ingest", "authors"))
    threaded_s = statistics.median(times["threaded"]) if times["threaded"] else ingest_s
    torch_s = statistics.median(times["torch"]) if times["torch"] else None
    if antialias:
        decoded = sum(slice_counts)
    else:
        decoded = sum(len(sampling_plan(n, prep.size[0], prep.depth_interpolation).needed) for n in slice_counts)
    decode_s = decoded * decode_ms / 1000
    n_scans = len(records)
    return {
        "preprocessing": prep.to_dict(),
        "ingest_s": round(ingest_s, 4),
        "baseline_s": round(authors_s, 4),
        "torch_baseline_s": None if torch_s is None else round(torch_s, 4),
        "ingest_scans_per_s": round(n_scans / ingest_s, 3),
        "decode_threads": threads,
        "threaded_ingest_scans_per_s": round(n_scans / threaded_s, 3),
        "baseline_scans_per_s": round(n_scans / authors_s, 3),
        "ingest_speedup": round(authors_s / ingest_s, 3),
        "ingest_speedup_vs_torch": None if torch_s is None else round(torch_s / ingest_s, 3),
        "slices_decoded_fraction": round(decoded / sum(slice_counts), 3),
        "decode_share_of_ingest": round(decode_s / ingest_s, 3),
        "decode_bound_speedup_vs_torch": None if torch_s is None else round(torch_s / decode_s, 3),
        "max_abs_diff": int(max(int(d.max()) for d in diffs)),
        "mean_abs_diff": float(round(np.mean([d.mean() for d in diffs]), 5)),
        "authors_mean_abs_diff": float(round(np.mean([d.mean() for d in authors_diffs]), 3)),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--slices", type=int, nargs="+", default=CCII_SLICE_COUNTS, help="slice count of each scan (default: CC-CCII)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, nargs=3, default=(64, 224, 224), metavar=("D", "H", "W"))
    parser.add_argument("--crop", type=int, default=48)
    parser.add_argument("--depth-interpolation", choices=DEPTH_INTERPOLATIONS, default="linear")
    args = parser.parse_args(argv)
    prep = Preprocessing(size=tuple(args.size), border_crop=args.crop, depth_interpolation=args.depth_interpolation)
    result = run_ingest_benchmark(args.slices, args.repeats, prep)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

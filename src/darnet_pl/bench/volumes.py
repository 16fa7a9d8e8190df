"""Own-scan reading benchmark: NIfTI files and DICOM series in Hounsfield units -> the model's uint8 volume.

``darnet_pl.data.readers.load.load_volume`` is timed on scans shaped like a user's: 512x512 in-plane (int16 with
a rescale slope, as scanners write them) at several slice counts, as uncompressed ``.nii``, gzipped ``.nii.gz``
and one DICOM series, for every ``depth_interpolation`` at the paper's 64x224x224 with the 48/512 border crop. One
core (torch limited to one thread), the median of ``repeats`` runs; the JSON gives milliseconds per scan for each
(format, interpolation), wall clock and CPU time of this process (steadier on a machine shared with other work),
and ``read_ms`` - the time nibabel/pydicom alone take to hand over the
voxels - as the floor every pipeline shares.

This is the figure that decided how far the MONAI transform chain (``darnet_pl.data.volume_transforms``) replaced
the hand-written steps: it must not be slower than what it replaced. Run ``python -m darnet_pl.bench.volumes``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from darnet_pl.data.preprocess import DEPTH_INTERPOLATIONS, Preprocessing
from darnet_pl.data.readers.load import load_volume
from darnet_pl.data.records import ScanRecord

SLICE_COUNTS = (64, 128, 256)
"""Slices of the NIfTI scans: below, near and above twice the model's depth (the linear plan reads up to 128)."""
DICOM_SLICES = 96


def ct_volume(n_slices: int, size: int, seed: int = 0) -> np.ndarray:
    """An int16 (x, y, z) chest-like volume in raw scanner units (HU + 1024): body, two lungs, noise."""
    rng = np.random.default_rng(seed)
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    x, y = np.meshgrid(coords, coords, indexing="ij")
    body = (x / 0.42) ** 2 + (y / 0.31) ** 2 < 1.0
    volume = np.full((size, size, n_slices), -1000.0, dtype=np.float32)
    for z in range(n_slices):
        plane = np.where(body, 40.0, -1000.0).astype(np.float32)
        extent = 0.35 + 0.65 * np.sin(np.pi * min(max(z / max(n_slices - 1, 1), 0.02), 0.98))
        for side in (-1.0, 1.0):
            lung = ((x - side * 0.17) / (0.12 * extent)) ** 2 + ((y + 0.02) / (0.21 * extent)) ** 2 < 1.0
            plane[lung] = -850.0
        plane[body] += rng.normal(0.0, 20.0, size=int(body.sum())).astype(np.float32)
        volume[:, :, z] = plane
    return np.rint(volume + 1024.0).astype(np.int16)


def write_nifti(path: Path, raw: np.ndarray) -> Path:
    import nibabel as nib

    image = nib.Nifti1Image(raw, np.diag([-0.7, -0.7, 1.25, 1.0]))  # LPS-like voxel axes, as DICOM converters write
    image.header.set_slope_inter(1.0, -1024.0)
    nib.save(image, path)
    return path


def write_dicom(folder: Path, raw: np.ndarray) -> Path:
    """One axial CT series, one file per slice, positions along +z (LPS), intercept -1024."""
    from pydicom.uid import generate_uid

    from darnet_pl.data.phantoms.dicom import save_ct_slice

    folder.mkdir(parents=True)
    series = generate_uid()
    for z in range(raw.shape[2]):
        hu = raw[:, :, z].T.astype(np.float64) - 1024.0
        save_ct_slice(folder / f"IM{z:04d}", hu, [-180.0, -180.0, 1.25 * z], series, 0.7)
    return folder


def _read_only(path: Path) -> Callable[[], object]:
    """What the file reader alone costs (the voxels in memory as float32), the floor of every pipeline."""
    if path.is_dir():
        import pydicom

        return lambda: [pydicom.dcmread(p).pixel_array.astype(np.float32) for p in sorted(path.iterdir())]
    import nibabel as nib

    return lambda: nib.load(path).get_fdata(dtype=np.float32)


def _median_ms(function: Callable[[], object], repeats: int, clock: Callable[[], float] = time.perf_counter) -> float:
    times = []
    for _ in range(repeats):
        started = clock()
        function()
        times.append(clock() - started)
    return round(1000.0 * statistics.median(times), 1)


def run_volume_benchmark(
    slice_counts: Sequence[int] = SLICE_COUNTS,
    dicom_slices: int = DICOM_SLICES,
    size: int = 512,
    prep_size: Sequence[int] = (64, 224, 224),
    repeats: int = 3,
    depth_interpolations: Sequence[str] = DEPTH_INTERPOLATIONS,
) -> dict[str, Any]:
    """Milliseconds per scan of ``load_volume`` for NIfTI (.nii, .nii.gz) and DICOM, per depth interpolation."""
    import torch

    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)
    results: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="darnet-bench-volumes-") as tmp:
            work = Path(tmp)
            scans: dict[str, Path] = {}
            for n in slice_counts:
                raw = ct_volume(n, size, seed=n)
                scans[f"nii_{n}"] = write_nifti(work / f"ct{n}.nii", raw)
                scans[f"niigz_{n}"] = write_nifti(work / f"ct{n}.nii.gz", raw)
            scans[f"dicom_{dicom_slices}"] = write_dicom(work / "dicom", ct_volume(dicom_slices, size, seed=1))
            for name, path in scans.items():
                record = ScanRecord("CP", "p", name, path=str(path))
                entry: dict[str, Any] = {"read_ms": _median_ms(_read_only(path), repeats)}
                for mode in depth_interpolations:
                    prep = Preprocessing(size=tuple(prep_size), depth_interpolation=mode)
                    load_volume(record, prep)  # warm-up: imports, caches
                    run = lambda r=record, p=prep: load_volume(r, p)  # noqa: E731
                    entry[mode] = {
                        "ms_per_scan": _median_ms(run, repeats),
                        "cpu_ms_per_scan": _median_ms(run, repeats, time.process_time),
                    }
                results[name] = entry
    finally:
        torch.set_num_threads(threads_before)
    per_mode = {
        mode: round(statistics.mean(entry[mode]["ms_per_scan"] for entry in results.values()), 1)
        for mode in depth_interpolations
    }
    cpu_per_mode = {
        mode: round(statistics.mean(entry[mode]["cpu_ms_per_scan"] for entry in results.values()), 1)
        for mode in depth_interpolations
    }
    return {
        "size": [size, size],
        "model_input": list(prep_size),
        "repeats": repeats,
        "threads": 1,
        "scans": results,
        "mean_ms_per_scan": per_mode,
        "mean_cpu_ms_per_scan": cpu_per_mode,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, nargs="+", default=SLICE_COUNTS)
    parser.add_argument("--dicom-slices", type=int, default=DICOM_SLICES)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(json.dumps(run_volume_benchmark(args.slices, args.dicom_slices, repeats=args.repeats), indent=2))


if __name__ == "__main__":
    main()

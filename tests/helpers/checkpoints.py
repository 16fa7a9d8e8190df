"""Tiny DARNet checkpoints and scan files (NIfTI, uint8) for inference tests."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import nibabel as nib
import numpy as np
import pytorch_lightning as pl
import torch

from darnet_pl.data.datamodule import CTDataModule
from darnet_pl.data.sources.synthetic import SyntheticSource
from darnet_pl.explain.nifti import diagonal_affine
from darnet_pl.training.module import DARNetModule

SIZE = (16, 32, 32)


def make_checkpoint(path: Path, seed: int, size: tuple[int, int, int] = SIZE, attention: str = "dual") -> Path:
    """A real Lightning checkpoint of a tiny DARNet after one fast_dev_run step on synthetic data."""
    pl.seed_everything(seed, workers=False, verbose=False)
    source = SyntheticSource(patients_per_class=6, scans_per_patient=(1, 1), size=size, seed=0)
    datamodule = CTDataModule(source, size=size, batch_size=4, num_workers=0, persistent_workers=False)
    module = DARNetModule(attention=attention, width=4, input_size=size, optimizer=partial(torch.optim.Adam, lr=1e-2))
    trainer = pl.Trainer(
        accelerator="cpu", fast_dev_run=True, logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(module, datamodule=datamodule)
    trainer.save_checkpoint(path)
    return path


def to_uint8(volume: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(volume, 0.0, 1.0) * 255.0).astype(np.uint8)


def write_nifti(path: Path, volume: np.ndarray) -> Path:
    """uint8 (D, H, W) with the affine that says: axis 0 inferior, 1 posterior, 2 patient-left."""
    nib.save(nib.Nifti1Image(volume, diagonal_affine(volume.shape)), path)
    return path


def phantom_volumes(patients_per_class: int, size: tuple[int, int, int] = SIZE) -> list[tuple[str, np.ndarray]]:
    """(class name, uint8 volume) of synthetic phantoms at ``size``, one scan per patient, classes in turn
    (CP, NCP, Normal, CP, ...)."""
    from darnet_pl.data.phantoms import render_scan, synthetic_cohort
    from darnet_pl.data.records import CLASS_NAMES

    cohort = synthetic_cohort(patients_per_class, (1, 1), seed=0)
    return [(CLASS_NAMES[scan.label], to_uint8(render_scan(scan, size)[0])) for scan in cohort]


def write_scan_list(path: Path, rows: list[dict[str, str]]) -> Path:
    """A CSV scan list (``path`` and whatever other columns the rows have, in the order of the first row)."""
    columns = list(rows[0])
    lines = [",".join(columns)] + [",".join(row.get(c, "") for c in columns) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def edited_checkpoint(
    source: Path,
    target: Path,
    hyper_parameters: dict | None = None,
    tensors: dict[str, torch.Tensor] | None = None,
    drop: tuple[str, ...] = (),
) -> Path:
    """A copy of ``source`` with some hyper-parameters and state-dict tensors replaced (keys as in the file, e.g.
    ``net.fc.weight``) and ``drop`` removed: what a damaged, hand-edited or hostile file holds."""
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"] = {**checkpoint["hyper_parameters"], **(hyper_parameters or {})}
    state = {k: v for k, v in checkpoint["state_dict"].items() if k not in drop}
    checkpoint["state_dict"] = {**state, **(tensors or {})}
    torch.save(checkpoint, target)
    return target


def with_values(source: Path, key: str, index: int, value: float) -> dict[str, torch.Tensor]:
    """``{key: tensor}``: the tensor ``key`` of ``source`` with its ``index``-th element (flat) set to ``value``."""
    tensor = torch.load(source, map_location="cpu", weights_only=True)["state_dict"][key].clone()
    tensor.view(-1)[index] = value
    return {key: tensor}

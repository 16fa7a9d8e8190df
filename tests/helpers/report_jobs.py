"""Hand-made job folders for the report: a cohort, model-like probabilities, and a job's files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch

from darnet_pl.metrics import PaperMetrics

CLASSES = ("CP", "NCP", "Normal")


def cohort(patients_per_class: int, seed: int) -> list[tuple[str, str, int]]:
    """(patient_id, scan_id, label) with 1-3 scans per patient, like the synthetic data."""
    rng = np.random.default_rng(seed)
    rows = []
    for label in range(len(CLASSES)):
        for p in range(patients_per_class):
            pid = f"{CLASSES[label]}-{p:04d}"
            rows += [(pid, f"{pid}-s{s}", label) for s in range(int(rng.integers(1, 4)))]
    return rows


def model_probs(scans: list[tuple[str, str, int]], seed: int, strength: float = 2.2) -> np.ndarray:
    """Realistic softmax outputs: a class signal, a per-patient effect shared by all models, model noise."""
    labels = np.array([s[2] for s in scans])
    patients = sorted({s[0] for s in scans})
    shared = np.random.default_rng(123).normal(0, 0.8, size=(len(patients), 3))
    effect = shared[[patients.index(s[0]) for s in scans]]
    logits = strength * np.eye(3)[labels] + effect + np.random.default_rng(seed).normal(0, 1.0, size=(len(scans), 3))
    return torch.softmax(torch.tensor(logits), dim=1).numpy()


def reference_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    metrics = PaperMetrics(CLASSES, "NCP")
    metrics.update(torch.log(torch.tensor(probs, dtype=torch.float64)), torch.tensor(labels))
    return metrics.compute()


CCII_SOURCE = "darnet_pl.data.sources.ccii.CCIISource"
SYNTHETIC_SOURCE = "darnet_pl.data.sources.synthetic.SyntheticSource"


def write_job(
    path: Path,
    variant: str,
    fold: int,
    probs: np.ndarray | None,
    scans,
    extra=(),
    seed: int = 0,
    experiment: str = "smoke",
    source: str | None = None,
    exclude_segmented: bool | None = None,
    metrics: dict[str, float] | None = None,
) -> None:
    """A job folder as darnet_pl.training.run leaves it (probs None: the job never finished).

    ``experiment`` is the task name and the ``+experiment=`` override; ``source`` the data source's ``_target_``
    (None: no ``data.source`` in the config, as older jobs); ``exclude_segmented`` the CC-CCII shortcut control's
    switch; ``metrics`` replaces some of the test metrics the predictions give (e.g. fold values planted inside or
    outside the paper's range).
    """
    (path / ".hydra").mkdir(parents=True)
    config = f"task_name: {experiment}\nfold: {fold}\nseed: 42\nmodel:\n  attention: {variant}\n  positive_class: NCP\n"
    config += "data:\n  class_names: [CP, NCP, Normal]\n"
    if source is not None or exclude_segmented is not None:
        config += "  source:\n"
        config += f"    _target_: {source}\n" if source is not None else ""
        config += f"    exclude_segmented: {str(exclude_segmented).lower()}\n" if exclude_segmented is not None else ""
    (path / "config_resolved.yaml").write_text(config)
    overrides = [f"model.attention={variant}", f"fold={fold}", f"+experiment={experiment}", *extra]
    (path / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if probs is None:
        return
    order = np.random.default_rng(seed).permutation(len(scans))  # each job lists the scans in its own order
    with (path / "predictions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["patient_id", "scan_id", "label", *(f"prob_{c}" for c in CLASSES)])
        for i in order:
            writer.writerow([scans[i][0], scans[i][1], scans[i][2], *(repr(float(x)) for x in probs[i])])
    labels = np.array([s[2] for s in scans])
    values = reference_metrics(probs, labels) | dict(metrics or {})
    (path / "test_metrics.json").write_text(
        json.dumps({"test/loss": 0.3, **{f"test/{k}": v for k, v in values.items()}})
    )


def write_trained_job(
    path: Path,
    variant: str,
    fold: int,
    checkpoint: Path,
    state: str = "finished",
    experiment: str = "smoke_ablation",
    extra=(),
) -> Path:
    """A sweep job folder (``write_job``'s config and overrides) holding a copy of ``checkpoint`` as its best
    checkpoint, left in ``state``: ``finished`` (test_metrics.json), ``interrupted`` (last.ckpt and no metrics),
    ``failed`` (failed.json, as a sweep job records it) or ``untested`` (the checkpoint only). A running job is one
    of these whose lock a test holds (``darnet_pl.runs.job_guard.job_lock``)."""
    import shutil

    write_job(path, variant, fold, None, [], extra, experiment=experiment)
    (path / "checkpoints").mkdir()
    shutil.copy(checkpoint, path / "checkpoints" / "epoch001.ckpt")
    if state == "finished":
        (path / "test_metrics.json").write_text(json.dumps({"test/loss": 0.3}))
    elif state == "interrupted":
        shutil.copy(checkpoint, path / "checkpoints" / "last.ckpt")
    elif state == "failed":
        failure = {"error": "data.size=[8,8,8]: the model input is too small", "traceback": None}
        (path / "failed.json").write_text(json.dumps(failure))
    return path

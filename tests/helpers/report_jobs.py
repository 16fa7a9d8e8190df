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


def write_job(path: Path, variant: str, fold: int, probs: np.ndarray | None, scans, extra=(), seed: int = 0) -> None:
    """A job folder as darnet_pl.training.run leaves it (probs None: the job never finished)."""
    (path / ".hydra").mkdir(parents=True)
    (path / "config_resolved.yaml").write_text(
        f"fold: {fold}\nseed: 42\nmodel:\n  attention: {variant}\n  positive_class: NCP\n"
        "data:\n  class_names: [CP, NCP, Normal]\n"
    )
    overrides = [f"model.attention={variant}", f"fold={fold}", "+experiment=smoke", *extra]
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
    metrics = {f"test/{k}": v for k, v in reference_metrics(probs, labels).items()}
    (path / "test_metrics.json").write_text(json.dumps({"test/loss": 0.3, **metrics}))

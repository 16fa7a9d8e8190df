"""Does a trained model use a flagged shortcut? Two checks per checkpoint, flagged probe and flagged class ``c``.

The scans are split by whether the signal points to ``c``: the probe's out-of-fold probability of ``c`` is above
``c``'s share of the scans (for a 0/1 flag such as pre-segmented: the flagged scans, when the flag raises the odds
of ``c``). Then:

- stratified metrics: the model's sensitivity and specificity for ``c`` and its accuracy in each stratum, with
  patient-level bootstrap intervals (``darnet_pl.stats.stratified_metrics``, the same resamples for both strata, so
  the gap between them has an interval too). A model that uses the shortcut finds ``c`` more easily
  where the signal points to it (sensitivity gap > 0) and calls other classes ``c`` there (specificity gap < 0);
- a feature probe: within the scans of ``c``, a logistic regression on the model's pooled penultimate features
  (``DARNet.pooled_features``), cross-validated by patient, predicts the stratum; its out-of-fold AUC near 1 says
  the model's features encode the signal (within one class, so not merely the class). Encoding is not using: a
  mark as visible as a frame is encoded by any convolutional network, even an untrained one. So beside it, the
  evidence AUC: within the scans of ``c``, the AUC of the model's own evidence for ``c`` (log p(c) minus the log
  of the most probable other class) for telling the stratum; near 0.5 the signal does not move the decision, near
  1 the model is surer of ``c`` where the signal points to it - it uses the signal.

Probabilities are those ``darnet-predict`` gives (softmax of the logits over the checkpoint's temperature); the
inputs are the scans as the checkpoint's preprocessing makes them. Nothing here imports the model's code: the
caller loads checkpoints (``darnet_pl.runs.checkpoints``) and hands the models over.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from darnet_pl.audit.probes import MAX_FOLDS, ProbeResult
from darnet_pl.data.records import ScanRecord

STRATUM_METRICS = ("sensitivity", "specificity", "accuracy")


@dataclass
class ModelOutputs:
    """One checkpoint's probabilities (N, K) and pooled penultimate features (N, F) on the scans ``keys``."""

    checkpoint: str
    class_names: tuple[str, ...]
    keys: list[str]
    probs: np.ndarray
    features: np.ndarray


@dataclass
class ModelRun:
    """What ``model_outputs`` gives: each checkpoint's outputs, and the scans that could not be read."""

    outputs: list[ModelOutputs]
    problems: list[str] = field(default_factory=list)


def model_outputs(
    models: Sequence[tuple[Any, Any]],
    records: Sequence[ScanRecord],
    load: Callable[[ScanRecord], np.ndarray],
    batch_size: int = 4,
    device: Any = "cpu",
    progress: bool = False,
) -> ModelRun:
    """Every model's probabilities and features on ``records``; ``models``: (DARNet, CheckpointMetadata) pairs,
    ``load``: record -> the model's input volume (uint8, or float in [0, 1]). Each scan is read once for all models;
    one that cannot be read (``ScanError``) is left out and named in ``problems``."""
    import torch
    from tqdm.auto import tqdm

    from darnet_pl.data.readers.scans import ScanError

    keys: list[str] = []
    problems: list[str] = []
    probs: list[list[np.ndarray]] = [[] for _ in models]
    features: list[list[np.ndarray]] = [[] for _ in models]
    bar = tqdm(total=len(records), disable=not progress, unit="scan", desc="model checks", dynamic_ncols=True)
    try:
        for start in range(0, len(records), batch_size):
            volumes = []
            for record in records[start : start + batch_size]:
                try:
                    volume = np.asarray(load(record))
                except ScanError as error:
                    problems.append(str(error))
                    continue
                volumes.append(volume.astype(np.float32) / 255.0 if volume.dtype == np.uint8 else volume)
                keys.append(record.key)
            bar.update(min(batch_size, len(records) - start))
            if not volumes:
                continue
            x = torch.from_numpy(np.stack(volumes).astype(np.float32))[:, None].to(device)
            with torch.inference_mode():
                for i, (model, meta) in enumerate(models):
                    pooled = model.pooled_features(x)
                    logits = model.fc(pooled).float() / float(meta.temperature)
                    probs[i].append(logits.softmax(dim=1).cpu().double().numpy())
                    features[i].append(pooled.float().cpu().numpy())
    finally:
        bar.close()
    outputs = [
        ModelOutputs(
            str(meta.path),
            tuple(meta.class_names),
            list(keys),
            np.concatenate(probs[i]) if probs[i] else np.zeros((0, len(meta.class_names))),
            np.concatenate(features[i]) if features[i] else np.zeros((0, 0)),
        )
        for i, (_, meta) in enumerate(models)
    ]
    return ModelRun(outputs, problems)


def points_to(result: ProbeResult, class_name: str) -> dict[str, bool]:
    """Scan key -> whether the signal points to ``class_name``: its out-of-fold probability of the class is above
    the class's share of the probe's scans."""
    oof = result.out_of_fold
    if oof is None:
        return {}
    c = result.classes.index(class_name)
    share = float(np.mean(oof.labels == c))
    return {key: bool(p > share) for key, p in zip(oof.keys, oof.proba[:, c], strict=True)}


def _value(x: float) -> float | None:
    return round(float(x), 4) if math.isfinite(x) else None


def _interval(bounds: Sequence[float]) -> list[float] | None:
    """A bootstrap interval rounded for the tables; None where it is undefined (NaN)."""
    return [round(float(b), 4) for b in bounds] if all(math.isfinite(b) for b in bounds) else None


def stratified_rows(
    output: ModelOutputs,
    labels: np.ndarray,
    patients: np.ndarray,
    stratum: np.ndarray,
    class_name: str,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> list[dict[str, Any]]:
    """The class's sensitivity and specificity and the accuracy, where the signal points to the class (``yes``) and
    elsewhere (``no``), and the gap yes - no, each with a patient-level bootstrap interval (the same resamples for
    both strata): ``darnet_pl.stats.stratified_metrics``, one row per metric. ``labels`` index
    ``output.class_names``; rows align with ``output.keys``."""
    from darnet_pl.stats.strata import DIFFERENCE, stratified_metrics

    names = output.class_names
    block = f"{len(names)}class"
    keys = {
        "sensitivity": f"{block}/{class_name}/sensitivity",
        "specificity": f"{block}/{class_name}/specificity",
        "accuracy": f"{block}/accuracy",
    }
    strata = stratified_metrics(
        output.probs, labels, patients, stratum.astype(bool), names, class_name, n_resamples, seed, level,
        keys=list(keys.values()),
    )  # fmt: skip
    by_stratum = {row["stratum"]: row for row in strata}
    rows = []
    for metric, key in keys.items():
        row: dict[str, Any] = {"checkpoint": output.checkpoint, "class": class_name, "metric": metric}
        for side, flag in (("yes", True), ("no", False)):
            found = by_stratum[flag]
            row[side] = _value(found["metrics"][key])
            row[f"{side}_ci"] = _interval(found["ci"][key]) if n_resamples > 0 else None
            positives = found["support"][class_name]
            row[f"n_{side}"] = {"sensitivity": positives, "specificity": found["n_scans"] - positives}.get(
                metric, found["n_scans"]
            )
        gap = by_stratum[DIFFERENCE]
        row["gap"] = _value(gap["metrics"][key])
        row["gap_ci"] = _interval(gap["ci"][key]) if n_resamples > 0 else None
        rows.append(row)
    return rows


def feature_probe(features: np.ndarray, target: np.ndarray, patients: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Out-of-fold AUC of a logistic regression (standardized) predicting ``target`` (0/1) from ``features``, folds
    grouped by patient and stratified by the target; ``auc`` None where a side has fewer than 2 patients."""
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    sides = [len(set(patients[target == v].tolist())) for v in (False, True)]
    result: dict[str, Any] = {"auc": None, "n_scans": len(target), "n_yes": int(target.sum()), "folds": 0}
    folds = min(MAX_FOLDS, *sides)
    if folds < 2:
        result["reason"] = f"too few patients on one side ({sides[1]} where the signal points, {sides[0]} not)"
        return result
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    scores = np.zeros(len(target))
    for train, test in StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(features, target, patients):
        if np.unique(target[train]).size < 2:
            scores[test] = 0.5
            continue
        scores[test] = clone(model).fit(features[train], target[train]).predict_proba(features[test])[:, 1]
    result.update(auc=round(float(roc_auc_score(target, scores)), 4), folds=folds, reason="")
    return result


def evidence_auc(probs: np.ndarray, target: np.ndarray, c: int) -> float | None:
    """AUC of the model's evidence for class ``c`` (log p(c) - log of the largest other probability) for telling
    ``target`` (0/1); None where one side is empty."""
    from sklearn.metrics import roc_auc_score

    if target.all() or not target.any():
        return None
    logp = np.log(np.clip(probs, 1e-12, None))
    others = np.delete(logp, c, axis=1).max(axis=1)
    return round(float(roc_auc_score(target, logp[:, c] - others)), 4)


def model_checks(
    outputs: Sequence[ModelOutputs],
    results: Sequence[ProbeResult],
    records: Sequence[ScanRecord],
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(stratified metric rows, feature probe rows) of every checkpoint for every flagged probe and class, on the
    scans of ``records`` that the probe read and the model could read."""
    by_key = {r.key: r for r in records}
    stratified: list[dict[str, Any]] = []
    probes: list[dict[str, Any]] = []
    for result in results:
        if not result.flagged or result.out_of_fold is None:
            continue
        for class_name in result.flagged_classes:
            pointing = points_to(result, class_name)
            for output in outputs:
                if class_name not in output.class_names:
                    continue
                rows = [i for i, key in enumerate(output.keys) if key in pointing and key in by_key]
                if not rows:
                    continue
                view = ModelOutputs(
                    output.checkpoint,
                    output.class_names,
                    [output.keys[i] for i in rows],
                    output.probs[rows],
                    output.features[rows],
                )
                recs = [by_key[k] for k in view.keys]
                labels = np.array([output.class_names.index(r.class_name) for r in recs])
                patients = np.array([r.patient_id for r in recs])
                stratum = np.array([pointing[k] for k in view.keys])
                common = {"probe": result.name}
                for row in stratified_rows(view, labels, patients, stratum, class_name, n_resamples, seed, level):
                    stratified.append({**common, **row})
                c = output.class_names.index(class_name)
                members = labels == c
                probe = feature_probe(view.features[members], stratum[members], patients[members], seed)
                evidence = evidence_auc(view.probs[members], stratum[members], c)
                probes.append(
                    {**common, "checkpoint": output.checkpoint, "class": class_name, **probe, "evidence_auc": evidence}
                )
    return stratified, probes

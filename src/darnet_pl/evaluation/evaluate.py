"""``darnet-evaluate``: the paper's metrics of a checkpoint, a run or a sweep's fold ensemble on a labelled scan list.

    darnet-evaluate --ckpt CKPT_OR_RUN_OR_SWEEP --scans scans.csv --out DIR [--tta] [--bootstrap N] [--device cuda]

The list is a CSV with the columns ``path`` and ``label`` (a class name of the checkpoint, e.g. CP, NCP, Normal)
and optionally ``patient_id`` and ``scan_id``; paths are relative to the CSV. Its scans are read and predicted
exactly as ``darnet-predict`` does (``darnet_pl.inference.predict``: NIfTI, DICOM series, slice folders, the
checkpoint's preprocessing, each model's temperature, ``--tta``; several checkpoints are averaged). The metrics
are ``PaperMetrics`` of those probabilities, per scan; the confidence intervals come from
``darnet_pl.stats.patient_bootstrap`` (resampling patients with all their scans; without a
``patient_id`` column every scan counts as its own patient, and a note says so); the plots from
``darnet_pl.report.plots``.

A label set without some class (e.g. NCP and Normal only, as in MosMedData) gets every metric that is defined;
the undefined ones are NaN (``null`` in the JSON files) and one note, ``darnet_pl.metrics``' own
``UndefinedMetricWarning`` message, says which and why.

Files in ``--out`` (refused when it is not empty, unless ``--overwrite``), all written together at the end
(``publish_files``: all of them, or on a full disk or an interrupt none):

- ``predictions.csv``, ``predictions.json``, ``errors.csv`` and with patient ids ``patient_predictions.csv``: as
  ``darnet-predict`` writes them (``darnet_pl.inference.outputs``), with the ``label`` column;
- ``metrics.json``: every metric (``2class/*``, ``3class/*``, per class), its bootstrap interval (``ci``), the
  confusion matrix, the class support, calibration (Brier, ECE, ``darnet_pl.stats``), notes;
  with patient ids also ``patient_level``: the same on patient level (``patient/*``, a patient's probabilities
  the mean of their scans', as ``darnet-report`` computes it);
- ``roc.png``, ``confusion.png``, ``reliability.png``;
- ``summary.json``: what was evaluated (checkpoints, list, TTA, temperatures), the scan counts, the headline
  metrics with their intervals, the files and the notes.

Unreadable scans are listed in ``errors.csv`` and the metrics are over the others (exit 3, see ``cli.evaluate``).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from darnet_pl.inference.outputs import render_outputs
from darnet_pl.inference.predict import (
    ModelEnsemble,
    ScanInput,
    ScanResult,
    UsageError,
    check_out_dir,
    load_ensemble,
    predict,
    read_scan_csv,
    scan_inputs,
)
from darnet_pl.report import plots
from darnet_pl.runs.jobs import ModelSet
from darnet_pl.stats import calibration as calibration_of
from darnet_pl.stats import paper_metrics, patient_bootstrap, patient_results
from darnet_pl.utils.file_kinds import not_regular
from darnet_pl.utils.io import check_writable, output_folder, publish_files

METRICS_JSON = "metrics.json"
SUMMARY_JSON = "summary.json"
FIGURES = ("roc.png", "confusion.png", "reliability.png")
OUTPUT_FILES = ("predictions.json", "predictions.csv", "patient_predictions.csv", "errors.csv", METRICS_JSON,
                *FIGURES, SUMMARY_JSON)  # fmt: skip
HEADLINE = ("2class/auc", "2class/accuracy", "2class/sensitivity", "2class/specificity", "2class/f1", "auc_macro",
            "accuracy", "f1_macro")  # fmt: skip
"""The metrics the summary (and the command's output) shows; bare names are of the K-class block."""
RELIABILITY_BINS = 15
"""Confidence bins of the reliability diagram when the calibration does not say (the report's ECE uses 15)."""


@dataclass
class Evaluation:
    """What ``evaluate`` wrote and found."""

    out: Path
    n_listed: int
    n_failed: int
    summary: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- inputs


def labelled_scans(csv_path: Path) -> list[ScanInput]:
    """The scans of a ``path,label[,patient_id]`` list, read as ``darnet-predict`` reads a list."""
    if csv_path.is_dir():
        raise UsageError(f"{csv_path}: --scans is a folder; give a CSV list with the columns path and label")
    if (cause := not_regular(csv_path)) is not None:
        raise UsageError(f"{csv_path}: --scans is {cause}")
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path}: --scans not found")
    return scan_inputs(read_scan_csv(csv_path, required=("path", "label")))


def check_labels(csv_path: Path, scans: Sequence[ScanInput], class_names: Sequence[str]) -> None:
    """Every label is a class name of the checkpoint; otherwise one line naming the list's line."""
    for scan in scans:
        if not scan.label:
            raise UsageError(f"{csv_path}, line {scan.line}: empty label")
        if scan.label not in class_names:
            raise UsageError(
                f"{csv_path}, line {scan.line}: label {scan.label!r} is not a class of the checkpoint "
                f"({', '.join(class_names)})"
            )


# ---------------------------------------------------------------------------------------------- numbers


def patient_block(
    probs: np.ndarray,
    labels: np.ndarray,
    patient_ids: np.ndarray,
    class_names: Sequence[str],
    positive: str,
    n_bootstrap: int,
    seed: int,
    notes: list[str],
) -> dict[str, Any] | None:
    """``metrics.json``'s patient level, as the report computes it: a patient's probabilities are the mean of their
    scans' (``stats.patient_results``), each patient one sample of the metrics, bootstrap and calibration.
    None, and a note, when a patient's scans carry two labels."""
    try:
        patients = patient_results(patient_ids, labels, probs, class_names, positive, n_bootstrap, seed)
    except ValueError as error:
        notes.append(f"no patient-level metrics: {error}")
        return None
    intervals = patients.bootstrap.intervals if patients.bootstrap is not None else {}
    return {
        "unit": "patient (mean of the patient's scans' probabilities)",
        "n_patients": patients.n_patients,
        "support": {name: int((patients.labels == c).sum()) for c, name in enumerate(class_names)},
        "metrics": patients.metrics,
        "ci": {name: list(v) for name, v in intervals.items()},
        "calibration": calibration_of(patients.probs, patients.labels).as_dict(),
    }


def finite_or_none(value: Any) -> Any:
    """JSON has no NaN: an undefined number becomes null."""
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value


def _json_bytes(payload: Any) -> bytes:
    return (json.dumps(finite_or_none(payload), indent=2, sort_keys=True, default=str) + "\n").encode()


# ---------------------------------------------------------------------------------------------- figures


def _png(draw: Callable[..., None], *args: Any, **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    draw(buffer, *args, **kwargs)
    return buffer.getvalue()


def model_name(path: str) -> str:
    """A checkpoint's name in a legend: its job folder (``fold3``) or its file name."""
    file = Path(path)
    return file.parent.parent.name if file.parent.name == "checkpoints" else file.stem


def figures(
    ensemble: ModelEnsemble,
    probs: np.ndarray,
    per_model: np.ndarray,
    labels: np.ndarray,
    title: str,
    positive_class: str,
    calibration: dict[str, Any] | None,
) -> dict[str, bytes]:
    """ROC (each model thin, the ensemble thick), confusion matrices and the reliability diagram, as PNG bytes."""
    names, k, m = ensemble.class_names, len(ensemble.class_names), len(ensemble.models)
    single = m == 1
    models = [] if single else [plots.Curves(model_name(meta.path), per_model[i], labels)
                                for i, meta in enumerate(ensemble.metadata)]  # fmt: skip
    main = plots.Curves("model" if single else f"ensemble of {m}", probs, labels)
    # every model saw the same scans: one matrix per model (a sum would count each scan once per model)
    per_model_matrices = [(curve.name, plots.confusion_matrix(labels, curve.probs, k)) for curve in models]
    matrix = plots.confusion_matrix(labels, probs, k)
    out = {"roc.png": _png(plots.plot_roc, title, models, main, names, positive_class)}
    out["confusion.png"] = _png(plots.plot_confusion, title, names, matrix, per_model_matrices, ensemble_name=main.name)
    calibration = calibration or {}
    panel = plots.Reliability("scans", probs, labels, ece=calibration.get("ece"), brier=calibration.get("brier"))
    n_bins = int(calibration.get("n_bins", RELIABILITY_BINS))
    out["reliability.png"] = _png(plots.plot_reliability, title, [panel], n_bins=n_bins)
    return out


# ---------------------------------------------------------------------------------------------- evaluating


def evaluate(
    ckpts: Sequence[str] | ModelSet,
    scans_csv: Path,
    out: Path,
    *,
    device: torch.device,
    tta: bool = False,
    n_bootstrap: int = 1000,
    seed: int = 0,
    positive_class: str = "NCP",
    batch_size: int = 4,
    overwrite: bool = False,
    progress: bool | None = None,
) -> Evaluation:
    """Predict the list's scans, compute the metrics and write every file together; user errors are ValueErrors
    (``UsageError``), ``FileNotFoundError`` or ``StorageError``, one line each, raised before anything is written."""
    if n_bootstrap < 0:
        raise UsageError(f"--bootstrap {n_bootstrap}: must be 0 or more")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be positive, got {batch_size}")
    scans = labelled_scans(scans_csv)
    check_out_dir(out, overwrite, resume=False, resumable=False)  # before the slow part; again once it is ours
    ensemble = load_ensemble(ckpts, device, tta=tta)
    if positive_class not in ensemble.class_names:
        raise UsageError(f"--positive-class {positive_class!r} is not one of {list(ensemble.class_names)}")
    check_labels(scans_csv, scans, ensemble.class_names)
    with output_folder(out, "darnet-evaluate"):
        check_out_dir(out, overwrite, resume=False, resumable=False)
        check_writable(out)
        results = predict(ensemble, scans, out, device=device, batch_size=batch_size, progress=progress)
        contents, evaluation = _contents(ensemble, results, scans_csv, out, n_bootstrap, seed, positive_class)
        for stale in set(OUTPUT_FILES) - set(contents):  # an --overwrite'n evaluation's files this one has not
            (out / stale).unlink(missing_ok=True)
        evaluation.files = publish_files(out, contents, "the evaluation")
    return evaluation


def _contents(
    ensemble: ModelEnsemble,
    results: Sequence[ScanResult],
    scans_csv: Path,
    out: Path,
    n_bootstrap: int,
    seed: int,
    positive: str,
) -> tuple[dict[str, bytes], Evaluation]:
    names = ensemble.class_names
    done = [r for r in results if r.error is None]
    failed = len(results) - len(done)
    contents = render_outputs(ensemble, results, cam_method=None)
    notes = []
    if failed and done:
        notes.append(f"{failed} of {len(results)} scan(s) could not be read (errors.csv): the metrics are over the "
                     f"{len(done)} others")  # fmt: skip
    elif failed:
        notes.append("no scan could be read (errors.csv): no metrics")
    values: dict[str, float] = {}
    intervals: dict[str, tuple[float, float]] = {}
    n_patients = 0
    if done:
        probs = np.stack([r.probabilities for r in done]).astype(np.float64)
        per_model = np.stack([r.per_model for r in done], axis=1).astype(np.float64)  # (M, N, K)
        labels = np.array([names.index(str(r.scan.label)) for r in done], dtype=np.int64)
        with_patients = all(r.scan.patient_id is not None for r in done)
        patient_ids = np.array([(r.scan.patient_id if with_patients else r.scan.name) for r in done], dtype=str)
        n_patients = len(np.unique(patient_ids))
        if not with_patients:
            notes.append("the list has no patient_id column: the bootstrap resamples scans, each as its own patient "
                         "(intervals too narrow where a patient has several scans)")  # fmt: skip
        values = paper_metrics(probs, labels, names, positive, notes=notes)
        boot = None
        if n_bootstrap > 0:
            boot = patient_bootstrap(probs, labels, patient_ids, names, positive, n_resamples=n_bootstrap, seed=seed)
            intervals = boot.intervals
        calibration = calibration_of(probs, labels).as_dict()
        matrix = plots.confusion_matrix(labels, probs, len(names)).tolist()
        bootstrap = None
        if boot is not None:
            bootstrap = {"resamples": boot.n_resamples, "seed": boot.seed, "level": boot.level, "unit": "patient",
                         "method": "percentile", "n_patients": boot.n_patients, "n_valid": boot.n_valid}  # fmt: skip
        payload = {
            "unit": "scan",
            "class_names": list(names),
            "positive_class": positive,
            "n_scans": len(done),
            "n_patients": n_patients,
            "resampling_unit": "patient_id" if with_patients else "scan (no patient_id column)",
            "support": {name: int((labels == c).sum()) for c, name in enumerate(names)},
            "confusion": {"rows": "true class", "columns": "predicted class", "matrix": matrix},
            "metrics": values,
            "ci": {name: list(v) for name, v in intervals.items()},
            "bootstrap": bootstrap,
            "calibration": calibration,
            "patient_level": patient_block(probs, labels, patient_ids, names, positive, n_bootstrap, seed, notes)
            if with_patients
            else None,
            "notes": notes,
        }
        contents[METRICS_JSON] = _json_bytes(payload)
        title = f"{scans_csv.name}, {len(done)} scans, {len(ensemble.models)} model(s)"
        contents.update(figures(ensemble, probs, per_model, labels, title, positive, calibration))
    block = f"{len(names)}class"
    headline = {}
    for name in HEADLINE if values else ():
        key = name if "/" in name else f"{block}/{name}"
        headline[key] = {"value": values[key], "ci": list(intervals[key]) if key in intervals else None}
    summary = {
        "tool": "darnet-evaluate",
        "created": dt.datetime.now().isoformat(timespec="seconds"),
        "scans_csv": str(scans_csv),
        "out": str(out),
        "checkpoints": [meta.path for meta in ensemble.metadata],
        **ensemble.provenance,  # experiment, jobs (and whether finished), left_out (with why): darnet_pl.runs.jobs
        "ensemble": "single model" if len(ensemble.models) == 1 else f"mean softmax of {len(ensemble.models)} models",
        "class_names": list(names),
        "positive_class": positive,
        "tta": ensemble.tta,
        "temperatures": ensemble.temperatures,
        "scans": {"listed": len(results), "predicted": len(done), "failed": failed},
        "patients": n_patients,
        "headline": headline,
        "files": sorted([*contents, SUMMARY_JSON]),
        "notes": notes,
    }
    contents[SUMMARY_JSON] = _json_bytes(summary)
    return contents, Evaluation(out, len(results), failed, summary, notes)

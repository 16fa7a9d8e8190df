"""``darnet-predict``'s output files, and reading them back for ``--resume``.

In the output folder, each file written atomically (``darnet-evaluate`` writes the same files, all together):

- ``predictions.csv``: ``scan,[patient_id,]path,[label,]predicted,prob_<class>...`` per readable scan
  (``patient_id`` and ``label`` when the CSV list has those columns);
- ``patient_predictions.csv`` (only when the scans have patient ids): ``patient_id,n_scans,predicted,
  prob_<class>...`` per patient, whose probabilities are the **mean of the probabilities of the patient's
  readable scans** (``n_scans`` of them) and whose prediction is their argmax;
- ``predictions.json``: the same with every model's probabilities, the checkpoints and their preprocessing, the
  models' softmax temperatures, whether test-time augmentation was on (``tta``), the patients, and which models
  these are (``experiment``; ``jobs``: each checkpoint's job and whether it had finished; ``left_out``: the jobs of
  the ``--ckpt`` folders not used, with why - still running, failed, interrupted; see ``darnet_pl.runs.jobs``);
- ``errors.csv``: ``scan,path,error`` per scan that could not be read (header only when none failed).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from darnet_pl.inference.predict import TTA_FLIPS, ModelEnsemble, ScanInput, ScanResult, UsageError
from darnet_pl.runs.layout import PREDICTIONS_FILE
from darnet_pl.runs.predictions import check_probability_row, prob_column
from darnet_pl.utils.csv_cells import csv_writer
from darnet_pl.utils.io import atomic_path, storage_guard

SAVE_INTERVAL_S = 5.0
"""The outputs are rewritten after the first batch and then at most this often (and at the end, and on Ctrl-C)."""
PATIENT_PREDICTIONS_FILE = "patient_predictions.csv"
PATIENT_AGGREGATION = "mean of the probabilities of the patient's readable scans; predicted = its argmax"
TTA_DESCRIPTION = "mean softmax over in-plane flips of (N, 1, D, H, W): " + ", ".join(
    "identity" if not dims else "flip " + "+".join("DHW"[d - 2] for d in dims) for dims in TTA_FLIPS
)


class Saver:
    """Writes the outputs after the first batch, then at most every ``interval`` seconds, and when the run ends.

    Each save rewrites the files atomically (a temporary file renamed over the old one), so on disk they always
    describe whole batches, whatever stops the run - Ctrl-C, a kill, a full disk, a power cut. Rewriting (rather
    than appending) keeps predictions.csv a plain, always-complete CSV that is never torn; the interval bounds what
    rewriting costs on long runs (one rewrite per ``interval``, not per batch).
    """

    def __init__(self, out: Path, ensemble: ModelEnsemble, cam_method: str | None, cam_class: str | None,
                 interval: float = SAVE_INTERVAL_S) -> None:  # fmt: skip
        self.out, self.ensemble, self.cam_method, self.cam_class = out, ensemble, cam_method, cam_class
        self.interval = interval
        self.last: float | None = None
        self.saved: int | None = None  # results in the last save (they only ever grow)

    def __call__(self, results: Sequence[ScanResult], final: bool = False) -> None:
        now = time.monotonic()
        if len(results) == self.saved:
            return  # nothing new: a rewrite would only need disk space for a second copy
        if final or self.last is None or now - self.last >= self.interval:
            write_outputs(self.out, self.ensemble, results, self.cam_method, self.cam_class)
            self.last, self.saved = now, len(results)


def write_outputs(
    out: Path,
    ensemble: ModelEnsemble,
    results: Sequence[ScanResult],
    cam_method: str | None,
    cam_class: str | None = None,
) -> None:
    """The output files, each atomically; a full or read-only disk is one line.

    predictions.json is written first: it is what --resume reads, so it is never older than the CSV files.
    """
    with storage_guard(out, "the predictions"):
        for name, data in render_outputs(ensemble, results, cam_method, cam_class).items():
            with atomic_path(out / name) as tmp:
                tmp.write_bytes(data)


def patient_means(results: Sequence[ScanResult]) -> list[tuple[str, list[ScanResult], np.ndarray]]:
    """(patient id, its readable scans, the mean of their probabilities) per patient, in order of appearance."""
    by_patient: dict[str, list[ScanResult]] = {}
    for r in results:
        if r.error is None and r.scan.patient_id is not None:
            by_patient.setdefault(r.scan.patient_id, []).append(r)
    return [(pid, rs, np.mean([r.probabilities for r in rs], axis=0)) for pid, rs in by_patient.items()]


def _csv_bytes(rows: Sequence[Sequence[Any]]) -> bytes:
    buffer = io.StringIO(newline="")
    csv_writer(buffer).writerows(rows)  # formula-like ids and paths neutralised (utils.csv_cells)
    return buffer.getvalue().encode("utf-8")


def render_outputs(
    ensemble: ModelEnsemble, results: Sequence[ScanResult], cam_method: str | None, cam_class: str | None = None
) -> dict[str, bytes]:
    """The output files' contents by file name: predictions.json first, then the CSV tables."""
    names = ensemble.class_names
    done = [r for r in results if r.error is None]
    failed = [r for r in results if r.error is not None]
    with_patients = any(r.scan.patient_id is not None for r in results)
    with_labels = any(r.scan.label is not None for r in results)

    def probs(values: np.ndarray) -> dict[str, float]:
        return {name: float(p) for name, p in zip(names, values, strict=True)}

    def listed(scan: ScanInput) -> dict[str, Any]:
        return {k: v for k, v in (("patient_id", scan.patient_id), ("label", scan.label)) if v is not None}

    scans_json = []
    for r in done:
        entry: dict[str, Any] = {
            "scan": r.scan.name,
            "path": str(r.scan.path),
            **listed(r.scan),
            "predicted": names[int(np.argmax(r.probabilities))],
            "probabilities": probs(r.probabilities),
            "per_model": [
                {"checkpoint": meta.path, "probabilities": probs(values)}
                for meta, values in zip(ensemble.metadata, r.per_model, strict=True)
            ],
        }
        if r.cam_dir is not None:
            entry.update(cam_dir=r.cam_dir, **r.extra)
        scans_json.append(entry)
    patients = patient_means(results) if with_patients else []
    first = ensemble.metadata[0]
    payload = {
        "created": dt.datetime.now().isoformat(timespec="seconds"),
        "class_names": list(names),
        "input_size": list(first.input_size),
        "preprocessing": first.preprocessing,
        "preprocessing_origin": first.preprocessing_origin,
        "ensemble": "mean of softmax" if len(ensemble.models) > 1 else "single model",
        "temperatures": ensemble.temperatures,
        "tta": ensemble.tta,
        "tta_views": TTA_DESCRIPTION if ensemble.tta else None,
        "cam_method": cam_method,
        "cam_class": cam_class,
        "checkpoints": [meta.to_dict() for meta in ensemble.metadata],
        **ensemble.provenance,  # experiment, jobs (and whether finished), left_out (with why)
        "scans": scans_json,
        "errors": [{"scan": r.scan.name, "path": str(r.scan.path), "error": r.error} for r in failed],
    }
    if with_patients:
        payload["patient_aggregation"] = PATIENT_AGGREGATION
        payload["patients"] = [
            {"patient_id": pid, "scans": [r.scan.name for r in rs], "predicted": names[int(np.argmax(mean))],
             "probabilities": probs(mean)}
            for pid, rs, mean in patients
        ]  # fmt: skip
    files = {"predictions.json": (json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n").encode()}
    header = ["scan", *(["patient_id"] if with_patients else []), "path", *(["label"] if with_labels else [])]
    table = [[*header, "predicted", *(prob_column(n) for n in names)]]
    for r in done:
        p = r.probabilities
        row = [r.scan.name, *([r.scan.patient_id or ""] if with_patients else []), str(r.scan.path)]
        row += [r.scan.label or ""] if with_labels else []
        table.append([*row, names[int(np.argmax(p))], *(f"{v:.6f}" for v in p)])
    files[PREDICTIONS_FILE] = _csv_bytes(table)
    if with_patients:
        table = [["patient_id", "n_scans", "predicted", *(prob_column(n) for n in names)]]
        for pid, rs, mean in patients:
            table.append([pid, len(rs), names[int(np.argmax(mean))], *(f"{v:.6f}" for v in mean)])
        files[PATIENT_PREDICTIONS_FILE] = _csv_bytes(table)
    files["errors.csv"] = _csv_bytes([["scan", "path", "error"], *([r.scan.name, str(r.scan.path), r.error]
                                                                   for r in failed)])  # fmt: skip
    return files


# ---------------------------------------------------------------------------------------------- resume


def earlier_results(out: Path, ensemble: ModelEnsemble, scans: Sequence[ScanInput], cam_method: str | None,
                    cam_class: str | None) -> dict[str, ScanResult]:  # fmt: skip
    """The scans an earlier, interrupted run in ``out`` predicted (``--resume``), read back from predictions.json.

    Only a run with the same checkpoints, temperatures, test-time augmentation and CAM settings is continued:
    mixing two ensembles in one table would be wrong without any sign of it. Scans that failed are tried again
    (their file may have been fixed). A file written before temperatures and ``--tta`` existed counts as
    temperature 1, no TTA.
    """
    path = out / "predictions.json"
    if not path.is_file():
        if out.is_dir() and any(out.iterdir()):
            raise UsageError(f"{out}: nothing to resume (no predictions.json); use another --out, or --overwrite")
        return {}
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        previous = [str(c["path"]) for c in payload["checkpoints"]]
        settings = (payload["cam_method"], payload.get("cam_class"))
        tta = bool(payload.get("tta", False))
        temperatures = [float(t) for t in payload.get("temperatures", [1.0] * len(previous))]
        entries = list(payload["scans"])
    except (ValueError, KeyError, TypeError, OSError) as error:
        raise UsageError(f"{path}: cannot resume from it ({type(error).__name__}: {error})") from None
    now = [str(meta.path) for meta in ensemble.metadata]
    if previous != now:
        raise UsageError(
            f"{path}: predicted with other checkpoints ({', '.join(previous)}); resume with the same --ckpt"
        )
    if temperatures != ensemble.temperatures:
        raise UsageError(
            f"{path}: predicted with temperatures {temperatures}, the checkpoints now have {ensemble.temperatures}; "
            "use another --out"
        )
    if tta != ensemble.tta:
        before, after = ("with" if tta else "without"), ("with" if ensemble.tta else "without")
        raise UsageError(f"{path}: predicted {before} --tta, now {after} it; resume with the same --tta option")
    if settings != (cam_method, cam_class):
        before, after = _cam_options(*settings), _cam_options(cam_method, cam_class)
        raise UsageError(f"{path}: predicted with {before}, now with {after}; resume with the same CAM options")
    inputs = {scan.name: scan for scan in scans}
    results = {}
    for entry in entries:
        try:
            result = _result_from_json(entry, ensemble.class_names)
        except (KeyError, TypeError, ValueError) as error:
            raise UsageError(f"{path}: a damaged scan entry ({type(error).__name__}: {error})") from None
        scan = inputs.get(result.scan.name)
        if scan is not None and scan.path != result.scan.path:
            raise UsageError(
                f"{path}: scan {scan.name!r} was predicted from {result.scan.path}, now given as {scan.path}; "
                "use another --out"
            )
        if scan is not None:
            result.scan = scan  # patient id and label as listed now
        results[result.scan.name] = result
    return results


def _cam_options(method: str | None, class_name: str | None) -> str:
    if method is None:
        return "no --cam"
    return f"--cam --cam-method {method}" + (f" --cam-class {class_name}" if class_name else "")


def _result_from_json(entry: dict[str, Any], names: Sequence[str]) -> ScanResult:
    patient_id, label = entry.get("patient_id"), entry.get("label")
    scan = ScanInput(str(entry["scan"]), Path(entry["path"]), None if patient_id is None else str(patient_id),
                     None if label is None else str(label))  # fmt: skip
    result = ScanResult(scan)
    result.probabilities = np.array([float(entry["probabilities"][n]) for n in names], dtype=np.float32)
    result.per_model = np.array(
        [[float(m["probabilities"][n]) for n in names] for m in entry["per_model"]], dtype=np.float32
    )
    for values in (result.probabilities, *result.per_model):
        check_probability_row(values.tolist(), names, f"scan {scan.name!r}")
    if "cam_dir" in entry:
        result.cam_dir = str(entry["cam_dir"])
        result.extra["cam_class"] = entry.get("cam_class")
    return result

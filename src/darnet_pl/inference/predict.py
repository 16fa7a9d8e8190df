"""``darnet-predict``: classify chest CT scans with one trained checkpoint or an ensemble of several.

    darnet-predict --ckpt RUN_OR_SWEEP_DIR_OR_CKPT [--ckpt ...] [--cam] [--out DIR] scan.nii.gz dicom_dir/ list.csv


Scans are NIfTI files, DICOM series folders, slice-image folders, or CSV files listing them (column ``path``,
relative to the CSV). Each scan goes through exactly the preprocessing stored in the checkpoint (crop, window,
resampling; see ``darnet_pl.runs.checkpoints``), never one re-typed on the command line. With several checkpoints
(files, or run/sweep folders whose jobs each contribute their best checkpoint) the softmax outputs are averaged;
the checkpoints must agree on classes, input size and preprocessing.

Outputs (each file written atomically) in ``--out`` (default ``./darnet-predictions/<timestamp>``, refused when it
exists and is not empty, unless ``--overwrite`` or ``--resume``), rewritten as the run goes (after the first batch,
then every few seconds) so that they always hold every finished batch:

- ``predictions.csv``: ``scan,path,predicted,prob_<class>...`` per readable scan;
- ``predictions.json``: the same with every model's probabilities, the checkpoints and their preprocessing;
- ``errors.csv``: ``scan,path,error`` per scan that could not be read (header only when none failed);
- with ``--cam``: ``cam/<scan>/`` holding ``montage.png`` (heat map over axial slices), ``cam.nii.gz`` and
  ``volume.nii.gz`` (map and model input on the model grid, see ``darnet_pl.explain.nifti``), and for models with
  depth attention ``depth_attention.png`` / ``.csv`` (the per-slice DA curve).

A scan that cannot be read is reported on one line (``error: <path>: <cause>``) and listed in ``errors.csv``; the
other scans are still predicted. Exit codes: 0 all scans predicted, 3 some scans failed, 2 usage or user errors
(missing or unusable checkpoint, disagreeing checkpoints, an out folder in the way, a CSV without ``path``, an
output that cannot be written), 130/143 stopped by Ctrl-C/SIGTERM: the finished scans are kept and one line gives
the command that continues (the same one with ``--resume``, which predicts only the scans not yet done).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import logging
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from darnet_pl.data.preprocess import Preprocessing
from darnet_pl.data.readers.scans import NIFTI_SUFFIXES, ScanError, load_volume
from darnet_pl.data.records import ScanRecord
from darnet_pl.explain.cam import depth_attention_weights, explain, has_depth_attention, normalise
from darnet_pl.models import DARNet
from darnet_pl.runs.checkpoints import CheckpointMetadata, load_for_inference, resolve_checkpoints
from darnet_pl.runs.layout import PREDICTIONS_FILE
from darnet_pl.runs.predictions import prob_column
from darnet_pl.utils.io import (
    atomic_path,
    storage_guard,
    write_json_atomic,
)
from darnet_pl.utils.text import safe_name

log = logging.getLogger(__name__)

DEFAULT_OUT_ROOT = "darnet-predictions"
SAVE_INTERVAL_S = 5.0
"""The outputs are rewritten after the first batch and then at most this often (and at the end, and on Ctrl-C)."""


class UsageError(ValueError):
    """A command line that cannot run as given (exit code 2)."""


@dataclass(frozen=True)
class ScanInput:
    """One scan to predict: a unique, file-name-safe name and its path."""

    name: str
    path: Path


@dataclass
class ScanResult:
    scan: ScanInput
    probabilities: np.ndarray | None = None  # (K,) ensemble mean
    per_model: np.ndarray | None = None  # (M, K)
    error: str | None = None
    cam_dir: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- inputs


def _stem(path: Path) -> str:
    name = path.name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_scan_csv(csv_path: Path) -> list[tuple[str | None, Path]]:
    """(scan_id or None, path) rows of a CSV with a ``path`` column; relative paths are relative to the CSV.

    Every way a list can be unusable (not UTF-8, not CSV, no ``path`` column, no rows) is one line naming the file:
    a list that silently contributed no scans would look like a run that predicted everything.
    """
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            try:
                rows = _scan_rows(csv_path, reader)
            except csv.Error as error:
                raise UsageError(f"{csv_path}, line {reader.line_num}: not a readable CSV ({error})") from None
    except UnicodeDecodeError as error:
        byte = error.object[error.start : error.start + 1].hex()
        raise UsageError(f"{csv_path}: not UTF-8 text (byte 0x{byte} cannot be decoded); save it as UTF-8") from None
    if not rows:
        raise UsageError(f"{csv_path}: lists no scans (a header and no rows)")
    return rows


def _scan_rows(csv_path: Path, reader: csv.DictReader) -> list[tuple[str | None, Path]]:
    columns = [c.strip() for c in reader.fieldnames or []]
    if "path" not in columns:
        raise UsageError(f"{csv_path}: no 'path' column (columns: {', '.join(columns) or 'none'})")
    rows = []
    for row in reader:
        line = reader.line_num
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if isinstance(v, str | None)}
        if not row.get("path"):
            raise UsageError(f"{csv_path}, line {line}: empty path")
        if "\0" in row["path"]:
            raise UsageError(f"{csv_path}, line {line}: the path holds a NUL byte")
        path = Path(row["path"]).expanduser()
        rows.append((row.get("scan_id") or None, path if path.is_absolute() else csv_path.parent / path))
    return rows


def expand_inputs(items: Sequence[str]) -> list[ScanInput]:
    """Scans from the positional arguments (CSV lists expanded), each with a unique name."""
    entries: list[tuple[str | None, Path]] = []
    for item in items:
        path = Path(item).expanduser()
        if path.suffix.lower() == ".csv" and path.is_file():
            entries.extend(read_scan_csv(path))
        else:
            entries.append((None, path))
    if not entries:
        raise UsageError("no scans to predict: give NIfTI files, DICOM or slice folders, or CSV lists")
    used: dict[str, int] = {}
    scans = []
    for scan_id, path in entries:
        base = safe_name(scan_id or _stem(path)).strip(".") or "scan"
        count = used.get(base, 0) + 1
        used[base] = count
        scans.append(ScanInput(base if count == 1 else f"{base}-{count}", path))
    return scans


def load_scan(scan: ScanInput, prep: Preprocessing) -> np.ndarray:
    """The uint8 (D, H, W) model input of one scan; ``ScanError`` (one line) when it cannot be read."""
    record = ScanRecord(class_name="", patient_id="", scan_id=scan.name, path=str(scan.path))
    try:
        return load_volume(record, prep)
    except ScanError:
        raise
    except MemoryError:
        raise ScanError(scan.path, "out of memory while reading") from None
    except Exception as exc:  # a damaged file may fail anywhere in a third-party reader: report, go on
        raise ScanError(scan.path, f"unreadable ({type(exc).__name__}: {exc})") from None


# ---------------------------------------------------------------------------------------------- models


@dataclass
class ModelEnsemble:
    """Models that agree on classes, input size and preprocessing; their softmax outputs are averaged."""

    models: list[DARNet]
    metadata: list[CheckpointMetadata]

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.metadata[0].class_names

    @property
    def preprocessing(self) -> Preprocessing:
        return self.metadata[0].preprocessing_settings()

    @torch.inference_mode()
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """(M, N, K) softmax of every model."""
        return torch.stack([model(x).float().softmax(dim=1) for model in self.models])


def check_agreement(metadata: Sequence[CheckpointMetadata]) -> None:
    """Refuse an ensemble whose members would need different inputs or label different classes."""
    first = metadata[0]
    for other in metadata[1:]:
        for what, a, b in (
            ("classes", list(first.class_names), list(other.class_names)),
            ("input size", list(first.input_size), list(other.input_size)),
            ("preprocessing", first.preprocessing, other.preprocessing),
        ):
            if a != b:
                raise UsageError(f"checkpoints disagree on the {what}: {first.path} has {a}, {other.path} has {b}")


def load_ensemble(paths: Sequence[str], device: torch.device) -> ModelEnsemble:
    files = resolve_checkpoints(paths)
    loaded = [load_for_inference(path, map_location=device) for path in files]
    metadata = [meta for _, meta in loaded]
    check_agreement(metadata)
    for meta in metadata:
        if meta.preprocessing_origin == "default":
            log.warning("%s stores no preprocessing: using the defaults %s", meta.path, meta.preprocessing)
    return ModelEnsemble([model for model, _ in loaded], metadata)


# ---------------------------------------------------------------------------------------------- CAM


def write_explanations(
    ensemble: ModelEnsemble,
    x: torch.Tensor,
    volumes: Sequence[np.ndarray],
    results: Sequence[ScanResult],
    out: Path,
    method: str,
    class_index: int | None,
    n_slices: int,
) -> None:
    """CAM montage, NIfTI pair and DA curve of a batch, maps averaged over the ensemble's models."""
    from darnet_pl.explain.nifti import write_model_grid_pair
    from darnet_pl.explain.overlay import save_depth_curve, save_montage

    mean = torch.stack([torch.as_tensor(r.probabilities) for r in results])
    target = mean.argmax(dim=1) if class_index is None else torch.full((len(results),), class_index)
    maps = normalise(torch.stack([explain(m, x, method, target).maps.cpu() for m in ensemble.models]).mean(dim=0))
    with_da = [m for m in ensemble.models if has_depth_attention(m)]
    curves = torch.stack([depth_attention_weights(m, x).cpu() for m in with_da]).mean(dim=0) if with_da else None
    prep = ensemble.preprocessing
    names = ensemble.class_names
    for i, result in enumerate(results):
        folder = out / "cam" / result.scan.name
        probabilities = {name: float(p) for name, p in zip(names, result.probabilities, strict=True)}
        predicted = names[int(np.argmax(result.probabilities))]
        title = f"{result.scan.name}: predicted {predicted}; {method.upper()} for {names[int(target[i])]}"
        heat = maps[i].numpy()
        with storage_guard(folder, "the CAM output"):  # names the file being written (atomic_path sets it)
            save_montage(folder / "montage.png", volumes[i], heat, title=title, probabilities=probabilities,
                         n_slices=n_slices)  # fmt: skip
            write_model_grid_pair(folder, volumes[i], heat, prep, source=result.scan.path)
            if curves is not None:
                curve = curves[i].numpy()
                title = f"{result.scan.name}: depth attention (mean of {len(with_da)} model(s), all DA modules)"
                save_depth_curve(folder / "depth_attention.png", curve, title=title)
                with atomic_path(folder / "depth_attention.csv") as tmp:
                    lines = ["slice,weight"] + [f"{k},{w:.6f}" for k, w in enumerate(curve.tolist())]
                    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        result.cam_dir = str(Path("cam") / result.scan.name)
        result.extra["cam_class"] = names[int(target[i])]


# ---------------------------------------------------------------------------------------------- running


def batches(items: Sequence[ScanInput], size: int) -> Iterator[list[ScanInput]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def out_dir(out: str | None) -> Path:
    """``--out``, or ``./darnet-predictions/<timestamp>``."""
    if out is None:
        return Path(DEFAULT_OUT_ROOT) / dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    return Path(out).expanduser()


def check_out_dir(path: Path, overwrite: bool, resume: bool) -> None:
    """An existing non-empty output folder only with ``--overwrite`` (start again) or ``--resume`` (continue)."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path}: --out exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not (overwrite or resume):
        raise UsageError(
            f"{path}: the output folder exists and is not empty (pass --resume to continue an interrupted run in it, "
            "or --overwrite to write into it)"
        )


def pick_device(name: str | None) -> torch.device:
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: CUDA is not available here (use --device cpu)")
    return torch.device(name)


@dataclass
class Progress:
    """The scans finished so far (predicted or failed), by name: what is written out, and what a resume skips."""

    scans: Sequence[ScanInput]
    finished: dict[str, ScanResult] = field(default_factory=dict)

    def todo(self) -> list[ScanInput]:
        return [scan for scan in self.scans if scan.name not in self.finished]

    def results(self) -> list[ScanResult]:
        """Finished results in input order; those of an earlier run that are not among the inputs follow."""
        names = {scan.name for scan in self.scans}
        ordered = [self.finished[scan.name] for scan in self.scans if scan.name in self.finished]
        return ordered + [r for name, r in self.finished.items() if name not in names]


def remove_cam_folders(out: Path, scans: Sequence[ScanInput]) -> None:
    """The CAM folders of a batch that did not finish: half a set of maps is not kept (a resume redoes them)."""
    for scan in scans:
        shutil.rmtree(out / "cam" / scan.name, ignore_errors=True)
    with contextlib.suppress(OSError):
        (out / "cam").rmdir()  # only when empty


def predict(
    ensemble: ModelEnsemble,
    scans: Sequence[ScanInput],
    out: Path,
    *,
    device: torch.device,
    batch_size: int = 4,
    cam_method: str | None = None,
    cam_class: int | None = None,
    cam_slices: int = 12,
    progress: bool | None = None,
    done: Progress | None = None,
    after_batch: Callable[[list[ScanResult]], None] | None = None,
) -> list[ScanResult]:
    """Predict every scan not yet in ``done`` (and explain it when ``cam_method`` is set).

    Unreadable scans become per-scan errors. A batch counts only once complete: then its results go into
    ``done`` and ``after_batch`` gets all finished results (to save them). A batch that stops half-way (Ctrl-C, a
    full disk) leaves nothing: its CAM folders are removed.
    """
    from tqdm import tqdm

    done = done if done is not None else Progress(scans)
    prep = ensemble.preprocessing
    todo = done.todo()
    disable = None if progress is None else not progress  # None: a bar only on a terminal
    bar = tqdm(total=len(todo), desc="predict", unit="scan", disable=disable)
    try:
        for batch in batches(todo, batch_size):
            try:
                finished = _predict_batch(ensemble, batch, out, device, prep, cam_method, cam_class, cam_slices, bar)
            except BaseException:
                if cam_method is not None:
                    remove_cam_folders(out, batch)
                raise
            done.finished.update((result.scan.name, result) for result in finished)
            if after_batch is not None:
                after_batch(done.results())
    finally:
        bar.close()
    return done.results()


def _predict_batch(
    ensemble: ModelEnsemble,
    batch: Sequence[ScanInput],
    out: Path,
    device: torch.device,
    prep: Preprocessing,
    cam_method: str | None,
    cam_class: int | None,
    cam_slices: int,
    bar: Any,
) -> list[ScanResult]:
    from tqdm import tqdm

    results = []
    loaded: list[tuple[ScanResult, np.ndarray]] = []
    for scan in batch:
        result = ScanResult(scan)
        results.append(result)
        try:
            loaded.append((result, load_scan(scan, prep)))
        except ScanError as error:
            result.error = error.cause
            tqdm.write(f"error: {scan.path}: {error.cause}", file=sys.stderr)
        bar.update(1)
    if not loaded:
        return results
    volumes = [volume for _, volume in loaded]
    x = torch.from_numpy(np.stack(volumes)).to(device=device, dtype=torch.float32).div_(255.0)[:, None]
    per_model = ensemble.probabilities(x).cpu().numpy()  # (M, N, K)
    for i, (result, _) in enumerate(loaded):
        result.per_model = per_model[:, i]
        result.probabilities = per_model[:, i].mean(axis=0)
    if cam_method is not None:
        ok = [result for result, _ in loaded]
        write_explanations(ensemble, x, volumes, ok, out, cam_method, cam_class, cam_slices)
    return results


class Saver:
    """Writes the outputs after the first batch, then at most every ``interval`` seconds, and when the run ends.

    Each save rewrites the three files atomically (a temporary file renamed over the old one), so on disk they
    always describe whole batches, whatever stops the run - Ctrl-C, a kill, a full disk, a power cut. Rewriting
    (rather than appending) keeps predictions.csv a plain, always-complete CSV that is never torn; the interval
    bounds what rewriting costs on long runs (one rewrite per ``interval``, not per batch).
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
    """predictions.csv, predictions.json and errors.csv, each atomically; a full or read-only disk is one line."""
    with storage_guard(out, "the predictions"):
        _write_outputs(out, ensemble, results, cam_method, cam_class)


def _write_outputs(
    out: Path, ensemble: ModelEnsemble, results: Sequence[ScanResult], cam_method: str | None, cam_class: str | None
) -> None:
    names = ensemble.class_names
    done = [r for r in results if r.error is None]
    failed = [r for r in results if r.error is not None]

    def probs(values: np.ndarray) -> dict[str, float]:
        return {name: float(p) for name, p in zip(names, values, strict=True)}

    scans_json = []
    for r in done:
        entry: dict[str, Any] = {
            "scan": r.scan.name,
            "path": str(r.scan.path),
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
    first = ensemble.metadata[0]
    payload = {
        "created": dt.datetime.now().isoformat(timespec="seconds"),
        "class_names": list(names),
        "input_size": list(first.input_size),
        "preprocessing": first.preprocessing,
        "preprocessing_origin": first.preprocessing_origin,
        "ensemble": "mean of softmax" if len(ensemble.models) > 1 else "single model",
        "cam_method": cam_method,
        "cam_class": cam_class,
        "checkpoints": [meta.to_dict() for meta in ensemble.metadata],
        "scans": scans_json,
        "errors": [{"scan": r.scan.name, "path": str(r.scan.path), "error": r.error} for r in failed],
    }
    # predictions.json first: it is what --resume reads, so it is never older than the CSV files
    write_json_atomic(out / "predictions.json", payload)
    with atomic_path(out / PREDICTIONS_FILE) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["scan", "path", "predicted", *(prob_column(n) for n in names)])
        for r in done:
            p = r.probabilities
            writer.writerow([r.scan.name, str(r.scan.path), names[int(np.argmax(p))], *(f"{v:.6f}" for v in p)])
    with atomic_path(out / "errors.csv") as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["scan", "path", "error"])
        writer.writerows([r.scan.name, str(r.scan.path), r.error] for r in failed)


# ---------------------------------------------------------------------------------------------- resume


def earlier_results(out: Path, ensemble: ModelEnsemble, scans: Sequence[ScanInput], cam_method: str | None,
                    cam_class: str | None) -> dict[str, ScanResult]:  # fmt: skip
    """The scans an earlier, interrupted run in ``out`` predicted (``--resume``), read back from predictions.json.

    Only a run with the same checkpoints and CAM settings is continued: mixing two ensembles in one table would
    be wrong without any sign of it. Scans that failed are tried again (their file may have been fixed).
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
        entries = list(payload["scans"])
    except (ValueError, KeyError, TypeError, OSError) as error:
        raise UsageError(f"{path}: cannot resume from it ({type(error).__name__}: {error})") from None
    now = [str(meta.path) for meta in ensemble.metadata]
    if previous != now:
        raise UsageError(
            f"{path}: predicted with other checkpoints ({', '.join(previous)}); resume with the same --ckpt"
        )
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
        results[result.scan.name] = result
    return results


def _cam_options(method: str | None, class_name: str | None) -> str:
    if method is None:
        return "no --cam"
    return f"--cam --cam-method {method}" + (f" --cam-class {class_name}" if class_name else "")


def _result_from_json(entry: dict[str, Any], names: Sequence[str]) -> ScanResult:
    result = ScanResult(ScanInput(str(entry["scan"]), Path(entry["path"])))
    result.probabilities = np.array([float(entry["probabilities"][n]) for n in names], dtype=np.float32)
    result.per_model = np.array(
        [[float(m["probabilities"][n]) for n in names] for m in entry["per_model"]], dtype=np.float32
    )
    if "cam_dir" in entry:
        result.cam_dir = str(entry["cam_dir"])
        result.extra["cam_class"] = entry.get("cam_class")
    return result

"""``darnet-predict``: classify chest CT scans with one trained checkpoint or an ensemble of several.

    darnet-predict --ckpt RUN_OR_SWEEP_DIR_OR_CKPT [--ckpt ...] [--tta] [--cam] [--out DIR] scan.nii.gz dicom/ list.csv


Scans are NIfTI files, DICOM series folders, slice-image folders, or CSV files listing them (column ``path``,
relative to the CSV; optional ``scan_id``, ``patient_id`` and ``label`` columns). Each scan goes through exactly
the preprocessing stored in the checkpoint (crop, window, resampling; see ``darnet_pl.runs.checkpoints``), never
one re-typed on the command line. With several checkpoints (files, or run/sweep folders whose jobs each contribute
their best checkpoint) the softmax outputs are averaged; the checkpoints must agree on classes, input size and
preprocessing.

Each model's probabilities are the softmax of its logits divided by its temperature (``temperature`` of the
checkpoint's metadata, fitted on validation; 1 when it has none). With ``--tta`` (test-time augmentation, off by
default) they are the mean of that softmax over the four in-plane flips of the input - identity, flip H, flip W,
flip H and W (axes 3 and 4 of the (N, 1, D, H, W) batch; the depth axis is never flipped) - and the ensemble then
averages the models as without. CAM maps always explain the unflipped input.

Outputs in ``--out`` (default ``./darnet-predictions/<timestamp>``, refused when it exists and is not empty, unless
``--overwrite`` or ``--resume``): see ``darnet_pl.inference.outputs`` (``predictions.csv``, ``predictions.json``,
``errors.csv`` and, when a CSV list has a ``patient_id`` column, ``patient_predictions.csv``), rewritten as the
run goes (after the first batch, then every few seconds) so that they always hold every finished batch; and
with ``--cam``: ``cam/<scan>/`` holding ``montage.png`` (heat map over axial slices), ``cam.nii.gz`` and
``volume.nii.gz`` (map and model input on the model grid, see ``darnet_pl.explain.nifti``), and for models with
depth attention ``depth_attention.png`` / ``.csv`` (the per-slice DA curve).

A scan that cannot be read is reported on one line (``error: <path>: <cause>``) and listed in ``errors.csv``; the
other scans are still predicted. Exit codes: 0 all scans predicted, 3 some scans failed, 2 usage or user errors
(missing or unusable checkpoint, disagreeing checkpoints, an out folder in the way, a CSV without ``path``, a
``--resume`` with other checkpoints, temperatures, ``--tta`` or CAM options, an output that cannot be written),
130/143 stopped by Ctrl-C/SIGTERM: the finished scans are kept and one line gives the command that continues (the
same one with ``--resume``, which predicts only the scans not yet done).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import logging
import math
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from darnet_pl.data.preprocess import Preprocessing
from darnet_pl.data.readers.load import load_volume
from darnet_pl.data.readers.scans import NIFTI_SUFFIXES, ScanError
from darnet_pl.data.records import ScanRecord
from darnet_pl.explain.cam import depth_attention_weights, explain, has_depth_attention, normalise
from darnet_pl.models import DARNet
from darnet_pl.runs.checkpoints import CheckpointMetadata, load_for_inference
from darnet_pl.runs.jobs import ModelSet, model_sets
from darnet_pl.utils.csv_cells import looks_like_formula, plain_cell
from darnet_pl.utils.io import atomic_path, storage_guard
from darnet_pl.utils.text import safe_name

log = logging.getLogger(__name__)

DEFAULT_OUT_ROOT = "darnet-predictions"


class UsageError(ValueError):
    """A command line that cannot run as given (exit code 2)."""


TTA_FLIPS: tuple[tuple[int, ...], ...] = ((), (3,), (4,), (3, 4))
"""The in-plane flips ``--tta`` averages over, as dims of the (N, 1, D, H, W) batch: identity, H, W, H and W."""


@dataclass(frozen=True)
class ScanInput:
    """One scan to predict: a unique, file-name-safe name, its path and what its CSV list says about it."""

    name: str
    path: Path
    patient_id: str | None = None  # the list's ``patient_id`` column, when it has one
    label: str | None = None  # the list's ``label`` column, when it has one (darnet-evaluate checks it)
    line: int | None = None  # the line of the CSV list it came from


@dataclass(frozen=True)
class ListedScan:
    """One row of a CSV scan list."""

    path: Path
    scan_id: str | None = None
    patient_id: str | None = None
    label: str | None = None
    line: int | None = None


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


def read_scan_csv(csv_path: Path, required: Sequence[str] = ("path",)) -> list[ListedScan]:
    """The rows of a CSV with a ``path`` column (and the ``required`` ones); relative paths are relative to the CSV.

    Optional columns: ``scan_id`` (the output name), ``patient_id`` (when the column is there, every row needs one)
    and ``label``. A scan id or path listed twice is refused (a scan counted twice would weigh twice in
    darnet-evaluate's metrics); ids that a spreadsheet would take for a formula get one note (the outputs neutralise
    them, ``darnet_pl.utils.csv_cells``). Every way a list can be unusable (not UTF-8, not CSV, a missing column, no
    rows, an empty path or patient id) is one line naming the file (and the line): a list that silently contributed
    no scans would look like a run that predicted everything.
    """
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            try:
                rows = _scan_rows(csv_path, reader, required)
            except csv.Error as error:
                raise UsageError(f"{csv_path}, line {reader.line_num}: not a readable CSV ({error})") from None
    except UnicodeDecodeError as error:
        byte = error.object[error.start : error.start + 1].hex()
        raise UsageError(f"{csv_path}: not UTF-8 text (byte 0x{byte} cannot be decoded); save it as UTF-8") from None
    if not rows:
        raise UsageError(f"{csv_path}: lists no scans (a header and no rows)")
    return rows


def _scan_rows(csv_path: Path, reader: csv.DictReader, required: Sequence[str]) -> list[ListedScan]:
    columns = [c.strip() for c in reader.fieldnames or []]
    for column in ("path", *required):
        if column not in columns:
            raise UsageError(f"{csv_path}: no '{column}' column (columns: {', '.join(columns) or 'none'})")
    with_patients = "patient_id" in columns
    rows = []
    first_line: dict[tuple[str, str], int] = {}  # (column, value) of the scan ids and paths seen, and where
    formulas = []
    for row in reader:
        line = reader.line_num
        row = {(k or "").strip(): plain_cell((v or "").strip()) for k, v in row.items() if isinstance(v, str | None)}
        if not row.get("path"):
            raise UsageError(f"{csv_path}, line {line}: empty path")
        if "\0" in row["path"]:
            raise UsageError(f"{csv_path}, line {line}: the path holds a NUL byte")
        if with_patients and not row.get("patient_id"):
            raise UsageError(
                f"{csv_path}, line {line}: empty patient_id (the list has the column: every row needs one)"
            )
        path = Path(row["path"]).expanduser()
        path = path if path.is_absolute() else csv_path.parent / path
        for column, value in (("scan_id", row.get("scan_id")), ("path", os.path.normpath(path))):
            if value and (column, value) in first_line:
                shown = f"scan_id {value!r}" if column == "scan_id" else row["path"]
                raise UsageError(
                    f"{csv_path}, line {line}: {shown} is also on line {first_line[column, value]}: list each scan once"
                )
            first_line[column, value] = line
        formulas += [
            (line, c, row[c]) for c in ("scan_id", "patient_id", "label") if looks_like_formula(row.get(c) or "")
        ]
        label = row.get("label") if "label" in columns else None
        rows.append(ListedScan(path, row.get("scan_id") or None, row.get("patient_id") or None, label, line))
    if formulas:
        line, column, value = formulas[0]
        more = f" (and {len(formulas) - 1} more)" if len(formulas) > 1 else ""
        print(
            f"note: {csv_path}, line {line}: {column} {value!r} starts like a spreadsheet formula{more}; the CSV "
            "outputs write such cells with a leading ' so that a spreadsheet shows them as text",
            file=sys.stderr,
        )
    return rows


def expand_inputs(items: Sequence[str]) -> list[ScanInput]:
    """Scans from the positional arguments (CSV lists expanded), each with a unique name."""
    entries: list[ListedScan] = []
    for item in items:
        path = Path(item).expanduser()
        if path.suffix.lower() == ".csv" and path.is_file():
            entries.extend(read_scan_csv(path))
        else:
            entries.append(ListedScan(path))
    if not entries:
        raise UsageError("no scans to predict: give NIfTI files, DICOM or slice folders, or CSV lists")
    return scan_inputs(entries)


def scan_inputs(entries: Sequence[ListedScan]) -> list[ScanInput]:
    """One ``ScanInput`` per entry, named by its ``scan_id`` or file name, made unique by a ``-2``, ``-3`` suffix."""
    used: dict[str, int] = {}
    scans = []
    for entry in entries:
        base = safe_name(entry.scan_id or _stem(entry.path)).strip(".") or "scan"
        count = used.get(base, 0) + 1
        used[base] = count
        name = base if count == 1 else f"{base}-{count}"
        scans.append(ScanInput(name, entry.path, entry.patient_id, entry.label, entry.line))
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


def temperature_of(meta: CheckpointMetadata) -> float:
    """The checkpoint's softmax temperature (fitted on validation); 1 for a checkpoint that stores none."""
    value = getattr(meta, "temperature", 1.0)
    try:
        temperature = float(1.0 if value is None else value)
    except (TypeError, ValueError):
        temperature = math.nan
    if not (math.isfinite(temperature) and temperature > 0):
        raise UsageError(f"{meta.path}: temperature {value!r} is not a positive number")
    return temperature


def flipped(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return torch.flip(x, dims=dims) if dims else x


@dataclass
class ModelEnsemble:
    """Models that agree on classes, input size and preprocessing; their softmax outputs are averaged.

    Each model's softmax is of its logits divided by its temperature; with ``tta`` it is the mean over
    ``TTA_FLIPS``.
    """

    models: list[DARNet]
    metadata: list[CheckpointMetadata]
    tta: bool = False
    provenance: dict[str, Any] = field(default_factory=dict)  # the experiment, jobs used and left out (ModelSet)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.metadata[0].class_names

    @property
    def preprocessing(self) -> Preprocessing:
        return self.metadata[0].preprocessing_settings()

    @property
    def temperatures(self) -> list[float]:
        return [temperature_of(meta) for meta in self.metadata]

    @torch.inference_mode()
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """(M, N, K) softmax of every model (of logits / temperature; the mean over the flips with ``tta``)."""
        views = TTA_FLIPS if self.tta else ((),)
        per_model = []
        for model, temperature in zip(self.models, self.temperatures, strict=True):
            softmax = [(model(flipped(x, dims)).float() / temperature).softmax(dim=1) for dims in views]
            per_model.append(torch.stack(softmax).mean(dim=0))
        return torch.stack(per_model)


def check_finite_outputs(ensemble: ModelEnsemble, per_model: np.ndarray, scans: Sequence[ScanInput]) -> None:
    """Refuse a model whose probabilities are not finite (finite weights can still overflow): a row of NaN would
    be written with the first class as its prediction."""
    bad = ~np.isfinite(per_model).all(axis=2)  # (M, N)
    if bad.any():
        model, scan = (int(i[0]) for i in np.nonzero(bad))
        raise UsageError(
            f"{ensemble.metadata[model].path}: the model's output is not finite (NaN or Inf) for {scans[scan].path}: "
            "its weights overflow; use another checkpoint"
        )


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


def load_ensemble(source: Sequence[str] | ModelSet, device: torch.device, tta: bool = False) -> ModelEnsemble:
    """The models of a model set (``runs.jobs``), or of the ``--ckpt`` entries: finished jobs of one experiment."""
    chosen = source if isinstance(source, ModelSet) else model_sets(source)[0]
    loaded = [load_for_inference(path, map_location=device) for path in chosen.files]
    metadata = [meta for _, meta in loaded]
    check_agreement(metadata)
    for meta in metadata:
        if meta.preprocessing_origin == "default":
            log.warning("%s stores no preprocessing: using the defaults %s", meta.path, meta.preprocessing)
    for meta in metadata:
        temperature_of(meta)  # an unusable temperature is refused now, not at the first batch
    return ModelEnsemble([model for model, _ in loaded], metadata, tta=tta, provenance=chosen.provenance())


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


def check_out_dir(path: Path, overwrite: bool, resume: bool, resumable: bool = True) -> None:
    """An existing non-empty output folder only with ``--overwrite`` (start again) or ``--resume`` (continue)."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path}: --out exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not (overwrite or resume):
        hint = "pass --resume to continue an interrupted run in it, or " if resumable else "pass "
        raise UsageError(f"{path}: the output folder exists and is not empty ({hint}--overwrite to write into it)")


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
    check_finite_outputs(ensemble, per_model, [result.scan for result, _ in loaded])
    for i, (result, _) in enumerate(loaded):
        result.per_model = per_model[:, i]
        result.probabilities = per_model[:, i].mean(axis=0)
    if cam_method is not None:
        ok = [result for result, _ in loaded]
        write_explanations(ensemble, x, volumes, ok, out, cam_method, cam_class, cam_slices)
    return results

"""What a training run says on the console: one line saying what it is, a progress bar (on a terminal), one line
per epoch and one end line, with every number rounded.

The lines are log records of this module, so they also land in the run's log file; ``cli.console`` decides how the
console shows them (plain by default, Hydra's timestamps with ``verbose=true``). Everything is said by global rank
0 only, so a DDP job speaks once.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint, ModelSummary, TQDMProgressBar

from darnet_pl.runs.naming import experiment_of

log = logging.getLogger(__name__)

_AUC = re.compile(r"^test/\d+class/auc_macro$")


def number(value: Any, digits: int = 3) -> str:
    """``0.3333333134651184`` -> ``0.333``; NaN (an undefined metric) -> ``n/a``."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def shown_path(path: str | os.PathLike[str]) -> str:
    """A path relative to the working folder when it lies inside it (shorter to read), else as it is."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _hydra_job() -> tuple[list[str], dict[str, Any], int | None]:
    """The job's overrides as typed, its group choices and, in a sweep, its number (nothing outside Hydra)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return [], {}, None
    hydra = HydraConfig.get()
    number_ = int(hydra.job.num) if hydra.mode == RunMode.MULTIRUN else None
    return [str(o) for o in hydra.overrides.task], dict(hydra.runtime.choices), number_


def _data_line(cfg: DictConfig, choices: dict[str, Any]) -> str:
    data = cfg.data
    source = choices.get("data") or str(data.get("_target_", "data")).rsplit(".", 1)[-1]
    where = data.get("root") if source == "ccii" else data.get("scan_list") if source == "folder" else None
    size = "x".join(str(v) for v in data.get("size", ()))
    return f"{source}{f' ({where})' if where else ''} {size}, batch {data.get('batch_size')}"


def _devices_line(trainer: pl.Trainer) -> str:
    kind = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower().replace("cuda", "gpu")
    devices = f"{trainer.num_devices} {kind}"
    if trainer.num_nodes > 1:
        devices = f"{trainer.num_nodes} nodes x {devices}"
    return f"{devices}, {trainer.precision}"


def header_line(cfg: DictConfig, trainer: pl.Trainer, model: pl.LightningModule) -> str:
    """``smoke dual debug=tiny, fold 0 | data synthetic 16x32x32, batch 4 | 1 cpu, bf16-mixed | 139,171 parameters``"""
    overrides, choices, job = _hydra_job()
    experiment = experiment_of(str(cfg.get("task_name", "run")), str(cfg.model.get("attention", "")), overrides)
    parameters = sum(p.numel() for p in model.parameters())
    parts = [
        f"{experiment.label}, fold {cfg.get('fold')}",
        f"data {_data_line(cfg, choices)}",
        _devices_line(trainer),
        f"{parameters:,} parameters",
    ]
    return ("" if job is None else f"job {job}: ") + " | ".join(parts)


def announce_run(cfg: DictConfig, trainer: pl.Trainer, model: pl.LightningModule) -> None:
    """The run's first line: the experiment and the overrides that define it, the data, the devices."""
    if trainer.is_global_zero:
        log.info("%s", header_line(cfg, trainer, model))


def _selection(trainer: pl.Trainer) -> ModelCheckpoint | None:
    return next((c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.monitor), None)


def end_line(output_dir: Path, trainer: pl.Trainer, metrics: dict[str, float], tested: bool) -> str:
    """``done: <run folder> | selected checkpoints/epoch012.ckpt (val/loss 0.214) | test AUC 0.977``"""
    parts = [f"done: {shown_path(output_dir)}"]
    selection = _selection(trainer)
    if selection is not None and selection.best_model_path:
        best = Path(selection.best_model_path)
        shown = best.relative_to(output_dir) if best.is_relative_to(output_dir) else best
        parts.append(f"selected {shown} ({selection.monitor} {number(selection.best_model_score)})")
    else:
        parts.append("no checkpoint selected: the final weights")
    auc = next((value for key, value in sorted(metrics.items()) if _AUC.match(key)), None)
    if not tested:
        parts.append("not tested (test=false)")
    elif auc is not None:
        parts.append(f"test AUC {number(auc)}")
    return " | ".join(parts)


def announce_end(output_dir: Path, trainer: pl.Trainer, metrics: dict[str, float], tested: bool = True) -> None:
    """The run's last line: its folder, the selected checkpoint with its validation score, the test AUC."""
    if trainer.is_global_zero:
        log.info("%s", end_line(Path(output_dir), trainer, metrics, tested))


def epoch_line(trainer: pl.Trainer, seconds: float, best: bool) -> str:
    """``epoch 3/15  train loss 1.103  val loss 1.099  val AUC 0.352  34 s  best``"""
    metrics = trainer.callback_metrics
    total = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
    parts = [f"epoch {trainer.current_epoch + 1}{total}"]
    for key, label in (("train/loss_epoch", "train loss"), ("val/loss", "val loss"), ("val/auc", "val AUC")):
        if key in metrics:
            parts.append(f"{label} {number(metrics[key])}")
    parts.append(f"{seconds:.0f} s")
    if best:
        parts.append("best")
    return "  ".join(parts)


class ConsoleProgress(TQDMProgressBar):
    """Lightning's tqdm bar, on a terminal only (a log file or a pipe gets no bar), showing the training loss
    rounded, and one line per epoch (``epoch_line``). It replaces Lightning's default bar (Rich's, whose metric
    columns wrap over several lines). ``refresh_rate``: None decides by whether stdout is a terminal."""

    def __init__(self, refresh_rate: int | None = None) -> None:
        rate = (1 if sys.stdout.isatty() else 0) if refresh_rate is None else refresh_rate
        super().__init__(refresh_rate=rate, leave=False)
        self._epoch_started = time.monotonic()
        self._best: float | None = None

    def init_train_tqdm(self) -> Any:
        bar = super().init_train_tqdm()
        bar.leave = False  # the epoch lines stay; the bar goes
        return bar

    def init_test_tqdm(self) -> Any:
        bar = super().init_test_tqdm()
        bar.leave = False
        return bar

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        loss = trainer.progress_bar_metrics.get("train/loss_step")
        return {} if loss is None else {"loss": number(loss)}

    def on_train_start(self, trainer: pl.Trainer, *args: Any) -> None:
        super().on_train_start(trainer, *args)
        selection = _selection(trainer)  # a resumed run continues from the best score it had
        score = selection.best_model_score if selection is not None else None
        self._best = None if score is None else float(score)

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(epoch_line(trainer, 0.0, False).split("  ")[0])  # as the lines count
        self._epoch_started = time.monotonic()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if trainer.is_global_zero:
            log.info("%s", epoch_line(trainer, time.monotonic() - self._epoch_started, self._improved(trainer)))

    def _improved(self, trainer: pl.Trainer) -> bool:
        """Whether this epoch's monitored score beats every earlier one (the checkpoint callback, which runs after
        this one, is about to save it as the best)."""
        selection = _selection(trainer)
        current = trainer.callback_metrics.get(selection.monitor) if selection is not None else None
        if selection is None or current is None or math.isnan(float(current)) or trainer.fast_dev_run:
            return False  # (fast_dev_run saves no checkpoint)
        value = float(current)
        if self._best is not None and not (value < self._best if selection.mode == "min" else value > self._best):
            return False
        self._best = value
        return True


class SummaryIfVerbose(ModelSummary):
    """Lightning's layer table with ``verbose=true`` only: the run's first line gives the parameter count. Being a
    ModelSummary, it stands in for Lightning's default (RichModelSummary, with its 'Total FLOPs: 0' and a warning
    that bf16 sizes are not estimated)."""

    def __init__(self, verbose: bool = False, max_depth: int = 1) -> None:
        super().__init__(max_depth=max_depth)
        self.verbose = verbose

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.verbose:
            super().on_fit_start(trainer, pl_module)

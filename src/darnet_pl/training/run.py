"""Fit, pick the best-on-validation checkpoint, test it, and write the run's results.

Everything configurable is instantiated here, at the edge, from the Hydra config; the pieces get plain objects.
Files written into the run directory (each atomically): ``config_resolved.yaml``, ``checkpoints/``,
``test_metrics.json`` (flat JSON of test metrics), ``predictions.csv`` (per-scan probabilities),
``split_manifest.csv`` (the split actually used).

Beyond the paper's per-scan metrics, ``test_metrics.json`` holds, from the per-scan test rows (rank 0 tests alone
on one device, so the rows are every test scan once): ``test/patient/<metric>`` (the paper's metric set on
patient-aggregated probabilities, ``model.patient_aggregation``) and ``test/calibration/{brier,ece}``. With
``model.temperature_scaling=true`` the temperature is fitted on the validation set after training (the best
checkpoint's logits), stored in that checkpoint and used for every test probability; then the file also holds
``test/calibration/temperature`` and the uncalibrated ``test/calibration/{brier,ece}_uncalibrated``.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor, ProgressBar
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from darnet_pl.distributed.ddp import single_device_trainer
from darnet_pl.metrics import (
    UndefinedMetricWarning,
    brier_score,
    expected_calibration_error,
    fit_temperature,
    metrics_from_probabilities,
    patient_level,
)
from darnet_pl.runs.checkpoints import TEMPERATURE_KEY
from darnet_pl.runs.layout import CONFIG_FILE, METRICS_FILE, PREDICTIONS_FILE, WANDB_RUN_ID_FILE, last_checkpoint
from darnet_pl.runs.metrics_file import read_metrics_file, write_metrics_file
from darnet_pl.runs.predictions import probabilities_of, write_predictions
from darnet_pl.training.console import announce_end, announce_run
from darnet_pl.training.memory_advice import out_of_memory_advice
from darnet_pl.training.wandb_results import finish_wandb_runs, log_test_results
from darnet_pl.utils.io import atomic_path, write_text_atomic
from darnet_pl.utils.provenance import source_commit
from darnet_pl.utils.ranks import owns_job
from darnet_pl.utils.wandb_session import kept_run_id

log = logging.getLogger(__name__)


def build_callbacks(cfg: DictConfig, with_loggers: bool) -> list[pl.Callback]:
    """Callbacks from the config; the learning-rate monitor only where there is a logger to write to."""
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    callbacks = [c for c in callbacks if with_loggers or not isinstance(c, LearningRateMonitor)]
    if cfg.trainer.get("enable_progress_bar") is False:  # Lightning refuses a progress bar it was told not to draw
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    return callbacks


def build_loggers(cfg: DictConfig, output_dir: Path, resuming: bool) -> list[Any]:
    """The configured loggers; a resumed job continues its CSV history and its W&B run (one job, one W&B run)."""
    loggers = []
    for conf in (cfg.get("logger") or {}).values():
        if conf is None:
            continue
        target = str(conf.get("_target_", ""))
        extra: dict[str, Any] = {}
        if target.endswith(("WandbLogger", "wandb_logger")) and owns_job():  # only rank 0 logs (and keeps the id)
            extra = {"id": wandb_run_id(output_dir), "resume": "allow"}
        elif target.endswith("HistoryCSVLogger"):
            extra = {"keep_history": resuming}
        loggers.append(instantiate(conf, **extra))
    return loggers


def wandb_run_id(output_dir: Path) -> str:
    """The job's W&B run id, kept in its folder so that every resume logs into the same run."""
    return kept_run_id(output_dir / WANDB_RUN_ID_FILE)


def resolve_ckpt_path(ckpt_path: str | None, output_dir: Path, redo: bool = False) -> str | None:
    """An explicit path, "last" (this run's last.ckpt), or - for an interrupted job - its own last.ckpt."""
    if ckpt_path is None and not redo and (last_checkpoint(output_dir)).is_file():
        log.info("resuming the interrupted job from %s", last_checkpoint(output_dir))
        return str(last_checkpoint(output_dir))
    if ckpt_path == "last":
        last = last_checkpoint(output_dir)
        if not last.is_file():
            raise FileNotFoundError(f"{last}: ckpt_path=last, but this run has no last checkpoint")
        return str(last)
    if ckpt_path and not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"{ckpt_path}: checkpoint not found")
    return ckpt_path


def check_resumable(path: str, cfg: DictConfig) -> None:
    """Refuse, in one line naming the file, a checkpoint that holds code, is damaged, or is of another model.

    Read with ``weights_only=True`` (nothing is unpickled that could run code) before Lightning touches it.
    """
    from darnet_pl.runs.checkpoints import check_expected, metadata_of, read_checkpoint

    meta = metadata_of(read_checkpoint(path), path)
    check_expected(
        meta,
        expect_attention=str(cfg.model.get("attention", meta.attention)),
        expect_input_size=list(cfg.data.get("size", meta.input_size)),
        expect_width=int(cfg.model.get("width", meta.width)),
    )


@contextlib.contextmanager
def advice_on_out_of_memory(cfg: DictConfig, phase: str) -> Iterator[None]:
    """A GPU out-of-memory error becomes one line naming the settings that would fit (see memory_advice)."""
    try:
        yield
    except torch.OutOfMemoryError:
        settings = {
            "precision": cfg.trainer.get("precision"),
            "batch_size": cfg.data.get("batch_size"),
            "devices": cfg.trainer.get("devices"),
            "accumulate_grad_batches": cfg.trainer.get("accumulate_grad_batches"),
            "activation_checkpointing": cfg.model.get("activation_checkpointing"),
            "input_size": list(cfg.data.get("size", ())),
        }
        raise out_of_memory_advice(settings, phase) from None


STOP_STATUS = {"SIGTERM": 128 + signal.SIGTERM, "Ctrl-C": 128 + signal.SIGINT}


def stopped_by(stop: BaseException) -> str | None:
    """``SIGTERM`` or ``Ctrl-C`` when ``stop`` is one (Lightning ends a Ctrl-C in ``fit``/``test`` with
    ``sys.exit(1)`` after its graceful shutdown), else None."""
    if isinstance(stop, SIGTERMException):
        return "SIGTERM"
    if isinstance(stop, KeyboardInterrupt) or isinstance(stop.__context__, KeyboardInterrupt):
        return "Ctrl-C"
    return None


def stop_after_sigterm(
    output_dir: Path, callbacks: list[pl.Callback], by: str = "SIGTERM", testing: bool = False
) -> SystemExit:
    """Exit status 143 (128 + SIGTERM; Ctrl-C: 130) with what was kept, truthfully, and how to resume: after SIGTERM
    the pre-emption callback saved last.ckpt after the batch in progress; otherwise last.ckpt is the latest finished
    epoch, if any."""
    from darnet_pl.training.preemption import CheckpointOnSigterm
    from darnet_pl.utils.errors import in_multirun

    last = last_checkpoint(output_dir)
    saver = next((c for c in callbacks if isinstance(c, CheckpointOnSigterm)), None)
    if testing:
        kept = f"training had finished ({last} holds it); the best checkpoint was being tested"
    elif by == "SIGTERM" and saver is not None and saver.saved_at is not None:
        epoch, batch, batches = saver.saved_at
        kept = f"{last} holds the training state (epoch {epoch}, after batch {batch} of {batches})"
    elif last.is_file():
        kept = f"{last} holds the training state at the end of the last finished epoch"
    else:
        kept = "no checkpoint was saved yet: the job starts again from its beginning"
    how = "run the same command again" if in_multirun() else f"add hydra.run.dir={output_dir} to the command"
    message = f"stopped by {by}; {kept}; to resume, {how}"
    if by == "Ctrl-C" and not testing and not last.is_file():
        message = "stopped by Ctrl-C during the first epoch: no checkpoint to resume from"
    if owns_job():  # the other ranks of a DDP job stop as silently as they trained
        log.warning("%s", message, extra={"console": False})  # in the log file; the console gets it once, below
        print(message, file=sys.stderr)
    return SystemExit(STOP_STATUS[by])


def validation_temperature(tester: pl.Trainer, model: pl.LightningModule, val_loader: Any, ckpt: str | None) -> float:
    """The temperature fitted on the validation loader's raw logits of checkpoint ``ckpt`` (None: ``model`` as is)."""
    batches = tester.predict(model, dataloaders=val_loader, ckpt_path=ckpt, weights_only=True) or []
    logits = torch.cat([b["logits"] for b in batches]) if batches else torch.zeros(0, len(model.class_names))
    labels = torch.cat([b["label"] for b in batches]) if batches else torch.zeros(0, dtype=torch.long)
    temperature = fit_temperature(logits, labels)
    log.info("temperature scaling: T=%.4f fitted on %d validation scans", temperature, len(labels))
    return temperature


def store_temperature(path: str | Path, temperature: float) -> None:
    """Add the fitted temperature to a checkpoint file, atomically (it stays a weights_only-loadable file)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    checkpoint[TEMPERATURE_KEY] = float(temperature)
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def beyond_scan_metrics(
    rows: list[dict[str, Any]],
    class_names: tuple[str, ...],
    positive_class: str,
    how: str = "mean",
    raw_logits: list[torch.Tensor] | None = None,
    temperature: float | None = None,
) -> dict[str, float]:
    """``test/patient/...`` and ``test/calibration/...`` of the per-scan test rows (probabilities as tested).

    With a fitted ``temperature`` (the rows then hold scaled probabilities), also the temperature and, from
    ``raw_logits`` (one per row), the uncalibrated Brier score and ECE.
    """
    if not rows:
        return {}
    probs = probabilities_of(rows, class_names)
    labels = np.array([int(row["label"]) for row in rows], dtype=np.int64)
    _, patient_labels, patient_probs = patient_level([str(row["patient_id"]) for row in rows], labels, probs, how)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", UndefinedMetricWarning)
        values = metrics_from_probabilities(patient_probs, patient_labels, class_names, positive_class)
    for warning in caught:
        log.warning("patient level (%d patients): %s", len(patient_labels), warning.message)
    metrics = {f"test/patient/{key}": value for key, value in values.items()}
    metrics["test/calibration/brier"] = brier_score(probs, labels)
    metrics["test/calibration/ece"] = expected_calibration_error(probs, labels)
    if temperature is not None:
        metrics["test/calibration/temperature"] = float(temperature)
        if raw_logits is not None and len(raw_logits) == len(rows):
            raw = torch.stack(raw_logits).double().softmax(dim=1).numpy()
            metrics["test/calibration/brier_uncalibrated"] = brier_score(raw, labels)
            metrics["test/calibration/ece_uncalibrated"] = expected_calibration_error(raw, labels)
    return metrics


def train(cfg: DictConfig) -> dict[str, float]:
    """Run one training job described by ``cfg``; returns the test metrics (empty when test=false)."""
    from darnet_pl.config.checks import check_config

    check_config(cfg)  # before anything is built or written
    output_dir = Path(cfg.paths.output_dir)
    metrics_path = output_dir / METRICS_FILE
    if metrics_path.is_file() and not cfg.get("redo", False):
        log.info("%s exists: this job already finished (redo=true runs it again)", metrics_path)
        return read_metrics_file(metrics_path)

    if owns_job():  # the other ranks of a DDP job share this folder and write nothing of its own
        write_text_atomic(output_dir / CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
    pl.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data, split_manifest_out=str(output_dir / "split_manifest.csv"), _convert_="all")
    model = instantiate(cfg.model, _convert_="all")
    resume_from = resolve_ckpt_path(cfg.get("ckpt_path"), output_dir, bool(cfg.get("redo")))
    if resume_from:
        check_resumable(resume_from, cfg)
    loggers = build_loggers(cfg, output_dir, resuming=bool(resume_from))
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=build_callbacks(cfg, bool(loggers)), logger=loggers or False
    )
    announce_run(cfg, trainer, model)
    if loggers:  # the resolved config and the commit (three git calls) once, for every logger
        hyperparameters = {**OmegaConf.to_container(cfg, resolve=True), "git_commit": source_commit()}
        for logger in loggers:
            logger.log_hyperparams(hyperparameters)
    try:
        with advice_on_out_of_memory(cfg, "training"):
            trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    except (KeyboardInterrupt, SystemExit) as stop:
        by = stopped_by(stop)
        if by is None:
            raise
        finish_wandb_runs(loggers, exit_code=STOP_STATUS[by])  # the resumed job reopens the same W&B run
        raise stop_after_sigterm(output_dir, trainer.callbacks, by) from None

    metrics: dict[str, float] = {}
    if not trainer.is_global_zero:
        return metrics  # DDP: the other ranks only train; rank 0 tests and writes the results
    if cfg.get("test", True):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if best:
            log.info("testing the best checkpoint on validation: %s", best)
        else:
            log.warning("no best checkpoint was saved; testing the final weights")
        tester = single_device_trainer(trainer)  # after DDP, one device, so that every test scan counts once
        temperature = None
        try:
            if model.hparams.get("temperature_scaling", False):
                with advice_on_out_of_memory(cfg, "temperature scaling"):
                    temperature = validation_temperature(tester, model, datamodule.val_dataloader(), best or None)
                if best:
                    store_temperature(best, temperature)  # test() below restores it from there
                else:
                    log.warning("temperature scaling: no best checkpoint to store T in; it is used for testing only")
                model.temperature = temperature
            with advice_on_out_of_memory(cfg, "testing"):
                tester.test(
                    model,
                    datamodule=datamodule,
                    ckpt_path=best or None,
                    weights_only=True,
                    verbose=bool(cfg.get("verbose")),  # Lightning's table: every float32 digit
                )
        except (KeyboardInterrupt, SystemExit) as stop:
            by = stopped_by(stop)
            if by is None:
                raise
            finish_wandb_runs(loggers, exit_code=STOP_STATUS[by])
            raise stop_after_sigterm(output_dir, trainer.callbacks, by, testing=True) from None
        metrics = {k: float(v) for k, v in tester.callback_metrics.items() if k.startswith("test/")}
        metrics.update(
            beyond_scan_metrics(
                model.test_predictions,
                model.class_names,
                model.test_metrics.positive_class,
                str(model.hparams.get("patient_aggregation", "mean")),
                raw_logits=model.test_logits,
                temperature=temperature,
            )
        )
        if trainer.is_global_zero:
            write_predictions(model.test_predictions, output_dir / PREDICTIONS_FILE)
            write_metrics_file(metrics_path, metrics)
            log.info("test metrics written to %s", metrics_path)
            for logger in loggers:
                if isinstance(logger, WandbLogger):
                    log_test_results(logger, model.test_predictions, model.class_names, metrics)
    finish_wandb_runs(loggers)
    selected = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
    if selected is not None:
        metrics["selected/val_score"] = float(selected)  # returned to a sweeper; not a test result
    announce_end(output_dir, trainer, metrics, tested=bool(cfg.get("test", True)))
    return metrics

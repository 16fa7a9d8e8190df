"""DARNetModule: loss, optimisation, metric collections and logging around the pure-torch DARNet.

It never opens files. Test-time per-scan probabilities are kept in ``test_predictions`` (and the raw logits in
``test_logits``) for the training script to write out and to compute the patient-level and calibration metrics from
(``training/run.py``: after DDP, rank 0 tests alone, so these hold every test scan once).

Temperature scaling: ``temperature`` (1.0 unless fitted) divides the logits of every test-time probability and
metric. ``training/run.py`` fits it on the validation set when ``temperature_scaling`` is on and stores it in the
best checkpoint under ``TEMPERATURE_KEY``; loading such a checkpoint (e.g. for ``trainer.test``) restores it.
``forward`` and ``predict_step`` always give the raw logits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.accelerators import CPUAccelerator
from torch import nn

from darnet_pl.data.records import CLASS_NAMES
from darnet_pl.metrics import PATIENT_AGGREGATIONS, PaperMetrics
from darnet_pl.models import DARNet
from darnet_pl.models.pretrained import load_pretrained
from darnet_pl.runs.checkpoints import TEMPERATURE_KEY
from darnet_pl.runs.predictions import prediction_row
from darnet_pl.training.speed import apply_speed_options, memory_format_of, resolve_memory_format

log = logging.getLogger(__name__)

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


class DARNetModule(pl.LightningModule):
    """Trains DARNet with cross-entropy; optimizer and scheduler are partials from the config."""

    def __init__(
        self,
        attention: str = "dual",
        width: int = 64,
        in_channels: int = 1,
        input_size: Sequence[int] = (64, 224, 224),
        class_names: Sequence[str] = CLASS_NAMES,
        positive_class: str = "NCP",
        ca_reduction: int = 16,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        memory_format: str = "contiguous",
        compile: bool = False,
        activation_checkpointing: bool = False,
        init_from: str | None = None,
        patient_aggregation: str = "mean",
        temperature_scaling: bool = False,
    ) -> None:
        super().__init__()
        if patient_aggregation not in PATIENT_AGGREGATIONS:
            raise ValueError(
                f"model.patient_aggregation={patient_aggregation}: expected one of {', '.join(PATIENT_AGGREGATIONS)}"
            )
        # architecture and labels travel with the checkpoint; optimiser partials are in the run's config
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.class_names = tuple(class_names)
        self.net = DARNet(
            attention=attention,
            in_channels=in_channels,
            num_classes=len(self.class_names),
            input_size=tuple(input_size),
            width=width,
            ca_reduction=ca_reduction,
        )
        # speed options (docs/explanation/speed.md): weights layout, torch.compile, recomputing blocks in the
        # backward pass;
        # memory_format "auto" is decided in setup(), once the trainer's device and precision are known
        fixed_format = "contiguous" if memory_format == "auto" else memory_format
        apply_speed_options(self.net, fixed_format, activation_checkpointing, compile)
        self.memory_format = memory_format_of(fixed_format)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.criterion = nn.CrossEntropyLoss()
        self.val_metrics = PaperMetrics(self.class_names, positive_class)
        self.test_metrics = PaperMetrics(self.class_names, positive_class)
        self.test_predictions: list[dict[str, Any]] = []
        self.test_logits: list[torch.Tensor] = []  # raw (unscaled) logits of the same rows, one (K,) per scan
        self.temperature = 1.0

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.hparams.init_from and self._trainer is not None and not self.trainer.ckpt_path:
            # a fresh fit starts from the file; a resumed one restores its own weights instead
            report = load_pretrained(self.net, self.hparams.init_from)
            log.info("%s", report.summary())
        if self.hparams.memory_format != "auto" or self._trainer is None:
            return
        accelerator = "cpu" if isinstance(self.trainer.accelerator, CPUAccelerator) else "gpu"
        chosen = resolve_memory_format("auto", accelerator, self.trainer.precision)
        self.net.to(memory_format=memory_format_of(chosen))
        self.memory_format = memory_format_of(chosen)
        log.info("memory_format=auto -> %s (%s, precision %s)", chosen, accelerator, self.trainer.precision)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _shared_step(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images, labels = batch["image"].contiguous(memory_format=self.memory_format), batch["label"]
        logits = self.net(images)
        return self.criterion(logits, labels), logits, labels

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss, logits, labels = self._shared_step(batch)
        finite = bool(torch.isfinite(loss))
        world = self._trainer.world_size if self._trainer is not None else 1
        if world > 1:  # every rank stops at the same step, whichever saw it (no rank is left waiting in a collective)
            finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        if not finite:
            where = "" if world == 1 else f" here; non-finite on at least one of {world} processes"
            raise FloatingPointError(
                f"non-finite training loss ({loss.item()}{where}) at epoch {self.current_epoch}, batch {batch_idx}: "
                "lower the learning rate or use fp32; the last good checkpoint is kept"
            )
        accuracy = (logits.argmax(dim=1) == labels).float().mean()
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(labels))
        self.log("train/accuracy", accuracy, on_step=False, on_epoch=True, batch_size=len(labels))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        loss, logits, labels = self._shared_step(batch)
        self.val_metrics.update(logits, labels)
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=len(labels))

    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        self.val_metrics.reset()
        self.log_dict({f"val/{k}": v for k, v in values.items()}, sync_dist=False)
        self.log("val/auc", values[f"{len(self.class_names)}class/auc_macro"], prog_bar=True)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        loss, logits, labels = self._shared_step(batch)  # test/loss: the cross-entropy of the raw logits
        raw = logits.detach().float()
        scaled = raw / self.temperature
        self.test_metrics.update(scaled, labels)
        self.log("test/loss", loss, on_epoch=True, sync_dist=True, batch_size=len(labels))
        probs = scaled.softmax(dim=1).cpu()
        raw = raw.cpu()
        for i in range(len(labels)):
            row = prediction_row(
                batch["patient_id"][i], batch["scan_id"][i], int(labels[i]), probs[i].tolist(), self.class_names
            )
            self.test_predictions.append(row)
            self.test_logits.append(raw[i])

    def on_test_epoch_start(self) -> None:
        self.test_predictions = []
        self.test_logits = []

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        """Raw logits and labels of a labelled batch (the validation logits temperature scaling is fitted on)."""
        images = batch["image"].contiguous(memory_format=self.memory_format)
        return {"logits": self.net(images).detach().float().cpu(), "label": batch["label"].detach().cpu()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The fitted temperature of a checkpoint, when this model uses temperature scaling (else 1.0)."""
        stored = checkpoint.get(TEMPERATURE_KEY, 1.0) if self.hparams.get("temperature_scaling") else 1.0
        self.temperature = float(stored)

    def on_test_epoch_end(self) -> None:
        values = self.test_metrics.compute()
        self.test_metrics.reset()
        self.log_dict({f"test/{k}": v for k, v in values.items()})

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise ValueError("model.optimizer is not set: give a partial optimizer, e.g. torch.optim.Adam")
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

"""``SelectedEpochSummary``: the W&B summary says which epoch was selected, and how it scored on validation.

A run's summary keeps the last value of every metric, so a dashboard's run table would show the last epoch's
validation figures beside the test figures of another epoch (the best-on-validation checkpoint). This callback
makes the summary hold what was selected:

- ``<monitor>`` as ``{"min"|"max": best, "last": last}`` (``define_metric``, following the checkpoint's mode);
- ``selected/epoch`` (0-based, as the checkpoint's file name) and ``selected/val/...``: every validation metric of
  the epoch whose checkpoint became the best;
- the test metrics are the tested checkpoint's already (``training.wandb_results.log_test_results``).

The best-checkpoint callback decides after this one has seen an epoch's validation (Lightning runs checkpoint
callbacks last), so each validation is kept as a candidate with the best as it stood; once the checkpoint callback
has moved on, a changed best means the candidate was selected. Both are in ``state_dict``: ``last.ckpt`` is written
in between, and a resumed job still names the right epoch. Does nothing visible without a WandbLogger, or off
rank 0.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl

PREFIX = "selected"
STEP_METRIC = "trainer/global_step"  # Lightning's WandbLogger x axis


def _best(trainer: pl.Trainer) -> list[str] | None:
    """The best checkpoint as it stands: path and score (as text, so that NaN equals NaN)."""
    ckpt = trainer.checkpoint_callback
    if ckpt is None or not getattr(ckpt, "monitor", None):
        return None
    score = getattr(ckpt, "best_model_score", None)
    return [str(ckpt.best_model_path), repr(float(score)) if score is not None else ""]


class SelectedEpochSummary(pl.Callback):
    """Keep the validation metrics of the selected epoch; put them, and the monitor's best, in the W&B summary."""

    def __init__(self) -> None:
        super().__init__()
        self.selected: dict[str, Any] | None = None  # {"epoch": int, "metrics": {name: value}}
        self.candidate: dict[str, Any] | None = None  # the latest validation, with "best_before"

    def state_dict(self) -> dict[str, Any]:
        return {"selected": self.selected, "candidate": self.candidate}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.selected = state_dict.get("selected")
        self.candidate = state_dict.get("candidate")

    @staticmethod
    def wandb_runs(trainer: pl.Trainer) -> list[Any]:
        from pytorch_lightning.loggers import WandbLogger

        if not trainer.is_global_zero:
            return []
        return [lg.experiment for lg in trainer.loggers if isinstance(lg, WandbLogger)]

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        ckpt = trainer.checkpoint_callback
        monitor, mode = getattr(ckpt, "monitor", None), getattr(ckpt, "mode", None)
        if monitor and mode in ("min", "max"):
            for run in self.wandb_runs(trainer):
                run.define_metric(monitor, step_metric=STEP_METRIC, summary=f"{mode},last")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._settle(trainer)  # the previous validation's checkpoint decision is made by now
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        self.candidate = {"epoch": int(trainer.current_epoch), "metrics": metrics, "best_before": _best(trainer)}

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._settle(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._settle(trainer)
        self._write(trainer)

    def _settle(self, trainer: pl.Trainer) -> None:
        """The candidate became the selected epoch if the best checkpoint changed since it was validated."""
        if self.candidate is None or trainer.checkpoint_callback is None:
            return
        if _best(trainer) != self.candidate["best_before"]:
            self.selected = {"epoch": self.candidate["epoch"], "metrics": self.candidate["metrics"]}
            self._write(trainer)
        self.candidate = None

    def _write(self, trainer: pl.Trainer) -> None:
        if self.selected is None:
            return
        values = {f"{PREFIX}/epoch": self.selected["epoch"]}
        values |= {f"{PREFIX}/{name}": value for name, value in self.selected["metrics"].items()}
        for run in self.wandb_runs(trainer):
            run.summary.update(values)

"""Pre-emption: on SIGTERM, checkpoint after the batch in progress, then stop; the same command resumes the job.

Clusters send SIGTERM (SLURM pre-emption, ``scancel``, a time limit with ``--signal``) and kill the job a grace
period later. Lightning notes the signal and stops after the current batch, but writes nothing: the work since
the last end-of-epoch checkpoint would be lost. This callback writes ``last.ckpt`` right there (mid-epoch, with
the loader's position, see :mod:`darnet_pl.data.sampling`), so a resumed run continues exactly where this one
stopped. Lightning's own checkpoint I/O writes atomically (temporary file, then rename).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from darnet_pl.runs.layout import LAST_CHECKPOINT

log = logging.getLogger(__name__)


class CheckpointOnSigterm(pl.Callback):
    """Save ``<dirpath>/last.ckpt`` after the batch during which SIGTERM arrived (all ranks agree under DDP)."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)
        self.saved_to: Path | None = None

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        if self.saved_to is not None:
            return
        stop = bool(getattr(trainer, "received_sigterm", False))
        if trainer.world_size > 1:  # a collective: every rank must take part in the save below
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if not stop:
            return
        path = self.dirpath / LAST_CHECKPOINT
        trainer.save_checkpoint(path)
        self.saved_to = path
        batch = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        log.warning(
            "SIGTERM: saved %s at epoch %d after batch %d of %d; run the same command again to resume",
            path,
            trainer.current_epoch,
            batch,
            trainer.num_training_batches,
        )

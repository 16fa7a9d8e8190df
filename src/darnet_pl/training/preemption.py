"""Pre-emption: on SIGTERM, checkpoint the training state where it stopped, then stop; the same command resumes.

Clusters send SIGTERM (SLURM pre-emption, ``scancel``, a time limit with ``--signal``) and kill the job a grace
period later. Lightning notes the signal and stops, but writes nothing: the work since the last end-of-epoch
checkpoint would be lost. This callback writes ``last.ckpt`` after the batch in progress (mid-epoch, with the
loader's position, see :mod:`darnet_pl.data.sampling`), so a resumed run continues exactly where this one stopped.
The trainer's checkpoint I/O writes atomically (temporary file, then rename).

Under DDP, Lightning's own SIGTERM handler broadcasts from inside the signal handler, at whatever point each
process happens to be - possibly in the middle of another collective (DDP's buffer broadcast), which corrupts the
exchange and kills ranks - and every rank stops at the end of the batch in which *it* saw the signal, which need
not be the same batch. So while training, this callback's handler only notes the signal; at the end of every
batch the ranks agree (one all-reduce of a flag: any rank that saw SIGTERM stops them all), save together, and
then tell Lightning to stop (its ``_signal_connector.received_sigterm``), so every rank stops after the same batch.
A signal during validation is acted on after the next training batch. Lightning restores the previous handler when
fitting ends.

``saved_at`` says what was saved, for the exit line (``training.run.stop_after_sigterm``).
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import pytorch_lightning as pl

from darnet_pl.runs.layout import LAST_CHECKPOINT

log = logging.getLogger(__name__)


class CheckpointOnSigterm(pl.Callback):
    """Save ``<dirpath>/last.ckpt`` after the batch during which SIGTERM arrived (all ranks agree under DDP)."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)
        self.saved_to: Path | None = None
        self.saved_at: tuple[int, int, int] | None = None  # (epoch, batches done, batches per epoch)
        self._pending = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after Lightning registered its handler (trainer._run), which it restores when fitting ends
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._note_sigterm)

    def _note_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self._pending = True

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        if self.saved_to is not None:
            return
        stop = self._pending or bool(getattr(trainer, "received_sigterm", False))
        if trainer.world_size > 1:  # a collective: every rank takes part, every batch
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if not stop:
            return
        path = self.dirpath / LAST_CHECKPOINT
        trainer.save_checkpoint(path)  # a collective under DDP: every rank calls it, rank 0 writes
        self.saved_to = path
        batch = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        self.saved_at = (trainer.current_epoch, batch, trainer.num_training_batches)
        log.info("SIGTERM: saved %s at epoch %d after batch %d of %d", path, *self.saved_at)
        trainer._signal_connector.received_sigterm = True  # Lightning stops after this batch, on every rank alike

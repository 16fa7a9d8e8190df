"""``checkpoints/last.ckpt``: the latest epoch, written at the end of every epoch, apart from the best one.

Lightning's ``ModelCheckpoint(save_last=True)`` refreshes ``last.ckpt`` only in a step where it also saved a top-k
checkpoint: with ``monitor=val/loss, save_top_k=1`` that is only when the validation loss improves, so after the
last improvement ``last.ckpt`` stays at the best epoch, and a resume (kill -9, SLURM time limit, requeue, a sweep
run again) would redo every epoch since. This callback saves the latest state every epoch, atomically (the
trainer's checkpoint I/O), under the one name every resume path reads (``runs.layout.LAST_CHECKPOINT``). It is a
``ModelCheckpoint`` (whose state follows a moved job folder, as the best one's) so that Lightning runs it after the
best-checkpoint callback: the file then holds that callback's state of the same epoch (its best score and path),
and a resumed run selects the same best checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from darnet_pl.runs.layout import LAST_CHECKPOINT
from darnet_pl.training.best_checkpoint import BestCheckpoint


class LatestCheckpoint(BestCheckpoint):
    """Write ``<dirpath>/last.ckpt`` at the end of every epoch (replacing the previous one)."""

    def __init__(self, dirpath: str) -> None:
        super().__init__(
            dirpath=dirpath,
            filename=Path(LAST_CHECKPOINT).stem,
            monitor=None,
            save_top_k=1,
            save_last=False,
            every_n_epochs=1,
            enable_version_counter=False,
            auto_insert_metric_name=False,
        )

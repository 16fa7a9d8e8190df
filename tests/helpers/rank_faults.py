"""A training callback that breaks one rank of a DDP job on purpose, added from the command line as a user adds any
callback (``+callbacks.fault._target_=tests.helpers.rank_faults.RankFault ...``; the repository root on PYTHONPATH).

- ``raise_in_fold``: in that fold, rank ``rank`` raises at batch ``batch`` (a crash: OOM, a bug on one GPU);
- ``nan_in_fold``: in that fold, rank ``rank``'s batch ``batch`` is all NaN (a non-finite loss seen on one rank);
- ``sigterm_at``: ``[epoch, batch]`` at which rank 0 sends itself SIGTERM during the batch (a pre-emption; Lightning
  forwards it to the other ranks).
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytorch_lightning as pl
import torch


class RankFault(pl.Callback):
    def __init__(
        self,
        rank: int = 1,
        batch: int = 1,
        raise_in_fold: int | None = None,
        nan_in_fold: int | None = None,
        sigterm_at: list[int] | None = None,
    ) -> None:
        self.rank, self.batch = rank, batch
        self.raise_in_fold, self.nan_in_fold = raise_in_fold, nan_in_fold
        self.sigterm_at = tuple(sigterm_at) if sigterm_at else None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self.sigterm_at == (trainer.current_epoch, batch_idx) and trainer.global_rank == 0:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives during this batch
        if trainer.global_rank != self.rank or batch_idx != self.batch or trainer.current_epoch != 0:
            return
        fold = trainer.datamodule.hparams.fold
        if fold == self.raise_in_fold:
            raise RuntimeError(f"injected failure on rank {self.rank}")
        if fold == self.nan_in_fold:
            batch["image"].copy_(torch.full_like(batch["image"], float("nan")))

"""The W&B logger of a job, quiet: W&B's own console output is replaced by one line per run (where the offline run
is, and the command that uploads it), printed when the run closes (training.wandb_results.finish_wandb_runs)."""

from __future__ import annotations

from typing import Any

from pytorch_lightning.loggers import WandbLogger


def quiet_wandb_logger(**kwargs: Any) -> WandbLogger:
    """``WandbLogger(**kwargs)`` whose run prints nothing of its own (``wandb.Settings(silent=True)``)."""
    import wandb

    settings = kwargs.pop("settings", None) or wandb.Settings(silent=True, show_info=False, show_warnings=False)
    return WandbLogger(settings=settings, **kwargs)

"""The W&B logger of a job, quiet and offline unless it can go online (``darnet_pl.utils.wandb_session``).

W&B's own console output is replaced by one line per run (where the offline run is, and the command that uploads
it), printed when the run closes (``training.wandb_results.finish_wandb_runs``). ``logger.wandb.offline=false``
where W&B's server cannot be reached logs offline and says so in one line; a run that still fails to start online
(a rejected API key, a server that does not answer) stops the job with one line naming the setting, and leaves no
stub run folder behind.
"""

from __future__ import annotations

import logging
from typing import Any

from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.loggers.logger import rank_zero_experiment

from darnet_pl.utils.wandb_session import (
    close_leftover_run,
    fallback_line,
    no_stub_runs,
    online_or_why_not,
    quiet_process,
    quiet_settings,
)

log = logging.getLogger(__name__)


class QuietWandbLogger(WandbLogger):
    """A ``WandbLogger`` whose run prints nothing of W&B's own and starts a run of its own in every job."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Lightning passes anonymous=None, which wandb 0.31 answers with a deprecation line on the console
        self._wandb_init.pop("anonymous", None)

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._experiment is not None:
            return self._experiment
        leftover = close_leftover_run()  # an earlier job of this sweep failed before closing its run
        if leftover:
            log.info("%s", leftover)
        import wandb

        quiet_process()
        try:
            with no_stub_runs(self._wandb_init.get("dir") or "."):
                return WandbLogger.experiment.fget(self)  # type: ignore[attr-defined]
        except (wandb.errors.Error, TimeoutError) as error:
            if self._offline:
                raise
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ValueError(
                f"logger.wandb.offline=false: W&B could not start the run online ({reason}); "
                "logger.wandb.offline=true (the default) logs offline, to upload later with wandb sync"
            ) from None


def quiet_wandb_logger(offline: bool = True, **kwargs: Any) -> WandbLogger:
    """``QuietWandbLogger(offline=..., **kwargs)``; asked to go online where W&B cannot be reached: offline, said
    in one line."""
    if not offline:
        why = online_or_why_not()
        if why is not None:
            log.warning("%s", fallback_line(why))
            offline = True
    settings = kwargs.pop("settings", None) or quiet_settings(online=not offline)
    if offline:  # said to wandb.init itself: W&B may have read its mode from the environment before Lightning sets it
        kwargs.setdefault("mode", "offline")
    return QuietWandbLogger(offline=offline, settings=settings, **kwargs)

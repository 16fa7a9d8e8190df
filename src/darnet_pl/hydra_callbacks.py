"""Hydra callbacks: at the end of a multirun, write the sweep's report (tables, ensemble, plots)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class ReportOnMultirunEnd(Callback):
    """Runs ``darnet-report <sweep dir>`` once every job of a sweep has finished."""

    def __init__(self, bootstrap: int = 1000) -> None:
        self.bootstrap = bootstrap

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from darnet_pl.report import NothingToReport, write_report

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            result = write_report(sweep_dir, n_bootstrap=self.bootstrap)
        except NothingToReport:
            log.warning("no job of %s finished: no report written", sweep_dir)
            return
        log.info("sweep report: %s\n%s", result.out_dir, result.summary)

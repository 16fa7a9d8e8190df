"""Hydra callbacks: check the output folder before anything runs; after a multirun, write the sweep's report."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class CheckOutputFolder(Callback):
    """An output folder that cannot be written stops the app with one line and exit code 2, before any job.

    Without it, Hydra fails while creating the job folder, with a traceback that does not say what to change.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        # the run folder itself is made by Hydra right after; its parent is what must be writable
        self._check(Path(str(config.hydra.run.dir)).parent)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.sweep.dir)

    @staticmethod
    def _check(folder: str | Path) -> None:
        from darnet_pl.errors import EXIT_USER_ERROR
        from darnet_pl.io import StorageError, check_writable

        try:
            check_writable(folder)
        except StorageError as error:
            print(f"error: {error}; choose another with paths.log_dir=<folder>", file=sys.stderr)
            raise SystemExit(EXIT_USER_ERROR) from None


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

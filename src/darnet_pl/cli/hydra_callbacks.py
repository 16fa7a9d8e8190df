"""Hydra callbacks: check the output folder and what every job needs before anything runs; after a multirun, write
the sweep's report."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from darnet_pl.utils.exit_codes import EXIT_JOBS_FAILED
from darnet_pl.utils.io import nearest_existing, probe_writable

log = logging.getLogger(__name__)


# Run folders this process asked Hydra to create (they did not exist before): only those may be removed again
# when the run stops at once on a user error (a folder given with hydra.run.dir=... to resume is never removed).
# Maps each such folder to the nearest folder above it that already existed: empty folders in between go too.
created_run_dirs: dict[Path, Path] = {}
# The same for the sweep folder of a multirun: Hydra makes it (and writes multirun.yaml) before it composes the
# jobs' configs, so a typo in a swept value would leave an empty sweep behind (remove_unused_sweep_dirs).
created_sweep_dirs: dict[Path, Path] = {}


def remove_unused_sweep_dirs() -> None:
    """Remove the sweep folders this command created that hold nothing but Hydra's multirun.yaml (no job ran)."""
    for sweep_dir, existed in created_sweep_dirs.items():
        if not sweep_dir.is_dir() or any(p.name != "multirun.yaml" for p in sweep_dir.iterdir()):
            continue
        (sweep_dir / "multirun.yaml").unlink(missing_ok=True)
        folder = sweep_dir
        while folder != existed and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent


class CheckOutputFolder(Callback):
    """An output folder that cannot be written stops the app with one line and exit code 2, before any job.

    Without it, Hydra fails while creating the job folder, with a traceback that does not say what to change.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check_values(config, whole=True)
        # the run folder itself is made by Hydra right after; its parent is what must be writable
        run_dir = Path(str(config.hydra.run.dir)).resolve()
        if not run_dir.exists():
            created_run_dirs[run_dir] = nearest_existing(run_dir)
        self._check(run_dir.parent)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check_values(config, whole=False)
        sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        if not sweep_dir.exists():
            created_sweep_dirs[sweep_dir] = nearest_existing(sweep_dir)
        self._check(sweep_dir)

    @staticmethod
    def _check_values(config: DictConfig, whole: bool) -> None:
        """A single run's values (``config.checks.check_config``: one line, exit 2, in a second and before its folder
        exists); a sweep's output names (an empty output folder or a ``task_name`` with ``..`` or ``/`` would put
        the job folders elsewhere; each job checks its own values)."""
        from darnet_pl.config.checks import check_config, check_output_names
        from darnet_pl.utils.exit_codes import EXIT_USER_ERROR

        try:
            (check_config if whole else check_output_names)(config)
        except ValueError as error:
            if os.environ.get("DARNET_FULL_ERROR"):
                raise
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(EXIT_USER_ERROR) from None

    @staticmethod
    def _check(folder: str | Path) -> None:
        from darnet_pl.utils.exit_codes import EXIT_USER_ERROR
        from darnet_pl.utils.io import StorageError

        try:
            probe_writable(Path(folder))
        except StorageError as error:
            print(f"error: {error}; choose another with paths.log_dir=<folder>", file=sys.stderr)
            raise SystemExit(EXIT_USER_ERROR) from None


class CheckJobNeeds(Callback):
    """What every job needs and no sweep value changes (cli.job_needs) is checked once, before the first job: a
    missing data root, an unwritable cache, a launcher or logger whose package is not installed, a value that
    cannot be right is one line and exit code 2, with no job folder made."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, frozenset())

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from darnet_pl.cli.job_needs import varied_keys

        self._check(config, varied_keys(config))

    @staticmethod
    def _check(config: DictConfig, varied: frozenset[str]) -> None:
        from darnet_pl.cli.job_needs import check_job_needs
        from darnet_pl.utils.errors import one_line
        from darnet_pl.utils.exit_codes import EXIT_USER_ERROR
        from darnet_pl.utils.io import StorageError

        try:
            check_job_needs(config, varied)
        except (ValueError, StorageError, ImportError) as error:
            if os.environ.get("DARNET_FULL_ERROR"):
                raise
            print(f"error: {one_line(error)}", file=sys.stderr)
            raise SystemExit(EXIT_USER_ERROR) from None


class ReportOnMultirunEnd(Callback):
    """Runs ``darnet-report <sweep dir>`` once every job of a sweep has finished (with its W&B report run where the
    jobs logged to W&B: ``wandb`` auto, on or off, as ``darnet-report --wandb``)."""

    def __init__(self, bootstrap: int = 1000, wandb: str = "auto") -> None:
        self.bootstrap = bootstrap
        self.wandb = wandb

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from darnet_pl.report.wandb_report import report_to_wandb
        from darnet_pl.report.writer import NothingToReport, write_report
        from darnet_pl.runs.job_guard import failed_jobs

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            result = write_report(sweep_dir, n_bootstrap=self.bootstrap)
        except NothingToReport:
            log.warning("no job of %s finished: no report written", sweep_dir)
        except (ValueError, OSError) as error:
            log.error("the sweep report could not be written: %s", str(error).strip().splitlines()[0])
        else:  # the sweep's result (its first line names the report's folder): the command's output
            print(result.summary, flush=True)
            for line in report_to_wandb(result, self.wandb):
                print(line, flush=True)
        failed = failed_jobs(sweep_dir)
        if failed:
            lines = [f"error: {len(failed)} job(s) of {sweep_dir} failed:"]
            lines += [f"  {job.relative_to(sweep_dir)}: {reason}" for job, reason in failed]
            print("\n".join(lines), file=sys.stderr)
            raise SystemExit(EXIT_JOBS_FAILED)

"""`python -m darnet_pl [overrides]`: the Hydra entry point. Nothing but wiring and exit codes.

A single run that stops on a user error prints one line, exits 2 and removes the run folder it had just made
(nothing half-written stays behind). A sweep job never stops the sweep: it records why it failed in its folder
(``failed.json``) and returns, and the end-of-sweep callback reports the failed jobs and makes the sweep exit 1.
"""

from __future__ import annotations

import logging
import shutil
import sys
import traceback
from pathlib import Path

import hydra
from omegaconf import DictConfig

from darnet_pl.cli.argv import RangeError, normalize_argv
from darnet_pl.cli.console import setup_console
from darnet_pl.config.resolvers import register_resolvers
from darnet_pl.utils.package_files import CONF_DIR

CONFIG_DIR = str(CONF_DIR)
# What a sweeper that optimises (Optuna) gets from a job: the selected checkpoint's validation score, never a
# test metric (selecting on the test set would bias every reported figure).
MONITORED_METRIC = "selected/val_score"

log = logging.getLogger("darnet_pl")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _run(cfg: DictConfig) -> float | None:
    setup_console(cfg)  # quiet unless verbose=true (cli.console)
    from hydra.core.hydra_config import HydraConfig

    from darnet_pl.utils.errors import in_multirun

    output_dir = Path(HydraConfig.get().runtime.output_dir)
    _log_to_own_file(output_dir)
    if in_multirun():
        return _sweep_job(cfg, output_dir)
    return _single_run(cfg, output_dir)


def _single_run(cfg: DictConfig, output_dir: Path) -> float | None:
    from darnet_pl.runs.job_guard import JobBusy, job_lock
    from darnet_pl.training.run import train
    from darnet_pl.utils.errors import user_errors
    from darnet_pl.utils.exit_codes import EXIT_USER_ERROR

    try:
        with user_errors(), job_lock(output_dir):
            metrics = train(cfg)
    except JobBusy as busy:
        print(f"error: {busy}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
    except SystemExit as stop:
        if stop.code == EXIT_USER_ERROR:
            _remove_new_stub(output_dir)
        raise
    return metrics.get(MONITORED_METRIC)


def _sweep_job(cfg: DictConfig, output_dir: Path) -> float | None:
    import os

    from darnet_pl.runs.job_guard import JobBusy, clear_failure, job_lock, record_failure
    from darnet_pl.training.run import train
    from darnet_pl.utils.errors import one_line, user_error_of
    from darnet_pl.utils.ranks import job_rank, owns_job

    try:
        with job_lock(output_dir):
            metrics = train(cfg)
    except JobBusy as busy:  # the console only: the job's log file belongs to the process running it
        print(f"warning: {busy}", file=sys.stderr)
        return None
    except Exception as error:
        if os.environ.get("DARNET_FULL_ERROR"):
            raise
        cause = user_error_of(error)
        message = one_line(cause) if cause is not None else f"{type(error).__name__}: {one_line(error)}"
        detail = None if cause is not None else traceback.format_exc()
        rank = job_rank()
        record_failure(output_dir, message if rank == 0 else f"rank {rank}: {message}", detail)
        log.error("job failed: %s", message)
        return None
    if owns_job():
        clear_failure(output_dir)
    return metrics.get(MONITORED_METRIC)


def _log_to_own_file(output_dir: Path) -> None:
    """A rank other than the job's owner logs into ``ddp_rank<k>.log``, not into the job's log (SLURM tasks run the
    whole command each; ranks started by our DDP launcher are given their file on the command line)."""
    from darnet_pl.distributed.ddp import rank_log_file
    from darnet_pl.utils.ranks import job_rank

    rank = job_rank()
    if rank == 0:
        return
    own = rank_log_file(output_dir, rank)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename) != own.resolve():
            root.removeHandler(handler)
            handler.close()
            replacement = logging.FileHandler(own)
            replacement.setFormatter(handler.formatter)
            replacement.setLevel(handler.level)
            root.addHandler(replacement)


def _remove_new_stub(output_dir: Path) -> None:
    """Remove a run folder this command created and that holds no training state (a run stopped at once)."""
    from darnet_pl.cli.hydra_callbacks import created_run_dirs
    from darnet_pl.runs.layout import CHECKPOINT_DIR, METRICS_FILE

    run_dir = output_dir.resolve()
    if run_dir not in created_run_dirs:
        return
    if (run_dir / CHECKPOINT_DIR).exists() or (run_dir / METRICS_FILE).exists():
        return
    logging.shutdown()  # close the run's log file before its folder goes
    shutil.rmtree(run_dir, ignore_errors=True)
    parent, existed = run_dir.parent, created_run_dirs[run_dir]
    while parent != existed and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent


def main() -> None:
    """Console entry: normalises the command line (ranges, -m, experiment/debug presets), then hands it to Hydra;
    a config that cannot be composed (a typo, an unknown option) is one line and exit 2 (cli.config_errors)."""
    from darnet_pl.cli.config_errors import config_errors_in_one_line

    register_resolvers()
    try:
        sys.argv = normalize_argv(sys.argv)
    except RangeError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    with config_errors_in_one_line():
        _run()


if __name__ == "__main__":
    main()

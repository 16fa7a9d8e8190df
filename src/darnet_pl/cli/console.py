"""The console of ``python -m darnet_pl``: quiet by default, everything with ``verbose=true`` (or ``hydra.verbose``).

Quiet, a run prints what it is, a progress bar on a terminal, one line per epoch and one end line
(``training.console``), plus the package's own notes, warnings and errors, plain (``warning: ...``), without
Hydra's timestamps. Other libraries' INFO messages go to the run's log file only. Noise that is never useful is
stopped where it starts, each case by its logger and message, never by a blanket filter:

- alembic's "setup plugin" INFO lines (optuna's storage, imported through MONAI): the ``alembic`` logger's level;
- Lightning's litlogger advert ("Tip: ... litlogger"): a filter on Lightning's rank-zero logger, by message;
- Lightning's ``isinstance(treespec, LeafSpec)`` deprecation: a warnings filter by message and module;
- the model summary ("Total FLOPs: 0", "bf16-mixed is not supported by the model summary"): not drawn
  (``training.console.SummaryIfVerbose``), nor Lightning's test table of float32 digits (run.py);
- the package's own Python warnings (an undefined metric) become one ``warning:`` line instead of two.

A user error is printed once, by whoever stops the run (utils.errors); the record it also logs carries
``console=False`` and reaches the log file only. Outside a job (Hydra launching jobs, a sweeper's notes),
``hydra.hydra_logging`` (conf/hydra/default.yaml) uses the same filter and format.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, TextIO

from omegaconf import DictConfig, open_dict

# The package's loggers (its Hydra sweeper plugin lives outside darnet_pl, where Hydra looks for plugins).
OURS = ("darnet_pl", "hydra_plugins.darnet_search")
# Lines of the package for the log file only: what the run's first or last line already says (training.console),
# and plumbing (the command each DDP rank runs).
LOG_FILE_ONLY = (
    ("darnet_pl.training.speed", "precision=auto"),
    ("darnet_pl.training.module", "memory_format=auto"),
    ("darnet_pl.data.datamodule", "fold %d split"),
    ("darnet_pl.training.run", "testing the best checkpoint"),
    ("darnet_pl.training.run", "test metrics written"),
    ("darnet_pl.distributed.ddp", "starting rank"),
)
LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric")
LIGHTNING_RANK_ZERO = ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero")
ADVERT = "litlogger"
LEAFSPEC = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
LEAFSPEC_MODULE = r"(pytorch_lightning|lightning\.pytorch)\.utilities\._pytree"
CHECKPOINT_DIR_NOT_EMPTY = r"Checkpoint directory .* exists and is not empty"
"""Lightning's warning when a run writes into a checkpoints/ folder that has files: a resumed job does exactly that
(its last.ckpt is what it resumes from), so the warning says nothing a user can act on."""
CHECKPOINT_MODULE = r"(pytorch_lightning|lightning\.pytorch)\.callbacks\.model_checkpoint"


def is_verbose(cfg: DictConfig) -> bool:
    from hydra.core.hydra_config import HydraConfig

    hydra_verbose = HydraConfig.get().verbose if HydraConfig.initialized() else False
    return bool(cfg.get("verbose", False)) or bool(hydra_verbose)


class ConsoleFilter(logging.Filter):
    """The package's records at INFO and above (but LOG_FILE_ONLY's, and those already printed); other libraries'
    at WARNING and above."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "console", True):
            return False
        ours = any(record.name == name or record.name.startswith(name + ".") for name in OURS)
        if record.levelno >= logging.WARNING:
            return True
        if not ours:
            return False
        message = record.msg if isinstance(record.msg, str) else ""
        return not any(record.name == name and message.startswith(start) for name, start in LOG_FILE_ONLY)


class ConsoleFormatter(logging.Formatter):
    """The message alone; ``warning: ``/``error: `` in front of those levels."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            return f"error: {message}"
        if record.levelno >= logging.WARNING:
            return f"warning: {message}"
        return message


class ConsoleHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes through tqdm, so that a line printed under a running progress bar does not tear it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:
            self.handleError(record)


class NoAdvert(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return ADVERT not in record.getMessage()


def hydra_formatter(verbose: bool = False) -> logging.Formatter:
    """``hydra.hydra_logging``'s console formatter (outside jobs): ours, or Hydra's own with verbose=true."""
    return logging.Formatter("[%(asctime)s][HYDRA] %(message)s") if verbose else ConsoleFormatter()


def hydra_filter(verbose: bool = False) -> logging.Filter:
    """``hydra.hydra_logging``'s console filter: ours, or none (every record) with verbose=true."""
    return logging.Filter() if verbose else ConsoleFilter()


def _own_warnings_as_lines(previous: Any) -> Any:
    """``warnings.showwarning`` that logs the package's own warning categories as one line and leaves every other
    library's warning to ``previous`` (so a new third-party warning still shows, in full)."""

    def show(
        message: Any,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if category.__module__.startswith("darnet_pl"):
            logging.getLogger(category.__module__).warning("%s", message)
        else:
            previous(message, category, filename, lineno, file, line)

    show.darnet_console = True  # type: ignore[attr-defined]
    return show


def quiet_console() -> None:
    """Install the quiet console on the root logger's console handler (Hydra's), and silence the known noise."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if type(handler) is logging.StreamHandler:  # Hydra's console handler (a FileHandler is a subclass)
            quiet = ConsoleHandler(handler.stream)
            quiet.setLevel(handler.level)
            quiet.setFormatter(ConsoleFormatter())
            quiet.addFilter(ConsoleFilter())
            root.removeHandler(handler)
            root.addHandler(quiet)
    for name in LIGHTNING_LOGGERS:  # imported before logging was configured, Lightning prints through its own handler
        own = logging.getLogger(name)
        for handler in [h for h in own.handlers if type(h) is logging.StreamHandler]:
            own.removeHandler(handler)
            own.propagate = True  # to the run's handlers: this console and the log file
    logging.getLogger("alembic").setLevel(logging.WARNING)
    for name in LIGHTNING_RANK_ZERO:
        rank_zero = logging.getLogger(name)
        if not any(isinstance(f, NoAdvert) for f in rank_zero.filters):
            rank_zero.addFilter(NoAdvert())
    warnings.filterwarnings("ignore", message=LEAFSPEC, module=LEAFSPEC_MODULE)
    warnings.filterwarnings("ignore", message=CHECKPOINT_DIR_NOT_EMPTY, module=CHECKPOINT_MODULE)
    if not getattr(warnings.showwarning, "darnet_console", False):
        warnings.showwarning = _own_warnings_as_lines(warnings.showwarning)


def setup_console(cfg: DictConfig) -> None:
    """Called once per job, after Hydra configured logging: quiet unless verbose=true or hydra.verbose (which then
    also sets ``verbose``, read by the progress bar, the model summary and the test table)."""
    if is_verbose(cfg):
        with open_dict(cfg):
            cfg.verbose = True
        return
    quiet_console()

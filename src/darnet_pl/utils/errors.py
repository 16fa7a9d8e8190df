"""User errors end with one line naming the file or key and the problem, and a non-zero exit; bugs keep their
traceback."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator

from hydra.errors import InstantiationException
from omegaconf.errors import MissingMandatoryValue

from darnet_pl.utils.console import Terminated, sigterm_raises
from darnet_pl.utils.exit_codes import EXIT_SIGINT, EXIT_SIGTERM, EXIT_USER_ERROR
from darnet_pl.utils.io import StorageError

log = logging.getLogger("darnet_pl")


class OutOfMemoryAdvice(RuntimeError):
    """The accelerator ran out of memory; the message names the settings that would fit."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    OutOfMemoryAdvice,
    StorageError,
    ValueError,
    FileNotFoundError,
    PermissionError,
    FloatingPointError,
    MissingMandatoryValue,
)


def user_error_of(error: BaseException) -> BaseException | None:
    """The user error behind ``error`` (Hydra wraps constructor errors in InstantiationException), or None."""
    while isinstance(error, InstantiationException) and error.__cause__ is not None:
        error = error.__cause__
    return error if isinstance(error, USER_ERRORS) else None


def one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class JobFailed(RuntimeError):
    """A sweep job stopped by a user error: the sweep goes on with the other jobs and fails at the end."""


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can fix into ``error: <message>`` and exit code 2 (DARNET_FULL_ERROR=1: traceback).

    Inside a sweep the job fails with a one-line JobFailed instead of exiting, so the other jobs still run.
    """
    try:
        yield
    except Exception as error:
        cause = user_error_of(error)
        if cause is None or os.environ.get("DARNET_FULL_ERROR"):
            raise
        message = one_line(cause)
        log.error("%s", message, extra={"console": False})  # the log file's copy: the console gets the line below
        if in_multirun():
            raise JobFailed(message) from None
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None


def console_tool(body: Callable[[], int], stopped: str, errors: tuple[type[BaseException], ...] = ()) -> int:
    """Run a console tool's body (``darnet-predict``, ``-evaluate``, ``-export``, ``-report``) and return its exit code.

    A user error (``USER_ERRORS`` and the tool's own ``errors``) is one line ``error: ...`` and 2 (DARNET_FULL_ERROR=1:
    the traceback); Ctrl-C and SIGTERM print ``stopped`` (what was kept) and give 130 and 143.
    """
    try:
        with sigterm_raises():
            return body()
    except (*USER_ERRORS, *errors) as error:
        if os.environ.get("DARNET_FULL_ERROR"):
            raise
        print(f"error: {one_line(error)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (KeyboardInterrupt, Terminated) as stop:
        print(stopped, file=sys.stderr)
        return EXIT_SIGTERM if isinstance(stop, Terminated) else EXIT_SIGINT

"""What the console tools (``darnet-predict``, ``darnet-report``, ``darnet-export``) share: one-line usage errors
and exit codes.

argparse answers a bad option with the whole usage block and then the error; the tools promise one line,
``error: <option>: <problem>``, and exit code 2, whatever went wrong on the command line.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import NoReturn

from darnet_pl.utils.exit_codes import EXIT_USER_ERROR


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr (``--help`` still shows the usage)."""

    def error(self, message: str) -> NoReturn:
        text = message.removeprefix("argument ").replace("\n", " ")
        print(f"error: {text} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR)


class Terminated(BaseException):
    """SIGTERM turned into an exception, so that it unwinds like Ctrl-C (``KeyboardInterrupt``) does."""


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Inside the block SIGTERM (``kill``, a batch system's time limit) raises ``Terminated`` in the main thread.

    The previous handler comes back afterwards: the tools' ``main`` is also called in-process (tests, notebooks).
    Outside the main thread, where Python cannot set handlers, nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

"""Worker processes that stop with the command that started them (``darnet-prepare``'s conversion, the audit).

A plain ``ProcessPoolExecutor`` outlives an interrupted parent: on SIGTERM the parent dies at once and its
workers, orphaned, go on converting (and keep the parent's output pipes open); on Ctrl-C, which a terminal sends
to the whole process group, every worker prints its own ``KeyboardInterrupt`` traceback. ``worker_pool`` gives
workers that

- ignore Ctrl-C (the parent alone decides what a stop means) and leave on SIGTERM without a traceback, unwinding
  the task in progress first, so that an atomic write in progress removes its temporary file;
- are stopped by the parent when the block it runs them in ends with an exception (Ctrl-C, SIGTERM turned into
  ``Terminated``, a strict-mode error): pending tasks are cancelled, running ones ended, the workers joined;
- die with the parent even when it is killed outright (``kill -9``): Linux's parent-death signal.

Signals are blocked while a worker is being started (it inherits the mask) and unblocked once its handlers are
set, so a Ctrl-C that arrives during its start-up is neither lost in the parent nor a traceback in the worker.
Workers are spawned, not forked: the caller may hold threads (torch).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from darnet_pl.utils.exit_codes import EXIT_SIGTERM

log = logging.getLogger(__name__)

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
STOP_GRACE_S = 5.0
"""How long a stopped worker may take to unwind its task before it is killed."""
WAIT_SLICE_S = 0.25
"""The longest a Ctrl-C or SIGTERM waits while ``completed`` waits for results."""
_PR_SET_PDEATHSIG = 1


def available_cpus() -> int:
    """The CPU cores this process may run on (its affinity: a batch system's allocation), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def worker_count(requested: int, jobs: int, setting: str) -> int:
    """Processes to start for ``jobs`` tasks: ``requested`` (negative: one per core), at most one per core and per
    task; asking for more cores than there are is capped with a warning naming ``setting`` (e.g.
    ``data.source.workers``): more processes than cores only add memory and switching."""
    cpus = available_cpus()
    if requested < 0:
        requested = cpus
    elif requested > cpus:
        log.warning("%s=%d is more than the %d CPU core(s) available: using %d", setting, requested, cpus, cpus)
        requested = cpus
    return max(0, min(requested, jobs))


class _StopTask(BaseException):
    """Raised in a worker by SIGTERM during a task: unwinds it (temporary files removed), then the worker exits."""


_busy = False
"""True while this worker runs a task (SIGTERM then unwinds it; an idle worker just exits)."""


def _on_sigterm(signum: int, frame: object) -> None:
    if not _busy:
        os._exit(EXIT_SIGTERM)
    # Once: a second SIGTERM (the pool's own clean-up terminates the other workers when the first one leaves)
    # would cut the unwinding short, between an atomic write's failure and the removal of its temporary file.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise _StopTask


def _worker_started(parent_pid: int) -> None:
    """In each worker, first: Ctrl-C ignored, SIGTERM leaves cleanly, death with the parent; then signals unblocked."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    with contextlib.suppress(OSError, AttributeError):  # Linux only: elsewhere the parent's stop must do
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the line above
        os._exit(EXIT_SIGTERM)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def _run_task(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    global _busy
    _busy = True
    try:
        return function(*args, **kwargs)
    except _StopTask:
        pass
    finally:
        _busy = False
    # Stopped. Leave only now that the traceback is gone: what the task left suspended (a context manager entered
    # just before the stop, an atomic write's generator) is finalised, and its temporary file removed, first.
    gc.collect()
    os._exit(EXIT_SIGTERM)


class _StoppablePool(ProcessPoolExecutor):
    """Tasks run through ``_run_task``; a worker started by ``submit`` inherits blocked stop signals."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            return super().submit(_run_task, fn, *args, **kwargs)
        finally:  # a stop signal that came meanwhile is delivered here, in the parent
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``workers`` spawned processes for the block; if the block raises (Ctrl-C, ``Terminated``, an
    error), the workers are stopped before the exception goes on, so nothing of theirs runs after the command."""
    pool = _StoppablePool(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_started,
        initargs=(os.getpid(),),
    )
    try:
        yield pool
    except BaseException:
        stop_workers(pool)
        raise
    pool.shutdown(wait=True)


def stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started, SIGTERM the workers (they unwind their task), kill those still there after
    ``STOP_GRACE_S``, and join them all. (Python 3.14 has ``terminate_workers``; 3.11 keeps them in ``_processes``.)"""
    with _stop_signals_ignored():  # a second Ctrl-C must not cut the stop short and leave workers behind
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            with contextlib.suppress(OSError, ValueError):
                process.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for process in processes:
            with contextlib.suppress(OSError, ValueError):
                process.join(max(0.0, deadline - time.monotonic()))
                if process.is_alive():
                    process.kill()
                    process.join()


def completed(futures: Iterable[Future]) -> Iterator[Future]:
    """``futures`` as they finish, for a block run in ``worker_pool``.

    Ctrl-C and SIGTERM are held back while ``concurrent.futures.wait`` runs and acted on as soon as it returns (at
    most ``WAIT_SLICE_S`` later). Raised inside it, where it holds the locks of every future, they would leave some
    of those locks held; the pool's own thread, which cancels the pending futures on the way out, then waits for
    them for ever and the command never exits.
    """
    pending = set(futures)
    while pending:
        with _stop_signals_deferred():
            done, pending = wait(pending, timeout=WAIT_SLICE_S, return_when=FIRST_COMPLETED)
        yield from done


@contextlib.contextmanager
def _stop_signals_ignored() -> Iterator[None]:
    """Ctrl-C and SIGTERM ignored for the block (handlers can only be changed in the main thread)."""
    with _stop_signals_handled(signal.SIG_IGN):
        yield


@contextlib.contextmanager
def _stop_signals_deferred() -> Iterator[None]:
    """Ctrl-C and SIGTERM noted during the block and handled after it, as their own handlers would have (a signal
    whose handler ignores it does not hide the other one)."""
    caught: list[int] = []
    with _stop_signals_handled(lambda signum, _frame: caught.append(signum)) as previous:
        yield
    for signum in dict.fromkeys(caught):
        handler = previous.get(signum)
        if handler is None or handler == signal.SIG_DFL:
            signal.raise_signal(signum)  # the default action: the process ends as it would have
        elif callable(handler):
            handler(signum, None)


@contextlib.contextmanager
def _stop_signals_handled(handler: Any) -> Iterator[dict[int, Any]]:
    """``handler`` for Ctrl-C and SIGTERM during the block; yields the handlers it replaced (none outside the main
    thread, where handlers cannot be changed). A stop that the old handler raises half-way through the swap, or the
    restored one half-way back, still leaves every handler restored."""
    if threading.current_thread() is not threading.main_thread():
        yield {}
        return
    previous: dict[int, Any] = {}
    try:
        for signum in STOP_SIGNALS:
            previous[signum] = signal.signal(signum, handler)
        yield previous
    finally:
        _restore_handlers(list(previous.items()))


def _restore_handlers(replaced: list[tuple[int, Any]]) -> None:
    if not replaced:
        return
    (signum, handler), rest = replaced[0], replaced[1:]
    try:
        signal.signal(signum, signal.SIG_DFL if handler is None else handler)
    finally:
        _restore_handlers(rest)

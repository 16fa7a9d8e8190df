"""GPUs per parallel worker for ``hydra/launcher=local_parallel`` (joblib): jobs of a sweep run side by side.

Joblib (loky) keeps ``n_jobs`` worker processes and hands each the next job; it has no notion of a worker index
that a job could turn into GPUs, and a process that has touched CUDA can no longer change
``CUDA_VISIBLE_DEVICES``. So each worker claims as many GPUs as a job asks for (``trainer.devices``: a number, a
list, or ``auto``/-1 = an equal share of the visible GPUs) the first time it runs a job - by an exclusive ``flock``
on ``<lock dir>/gpu<k>.lock`` per GPU, released by the OS when the worker exits - and keeps them for every later
job; a DDP job's extra ranks inherit the worker's ``CUDA_VISIBLE_DEVICES``. A combination that cannot fit (``n_jobs``
x GPUs per job above the visible GPUs) is refused before any job starts. CPU jobs are not pinned. The claim happens
in Hydra's ``on_job_start``, before the job imports anything that initialises CUDA.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)

_SWEEP_DEVICES = "DARNET_SWEEP_CUDA_VISIBLE_DEVICES"  # the GPU list the sweep started with, kept for later jobs
_claimed: list[tuple[str, TextIO]] = []  # (GPU id, the open lock file that holds the claim) of this process


def claim_gpus(gpus: Sequence[str], count: int, lock_dir: Path, timeout_s: float = 600.0) -> list[str]:
    """This process's ``count`` GPUs: those it claimed before, else the first of ``gpus`` no other process holds."""
    if _claimed:
        if len(_claimed) != count:
            raise RuntimeError(f"this worker holds {len(_claimed)} GPU(s) but a job now asks for {count}")
        return [gpu for gpu, _ in _claimed]
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    while True:
        held: list[tuple[str, TextIO]] = []
        for gpu in gpus:
            handle = (lock_dir / f"gpu{gpu}.lock").open("a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            held.append((gpu, handle))
            if len(held) == count:
                _claimed.extend(held)
                return [gpu for gpu, _ in held]
        for _, handle in held:  # not enough free: give back what was taken, so two workers never deadlock
            handle.close()
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {count} free GPU(s) among {list(gpus)} after {timeout_s:.0f} s (locks: {lock_dir})")
        time.sleep(1.0)


def claim_gpu(gpus: Sequence[str], lock_dir: Path, timeout_s: float = 600.0) -> str:
    """This process's one GPU (``claim_gpus`` of one)."""
    return claim_gpus(gpus, 1, lock_dir, timeout_s)[0]


def gpus_per_job(trainer: Any, n_visible: int, n_jobs: int) -> int:
    """How many GPUs one job of the sweep uses (0 for a CPU job)."""
    accelerator = str(trainer.get("accelerator", "auto"))
    if accelerator == "cpu":
        return 0
    devices = trainer.get("devices", 1)
    if isinstance(devices, Sequence) and not isinstance(devices, str):
        return len(devices)
    if devices in ("auto", -1, "-1"):
        return max(1, n_visible // max(1, n_jobs))
    return int(devices)


class OneGPUPerWorker(Callback):
    """Hydra callback: before each job, make ``CUDA_VISIBLE_DEVICES`` this worker's own GPUs.

    Args:
        gpus: GPU ids to share out; default: the ``CUDA_VISIBLE_DEVICES`` the sweep was started with, else every GPU
            torch sees (on a machine without any, ``0 .. n_jobs x GPUs per job - 1``, which only names locks).
        lock_dir: where the claims live; default ``<sweep dir>/.gpu_locks``.
    """

    def __init__(self, gpus: Sequence[int | str] | str | None = None, lock_dir: str | None = None) -> None:
        self.gpus = gpus
        self.lock_dir = lock_dir

    def _gpus(self, config: DictConfig, per_job: int = 1) -> list[str]:
        if self.gpus is not None:
            items = self.gpus.split(",") if isinstance(self.gpus, str) else self.gpus
            return [str(g).strip() for g in items if str(g).strip()]
        inherited = os.environ.get(_SWEEP_DEVICES, os.environ.get("CUDA_VISIBLE_DEVICES"))
        if inherited:
            return [g.strip() for g in inherited.split(",") if g.strip()]
        seen = _visible_gpu_count()
        n_jobs = max(1, int(config.hydra.launcher.get("n_jobs", 1)))
        return [str(i) for i in range(seen or n_jobs * max(1, per_job))]

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        n_jobs = max(1, int(config.hydra.launcher.get("n_jobs", 1)))
        gpus = self._gpus(config, per_job=1)
        per_job = gpus_per_job(config.trainer, len(gpus), n_jobs)
        known = self.gpus is not None or bool(os.environ.get("CUDA_VISIBLE_DEVICES")) or _visible_gpu_count() > 0
        if per_job and known and n_jobs * per_job > len(gpus):
            from darnet_pl.utils.exit_codes import EXIT_USER_ERROR

            print(
                f"error: hydra.launcher.n_jobs={n_jobs} jobs at once x {per_job} GPU(s) each (trainer.devices) need "
                f"{n_jobs * per_job} GPUs, but {len(gpus)} are visible ({','.join(gpus)}): lower "
                f"hydra.launcher.n_jobs or trainer.devices",
                file=sys.stderr,
            )
            raise SystemExit(EXIT_USER_ERROR)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        n_jobs = max(1, int(config.hydra.launcher.get("n_jobs", 1)))
        gpus = self._gpus(config)
        per_job = gpus_per_job(config.trainer, len(gpus), n_jobs)
        if per_job == 0:
            return  # a CPU job
        if self.gpus is None and os.environ.get("CUDA_VISIBLE_DEVICES"):
            # remember the sweep's own list: this process's CUDA_VISIBLE_DEVICES is about to become its share
            os.environ.setdefault(_SWEEP_DEVICES, os.environ["CUDA_VISIBLE_DEVICES"])
        lock_dir = Path(self.lock_dir or Path(config.hydra.sweep.dir) / ".gpu_locks")
        mine = claim_gpus(gpus, per_job, lock_dir)
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(mine)
        log.info("worker %d runs this job on GPU %s", os.getpid(), ",".join(mine))


def _visible_gpu_count() -> int:
    """GPUs torch sees from this process (NVML where available: no CUDA context is created)."""
    try:
        import torch

        return int(torch.cuda.device_count())
    except Exception:  # no CUDA build, no driver
        return 0

"""One GPU per parallel worker for ``hydra/launcher=local_parallel`` (joblib): jobs of a sweep run side by side.

Joblib (loky) keeps ``n_jobs`` worker processes and hands each the next job; it has no notion of a worker index
that a job could turn into a GPU, and a process that has touched CUDA can no longer change
``CUDA_VISIBLE_DEVICES``. So each worker claims a GPU the first time it runs a job - by an exclusive ``flock`` on
``<lock dir>/gpu<k>.lock``, released by the OS when the worker exits - and keeps it for every later job. With
``n_jobs`` equal to the number of GPUs every GPU runs exactly one job at a time. The claim happens in Hydra's
``on_job_start``, before the job imports anything that initialises CUDA.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)

_SWEEP_DEVICES = "DARNET_SWEEP_CUDA_VISIBLE_DEVICES"  # the GPU list the sweep started with, kept for later jobs
_claimed: tuple[str, TextIO] | None = None  # (GPU id, the open lock file that holds the claim) of this process


def claim_gpu(gpus: Sequence[str], lock_dir: Path, timeout_s: float = 600.0) -> str:
    """This process's GPU: the one it claimed before, else the first of ``gpus`` no other process holds."""
    global _claimed
    if _claimed is not None:
        return _claimed[0]
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    while True:
        for gpu in gpus:
            handle = (lock_dir / f"gpu{gpu}.lock").open("a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            _claimed = (gpu, handle)
            return gpu
        if time.monotonic() > deadline:
            raise RuntimeError(f"no free GPU among {list(gpus)} after {timeout_s:.0f} s (locks in {lock_dir})")
        time.sleep(1.0)


class OneGPUPerWorker(Callback):
    """Hydra callback: before each job, make ``CUDA_VISIBLE_DEVICES`` this worker's own GPU.

    Args:
        gpus: GPU ids to share out; default: the ``CUDA_VISIBLE_DEVICES`` the sweep was started with, else
            ``0 .. n_jobs - 1``.
        lock_dir: where the claims live; default ``<sweep dir>/.gpu_locks``.
    """

    def __init__(self, gpus: Sequence[int | str] | str | None = None, lock_dir: str | None = None) -> None:
        self.gpus = gpus
        self.lock_dir = lock_dir

    def _gpus(self, config: DictConfig) -> list[str]:
        if self.gpus is not None:
            items = self.gpus.split(",") if isinstance(self.gpus, str) else self.gpus
            return [str(g).strip() for g in items if str(g).strip()]
        inherited = os.environ.get(_SWEEP_DEVICES, os.environ.get("CUDA_VISIBLE_DEVICES"))
        if inherited:
            return [g.strip() for g in inherited.split(",") if g.strip()]
        return [str(i) for i in range(max(1, int(config.hydra.launcher.get("n_jobs", 1))))]

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        lock_dir = Path(self.lock_dir or Path(config.hydra.sweep.dir) / ".gpu_locks")
        gpus = self._gpus(config)
        if self.gpus is None and os.environ.get("CUDA_VISIBLE_DEVICES"):
            # remember the sweep's own list: this process's CUDA_VISIBLE_DEVICES is about to become one GPU
            os.environ.setdefault(_SWEEP_DEVICES, os.environ["CUDA_VISIBLE_DEVICES"])
        gpu = claim_gpu(gpus, lock_dir)
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
        log.info("worker %d runs this job on GPU %s", os.getpid(), gpu)

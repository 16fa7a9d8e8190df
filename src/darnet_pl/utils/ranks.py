"""Which process of a job this is: one answer for every launcher a job can run under.

A job may run as one process, or as several ranks started by Lightning's DDP launcher (``LOCAL_RANK``/``NODE_RANK``
in the extra ranks), by torchrun (``RANK``/``LOCAL_RANK``/``GROUP_RANK``) or by SLURM through submitit, where every
task runs the whole job and only ``SLURM_PROCID``/``SLURM_LOCALID``/``SLURM_NTASKS`` tell them apart. Exactly one of
them owns the job folder: it takes the job lock, writes the job's records (config, W&B run id, failure record) and
the job's log file; the others train beside it. Asking any one variable alone (as the job lock once did with the
Lightning/torchrun names only) makes every SLURM task the owner: all but one then skip the job and the one left
waits for ranks that never join.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


def _int(env: Mapping[str, str], name: str) -> int | None:
    try:
        return int(env[name])
    except (KeyError, ValueError):
        return None


def job_rank(env: Mapping[str, str] | None = None) -> int:
    """This process's global rank in its job (0 for a plain run), from the launcher's environment variables."""
    env = os.environ if env is None else env
    rank = _int(env, "RANK")  # torchrun, and Lightning's launcher once the process group is set up
    if rank is not None:
        return rank
    if (_int(env, "SLURM_NTASKS") or 1) > 1:  # several SLURM tasks run this job (srun, submitit)
        procid = _int(env, "SLURM_PROCID")
        if procid is not None:
            return procid
    local = _int(env, "LOCAL_RANK") or 0
    node = _int(env, "NODE_RANK") or _int(env, "GROUP_RANK") or 0
    per_node = _int(env, "LOCAL_WORLD_SIZE") or local + 1
    return node * per_node + local


def local_rank(env: Mapping[str, str] | None = None) -> int:
    """This process's rank on its machine (which GPU it uses)."""
    env = os.environ if env is None else env
    rank = _int(env, "LOCAL_RANK")
    if rank is not None:
        return rank
    if (_int(env, "SLURM_NTASKS") or 1) > 1:
        return _int(env, "SLURM_LOCALID") or 0
    return 0


def owns_job(env: Mapping[str, str] | None = None) -> bool:
    """True in the one process that owns the job folder (global rank 0)."""
    return job_rank(env) == 0

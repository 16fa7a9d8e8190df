"""DDP that runs one Hydra *job* on several processes, also inside a multirun (``-m``) and a SLURM array.

Lightning's DDP launcher starts ranks 1..N-1 by re-running ``sys.argv``. Under a Hydra multirun that command holds
``-m`` and the sweep, so every extra rank would start a whole sweep of its own; and because the launcher leaves
``LOCAL_RANK``/``WORLD_SIZE``/``MASTER_PORT`` in the environment and the process group alive, the next job of the
sweep believes its processes were started externally and waits for ranks that never come (the hang).
:class:`HydraDDPStrategy` fixes both, at the hook Lightning provides for it (the strategy's launcher):

- ranks > 0 run exactly the parent's job: ``python -m darnet_pl <the job's own overrides> hydra.mode=RUN
  hydra.run.dir=<the job's output dir> hydra.output_subdir=null``, so all ranks share one output folder and no
  rank sweeps;
- at the end of ``fit`` every rank destroys its process group, and the launching process waits for its children
  and restores the environment and thread count it had, so the next job starts clean.

Only global rank 0 logs (Lightning's loggers are rank-zero-only) and writes results; ``train`` tests on one device
(``single_device_trainer``) so no test scan is counted twice. :class:`AllReduceSyncBatchNorm` synchronises
BatchNorm statistics on any backend (``torch.nn.SyncBatchNorm`` is GPU-only), so DDP on CPU computes the
single-process result for the same global batch.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from lightning_fabric.strategies.launchers.subprocess_script import _ChildProcessObserver
from lightning_fabric.utilities.distributed import _set_num_threads_if_needed
from pytorch_lightning.callbacks import Checkpoint, LearningRateMonitor, ModelSummary, ProgressBar
from pytorch_lightning.plugins.layer_sync import LayerSync
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.strategies.launchers.subprocess_script import _basic_subprocess_cmd, _SubprocessScriptLauncher
from pytorch_lightning.trainer.states import TrainerStatus
from torch import nn

from darnet_pl.distributed.sync_batchnorm import GlobalBatchNorm, to_global_batchnorm, to_plain_batchnorm

log = logging.getLogger(__name__)

# what the subprocess launcher writes into the launching process's environment
LAUNCH_ENV_KEYS = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "OMP_NUM_THREADS")
CHILD_EXIT_TIMEOUT_S = 300.0


def _quote(value: str) -> str:
    """A Hydra override value that may hold '=', spaces or quotes (output folders do: ``.../debug=tiny/fold0``)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def hydra_job_command(local_rank: int) -> tuple[list[str], str]:
    """The command and working directory that make rank ``local_rank`` run the current Hydra job, and only it."""
    from hydra.core.hydra_config import HydraConfig

    import __main__

    hydra_cfg = HydraConfig.get()
    output_dir = str(hydra_cfg.runtime.output_dir)
    spec = getattr(__main__, "__spec__", None)
    program = [sys.executable, os.path.abspath(sys.argv[0])] if spec is None else [sys.executable, "-m", spec.name]
    command = [
        *program,
        *hydra_cfg.overrides.task,  # the job's own overrides: swept values included, -m and other values not
        "hydra.mode=RUN",
        f"hydra.run.dir={_quote(output_dir)}",
        "hydra.output_subdir=null",  # rank 0 writes .hydra/
    ]
    handlers = (hydra_cfg.get("job_logging") or {}).get("handlers") or {}
    if "file" in handlers:  # a log of its own beside rank 0's
        log_file = str(Path(output_dir) / f"ddp_rank{local_rank}.log")
        command.append(f"hydra.job_logging.handlers.file.filename={_quote(log_file)}")
    return command, str(hydra_cfg.runtime.cwd)


class _StoppableObserver(_ChildProcessObserver):
    """Lightning's child watchdog (a failed rank kills the whole process tree), which can be told to stand down."""

    stopped = False

    def _run(self) -> bool:
        return True if self.stopped else super()._run()


class HydraJobLauncher(_SubprocessScriptLauncher):
    """Starts ranks 1..N-1 on the current Hydra job (see module doc), and can undo what launching changed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.observer: _StoppableObserver | None = None
        self._saved_env: dict[str, str | None] = {}
        self._saved_threads = torch.get_num_threads()

    def launch(self, function: Callable, *args: Any, trainer: pl.Trainer | None = None, **kwargs: Any) -> Any:
        self.cluster_environment.validate_settings(num_devices=self.num_processes, num_nodes=self.num_nodes)
        self._saved_env = {key: os.environ.get(key) for key in LAUNCH_ENV_KEYS}
        self._saved_threads = torch.get_num_threads()
        if not self.cluster_environment.creates_processes_externally:
            self._call_children_scripts()
            self.observer = _StoppableObserver(main_pid=os.getpid(), child_processes=self.procs)
            self.observer.start()
        _set_num_threads_if_needed(num_processes=self.num_processes)
        return function(*args, **kwargs)

    def _call_children_scripts(self) -> None:
        from hydra.core.hydra_config import HydraConfig

        self._check_can_spawn_children()
        env = self.cluster_environment
        os.environ["MASTER_ADDR"] = env.main_address
        os.environ["MASTER_PORT"] = str(env.main_port)
        os.environ["NODE_RANK"] = str(env.node_rank())
        os.environ["LOCAL_RANK"] = str(env.local_rank())
        os.environ["WORLD_SIZE"] = str(self.num_processes * self.num_nodes)
        for local_rank in range(1, self.num_processes):
            child_env = {**os.environ, "LOCAL_RANK": str(local_rank)}
            if HydraConfig.initialized():
                command, cwd = hydra_job_command(local_rank)
            else:
                command, cwd = list(_basic_subprocess_cmd()), None
            log.info("starting rank %d: %s", local_rank, " ".join(command))
            self.procs.append(subprocess.Popen(command, env=child_env, cwd=cwd))

    def finish(self, failed: bool) -> None:
        """Wait for (or, after a failure, stop) the ranks this process started; restore env and threads."""
        if self.observer is not None:
            self.observer.stopped = True
        for proc in self.procs:
            if failed:
                proc.terminate()
            try:
                code = proc.wait(timeout=CHILD_EXIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            if code != 0 and not failed:
                log.warning("DDP rank process %d exited with code %s", proc.pid, code)
        self.procs = []
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        torch.set_num_threads(self._saved_threads)


class HydraDDPStrategy(DDPStrategy):
    """``DDPStrategy`` (start method popen) for Hydra jobs: the extra ranks run this job, and each job cleans up."""

    strategy_name = "hydra_ddp"

    def _configure_launcher(self) -> None:
        assert self.cluster_environment is not None
        self._launcher = HydraJobLauncher(self.cluster_environment, self.num_processes, self.num_nodes)

    def teardown(self) -> None:
        trainer = self.lightning_module.trainer if self.lightning_module is not None else None
        failed = trainer is not None and trainer.state.status == TrainerStatus.INTERRUPTED
        super().teardown()
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        if isinstance(self._launcher, HydraJobLauncher):
            self._launcher.finish(failed=failed)


# callbacks of fitting (or that a new Trainer makes itself); the others (e.g. test-time logging) carry over
_FIT_ONLY_CALLBACKS = (Checkpoint, LearningRateMonitor, ProgressBar, ModelSummary)


def single_device_trainer(trainer: pl.Trainer) -> pl.Trainer:
    """``trainer`` itself on one process; after DDP, a fresh one-device Trainer on the same kind of device.

    Testing under DDP would pad the test set with repeated scans (DistributedSampler) and split the predictions
    over processes; the paper's metrics are over each test scan exactly once, so rank 0 tests alone.
    """
    if trainer.world_size == 1:
        return trainer
    from lightning_fabric.plugins.environments import LightningEnvironment

    root = trainer.strategy.root_device
    return pl.Trainer(
        accelerator="gpu" if root.type == "cuda" else root.type,
        devices=[root.index or 0] if root.type == "cuda" else 1,
        num_nodes=1,
        precision=trainer.precision,
        logger=trainer.loggers or False,
        callbacks=[c for c in trainer.callbacks if not isinstance(c, _FIT_ONLY_CALLBACKS)],
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=trainer.default_root_dir,
        deterministic=torch.are_deterministic_algorithms_enabled(),
        plugins=[LightningEnvironment()],  # not SLURM's: it would insist on one process per task
    )


class AllReduceSyncBatchNorm(LayerSync):
    """Lightning ``LayerSync`` plugin: global-batch BatchNorm on CPU/gloo (``sync_batchnorm=True`` is GPU-only).

    Use it instead of ``sync_batchnorm: true``:
    ``plugins: [{_target_: darnet_pl.distributed.ddp.AllReduceSyncBatchNorm}]``.
    """

    def apply(self, model: nn.Module) -> nn.Module:
        return to_global_batchnorm(model)

    def revert(self, model: nn.Module) -> nn.Module:
        return to_plain_batchnorm(model)


__all__ = [
    "AllReduceSyncBatchNorm",
    "GlobalBatchNorm",
    "HydraDDPStrategy",
    "HydraJobLauncher",
    "hydra_job_command",
    "single_device_trainer",
]

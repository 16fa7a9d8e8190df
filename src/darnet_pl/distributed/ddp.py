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

import _thread
import logging
import os
import signal
import subprocess
import sys
import time
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
ENTRY_MODULE = "darnet_pl"
# how a collective in this process reports a rank that died (gloo, NCCL), and how long to wait for its exit code
LOST_PEER_SIGNS = ("Connection closed by peer", "Connection reset by peer", "remote worker", "NCCL communicator")
LOST_PEER_WAIT_S = 60.0  # what every extra rank runs: python -m darnet_pl


def _quote(value: str) -> str:
    """A Hydra override value that may hold '=', spaces or quotes (output folders do: ``.../debug=tiny/fold0``)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def config_options(hydra_cfg: Any) -> list[str]:
    """The options that make another process compose from the same configs: the primary config folder (where it is
    not the package's own), every ``--config-dir`` the user added, and the config name."""
    from darnet_pl.utils.package_files import CONF_DIR

    options: list[str] = []
    for source in hydra_cfg.runtime.get("config_sources") or []:
        if source.get("schema") != "file":
            continue
        if source.get("provider") == "main" and Path(source.path).resolve() != Path(CONF_DIR).resolve():
            options.append(f"--config-path={source.path}")
        elif source.get("provider") == "command-line":
            options.append(f"--config-dir={source.path}")
    return [*options, f"--config-name={hydra_cfg.job.config_name}"]


def hydra_job_command(local_rank: int) -> tuple[list[str], str]:
    """The command and working directory that make rank ``local_rank`` run the current Hydra job, and only it.

    Always ``python -m darnet_pl``, never the current process's own command: inside a parallel launcher's worker
    (joblib/loky) that is the worker's bootstrap module, and under ``darnet-train`` a script path.
    """
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    output_dir = str(hydra_cfg.runtime.output_dir)
    command = [
        sys.executable,
        "-m",
        ENTRY_MODULE,
        *config_options(hydra_cfg),
        *hydra_cfg.overrides.task,  # the job's own overrides: swept values included, -m and other values not
        "hydra.mode=RUN",
        f"hydra.run.dir={_quote(output_dir)}",
        "hydra.output_subdir=null",  # rank 0 writes .hydra/
    ]
    handlers = (hydra_cfg.get("job_logging") or {}).get("handlers") or {}
    if "file" in handlers:  # a log of its own beside rank 0's
        command.append(f"hydra.job_logging.handlers.file.filename={_quote(str(rank_log_file(output_dir, local_rank)))}")
    return command, str(hydra_cfg.runtime.cwd)


def rank_log_file(output_dir: str | Path, rank: int) -> Path:
    """The log file of a job's rank ``rank`` > 0 (rank 0 writes the job's own log)."""
    return Path(output_dir) / f"ddp_rank{rank}.log"


class RankFailed(RuntimeError):
    """An extra rank of this DDP job died: the job fails (its ``failed.json`` says which rank), the sweep goes on."""


class _RankWatch(_ChildProcessObserver):
    """Lightning's child watchdog, changed so that a failed rank ends its job, not the process that runs the sweep.

    Lightning's observer SIGKILLs the launching process as soon as a child fails; but under a Hydra multirun that
    process is the sweep itself. Here the other extra ranks are killed, and the launching process is left to fail at
    its next collective (gloo reports the lost peer at once), which ends the job through the usual error path. Only
    if it has not unwound after ``grace_s`` (a collective that waits on a dead peer, e.g. NCCL before its timeout) is
    it interrupted, and after twice that killed as Lightning would.
    """

    def __init__(self, main_pid: int, child_processes: list[subprocess.Popen], grace_s: float = 60.0) -> None:
        super().__init__(main_pid=main_pid, child_processes=child_processes, sleep_period=1)
        self.grace_s = grace_s
        self.stopped = False
        self.failed_since: float | None = None
        self.interrupted = False

    def _run(self) -> bool:
        if self.stopped:
            return True
        codes = [proc.poll() for proc in self._child_processes]
        if all(code == 0 for code in codes):
            return True
        if not any(codes):  # all running (None) or finished well (0)
            return False
        if self.failed_since is None:
            self.failed_since = time.monotonic()
            for proc in self._child_processes:
                if proc.poll() is None:
                    proc.kill()
            return False
        waited = time.monotonic() - self.failed_since
        if waited > 2 * self.grace_s:
            os.kill(self._main_pid, signal.SIGKILL)
            return True
        if waited > self.grace_s and not self.interrupted:
            self.interrupted = True
            _thread.interrupt_main()
        return False


class HydraJobLauncher(_SubprocessScriptLauncher):
    """Starts ranks 1..N-1 on the current Hydra job (see module doc), and can undo what launching changed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.observer: _RankWatch | None = None
        self._saved_env: dict[str, str | None] = {}
        self._saved_threads = torch.get_num_threads()

    def launch(self, function: Callable, *args: Any, trainer: pl.Trainer | None = None, **kwargs: Any) -> Any:
        self.cluster_environment.validate_settings(num_devices=self.num_processes, num_nodes=self.num_nodes)
        self._saved_env = {key: os.environ.get(key) for key in LAUNCH_ENV_KEYS}
        self._saved_threads = torch.get_num_threads()
        if not self.cluster_environment.creates_processes_externally:
            self._call_children_scripts()
            self.observer = _RankWatch(main_pid=os.getpid(), child_processes=self.procs)
            self.observer.start()
        _set_num_threads_if_needed(num_processes=self.num_processes)
        try:
            return function(*args, **kwargs)
        except (RuntimeError, KeyboardInterrupt) as error:  # what a lost peer looks like in this process
            # the peer's sockets close before its process has exited (it is still tearing down, printing its
            # traceback): wait for it where the error says a peer was lost, briefly otherwise
            lost_peer = isinstance(error, KeyboardInterrupt) or any(sign in str(error) for sign in LOST_PEER_SIGNS)
            failure = self.failed_rank(wait_s=LOST_PEER_WAIT_S if lost_peer else 2.0)
            if failure is None:
                raise
            raise RankFailed(failure) from error

    def failed_rank(self, wait_s: float) -> str | None:
        """Which extra rank died and how (None if they all still run or finished well); waits briefly, so that the
        rank whose loss made this process fail is seen as exited."""
        from hydra.core.hydra_config import HydraConfig

        output_dir = HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else None
        deadline = time.monotonic() + wait_s
        while self.procs:
            for rank, proc in enumerate(self.procs, start=1):
                code = proc.poll()
                if code not in (None, 0):
                    where = f"; its log: {rank_log_file(output_dir, rank)}" if output_dir else ""
                    return f"DDP rank {rank} (process {proc.pid}) exited with code {code}{where}"
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        return None

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
            self.observer = None
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


# callbacks of fitting (or that a new Trainer makes itself); the others (e.g. test-time logging and the run's own
# progress bar, so that testing looks as it does without DDP) carry over
_FIT_ONLY_CALLBACKS = (Checkpoint, LearningRateMonitor, ModelSummary)


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
        enable_progress_bar=any(isinstance(c, ProgressBar) for c in trainer.callbacks),
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
    "RankFailed",
    "hydra_job_command",
    "single_device_trainer",
]

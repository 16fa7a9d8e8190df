"""Cluster configs compose (no SLURM needed): submitit SLURM launcher + DDP trainer, joblib one-GPU-per-worker.

The launchers are Hydra plugins from the optional `cluster` extra; their configs only compose where the plugins are
installed (the plugin registers ``hydra/launcher/submitit_slurm`` and ``joblib``), so these tests skip without them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import open_dict

from darnet_pl.cli.train import CONFIG_DIR
from darnet_pl.config.resolvers import register_resolvers
from darnet_pl.distributed.gpu_pinning import OneGPUPerWorker
from tests.helpers.cli import run_cli


def _plugin(name: str) -> None:
    pytest.importorskip(f"hydra_plugins.{name}", reason=f"{name} is not installed: pip install -e '.[cluster]'")


@pytest.fixture(autouse=True)
def _no_hydra_config_left_behind() -> Iterator[None]:
    yield
    HydraConfig.instance().cfg = None


def _compose(*overrides: str):
    """The composed config, also set as the running job's HydraConfig (so ``${hydra:...}`` resolves)."""
    register_resolvers()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.cwd = "/project"
        cfg.hydra.runtime.output_dir = "/project/outputs/job"
    HydraConfig.instance().set_config(cfg)
    return cfg


def test_slurm_launcher_and_trainer_agree() -> None:
    _plugin("hydra_submitit_launcher")
    cfg = _compose(
        "+experiment=darnet",
        "hydra/launcher=slurm",
        "trainer=slurm",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.gpus_per_node=4",
        "hydra.launcher.nodes=2",
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher.partition == "gpu" and launcher.timeout_min == 1440 and launcher.tasks_per_node == 4
    assert launcher.cpus_per_task == 8 and launcher.mem_gb == 64 and launcher.nodes == 2
    assert cfg.trainer.devices == 4 and cfg.trainer.num_nodes == 2  # derived from the launcher
    assert cfg.trainer.strategy._target_ == "darnet_pl.distributed.ddp.HydraDDPStrategy" and cfg.trainer.sync_batchnorm
    assert type(instantiate(launcher)).__name__ == "SlurmLauncher"


def test_local_parallel_launcher_pins_one_gpu_per_worker() -> None:
    _plugin("hydra_joblib_launcher")
    cfg = _compose("+experiment=darnet", "hydra/launcher=local_parallel", "hydra.launcher.n_jobs=4")
    assert cfg.hydra.launcher.n_jobs == 4
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")
    assert cfg.hydra.callbacks.pin_gpu._target_ == "darnet_pl.distributed.gpu_pinning.OneGPUPerWorker"
    assert "report" in cfg.hydra.callbacks  # the project's own callbacks are kept
    assert type(instantiate(cfg.hydra.launcher)).__name__ == "JoblibLauncher"


_CLAIM = (
    "import sys; from pathlib import Path; from darnet_pl.distributed.gpu_pinning import claim_gpu; "
    "d = Path(sys.argv[1]); first = claim_gpu(['0', '1'], d); again = claim_gpu(['0', '1'], d); "
    "print(first, again, flush=True); sys.stdin.read()"
)


def test_each_worker_process_keeps_its_own_gpu(tmp_path: Path) -> None:
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _CLAIM, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        claims = [w.stdout.readline().split() for w in workers]
    finally:
        for w in workers:
            w.communicate("", timeout=60)
    assert all(first == again for first, again in claims)  # a worker keeps its GPU from job to job
    assert sorted(first for first, _ in claims) == ["0", "1"]  # and no two workers share one


def test_gpu_list_defaults_to_the_sweeps_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    _plugin("hydra_joblib_launcher")
    cfg = _compose("hydra/launcher=local_parallel", "hydra.launcher.n_jobs=3")
    monkeypatch.delenv("DARNET_SWEEP_CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert OneGPUPerWorker()._gpus(cfg) == ["0", "1", "2"]  # n_jobs GPUs
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert OneGPUPerWorker()._gpus(cfg) == ["2", "3"]  # the GPUs the sweep may use
    assert OneGPUPerWorker(gpus="5, 6")._gpus(cfg) == ["5", "6"]


@pytest.mark.slow
def test_local_parallel_sweep_runs_jobs_on_distinct_gpus(tmp_path: Path) -> None:
    _plugin("hydra_joblib_launcher")
    result = run_cli(
        "+experiment=smoke",
        "debug=fdr",
        "logger=none",
        "fold=0..1",
        "-m",
        "hydra/launcher=local_parallel",
        "hydra.launcher.n_jobs=2",
        "trainer.accelerator=auto",  # a GPU job where there is one (a CPU job is not pinned)
        f"paths.log_dir={tmp_path}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list(tmp_path.rglob("test_metrics.json"))) == 2
    logs = "".join(p.read_text() for p in tmp_path.rglob("smoke.log"))
    pinned = {line.rsplit("GPU", 1)[1].strip() for line in logs.splitlines() if "runs this job on GPU" in line}
    assert pinned == {"0", "1"}


def test_jobs_asking_for_more_gpus_than_the_sweep_has_are_refused_before_any_job(tmp_path: Path) -> None:
    _plugin("hydra_joblib_launcher")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0,1", "WANDB_MODE": "offline", "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "darnet_pl", "+experiment=smoke", "trainer=ddp_cpu", "trainer.accelerator=gpu"]
    command += ["fold=0..1", "-m", "hydra/launcher=local_parallel", "hydra.launcher.n_jobs=2"]
    result = subprocess.run(
        command,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "error: hydra.launcher.n_jobs=2 jobs at once x 2 GPU(s) each (trainer.devices) need 4 GPUs, but 2 are "
        "visible (0,1): lower hydra.launcher.n_jobs or trainer.devices"
    )
    assert not list(tmp_path.rglob("fold*"))  # no job folder


def test_a_worker_claims_as_many_gpus_as_its_job_asks_for(tmp_path: Path) -> None:
    from darnet_pl.distributed.gpu_pinning import gpus_per_job

    assert gpus_per_job({"accelerator": "cpu", "devices": 2}, 4, 2) == 0
    assert gpus_per_job({"accelerator": "gpu", "devices": 2}, 4, 2) == 2
    assert gpus_per_job({"accelerator": "auto", "devices": "auto"}, 4, 2) == 2  # an equal share
    assert gpus_per_job({"accelerator": "gpu", "devices": [0, 1, 2]}, 4, 1) == 3

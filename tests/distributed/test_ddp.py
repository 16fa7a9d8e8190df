"""DDP inside Hydra: extra ranks run the parent's job only, BatchNorm is global, and 2 CPU processes equal one.

The end-to-end test runs a real two-fold multirun with ``trainer=ddp_cpu`` (2 gloo processes per job) through the
entry point and compares it with the same sweep on one process.

Why the results can be compared at all: the global batch is the same (``data.batch_size`` is split over the
processes), the training batches are cut from the same seeded permutation (the data module's sampler), BatchNorm
statistics are over the global batch (``AllReduceSyncBatchNorm``), augmentation is off (its random stream is
consumed per process) and the number of steps is limited to full batches (a partial last batch is padded with a
repeated scan under DDP). What is left is floating-point summation order (two half-batch gradients all-reduced
instead of one full-batch sum; statistics by all-reduce), which Adam amplifies for parameters whose gradient is
near zero: measured 1.3e-5 on weights and 3e-8 on test probabilities after 7 steps. The tolerance, 1e-3 on
weights and 1e-4 on metrics and probabilities, is ~100x above that and ~200x below the weight change between two
folds, which the test checks too, so a real DDP mistake (unsynchronised BN or gradients, a different batch) fails.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.conf import ConfigSourceInfo
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import open_dict

from darnet_pl.cli.train import CONFIG_DIR
from darnet_pl.config.resolvers import register_resolvers
from darnet_pl.data.sampling import per_device_batch as per_device
from darnet_pl.distributed.ddp import AllReduceSyncBatchNorm, HydraDDPStrategy, hydra_job_command
from darnet_pl.distributed.sync_batchnorm import GlobalBatchNorm
from tests.helpers.cli import run_cli


def _compose(*overrides: str):
    register_resolvers()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


def test_global_batch_is_split_over_processes() -> None:
    assert per_device(8, 2) == 4 and per_device(8, 1) == 8
    with pytest.raises(ValueError, match="divisible by the number of processes"):
        per_device(6, 4)


def test_ddp_configs_compose() -> None:
    cpu = _compose("+experiment=smoke", "trainer=ddp_cpu")
    assert cpu.trainer.devices == 2 and cpu.trainer.accelerator == "cpu"
    assert cpu.trainer.strategy._target_ == "darnet_pl.distributed.ddp.HydraDDPStrategy"
    assert cpu.trainer.strategy.process_group_backend == "gloo"
    plugins = [instantiate(p) for p in cpu.trainer.plugins]
    assert isinstance(plugins[0], AllReduceSyncBatchNorm) and cpu.trainer.sync_batchnorm is False
    strategy = instantiate(cpu.trainer.strategy)
    assert isinstance(strategy, HydraDDPStrategy)
    gpu = _compose("+experiment=darnet", "trainer=ddp")
    assert gpu.trainer.devices == 2 and gpu.trainer.accelerator == "gpu" and gpu.trainer.sync_batchnorm is True
    assert gpu.trainer.strategy.process_group_backend == "nccl"


@pytest.mark.parametrize(
    "main_spec",
    [
        types.SimpleNamespace(name="darnet_pl"),  # python -m darnet_pl
        types.SimpleNamespace(name="joblib.externals.loky.backend.popen_loky_posix"),  # a local_parallel worker
        None,  # darnet-train (a console script)
    ],
)
def test_extra_ranks_rerun_the_job_not_the_sweep(monkeypatch: pytest.MonkeyPatch, main_spec) -> None:
    # whatever process runs the job - the entry point, a joblib worker, a console script - its extra ranks run
    # `python -m darnet_pl` with the job's overrides and the same configs
    monkeypatch.setattr(sys.modules["__main__"], "__spec__", main_spec, raising=False)
    cfg = _compose("+experiment=smoke", "fold=1", "trainer=ddp_cpu", "+debug=tiny")
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = "/runs/smoke/sweep/dual/debug=tiny/fold1"
        cfg.hydra.runtime.cwd = "/work dir"
        cfg.hydra.runtime.config_sources.append(
            ConfigSourceInfo(path="/my/configs", schema="file", provider="command-line")
        )
    HydraConfig.instance().set_config(cfg)
    try:
        command, cwd = hydra_job_command(1)
    finally:
        HydraConfig.instance().cfg = None
    assert cwd == "/work dir"
    assert command[:3] == [sys.executable, "-m", "darnet_pl"] and command.count("-m") == 1
    assert "--config-dir=/my/configs" in command and "--config-name=config" in command
    assert not any(c.startswith("--config-path") for c in command)  # the package's own configs are the default
    assert "--multirun" not in command
    assert {"+experiment=smoke", "fold=1", "trainer=ddp_cpu", "+debug=tiny"} <= set(command)
    assert "hydra.mode=RUN" in command and "hydra.output_subdir=null" in command
    assert 'hydra.run.dir="/runs/smoke/sweep/dual/debug=tiny/fold1"' in command


_BN_WORKER = textwrap.dedent(
    """
    import sys, torch, torch.distributed as dist
    from darnet_pl.distributed.sync_batchnorm import GlobalBatchNorm
    rank, out = int(sys.argv[1]), sys.argv[2]
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)
    x = (torch.randn(8, 3, 4, 5, 5) * 2 + 1)[rank * 4:(rank + 1) * 4].requires_grad_(True)
    bn = GlobalBatchNorm(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5])); bn.bias.copy_(torch.tensor([0.0, -1.0, 1.0]))
    y = bn(x)
    (y * torch.arange(y.numel()).reshape(y.shape).sin()).sum().backward()
    dist.all_reduce(bn.weight.grad); dist.all_reduce(bn.bias.grad)
    torch.save({"y": y.detach(), "gx": x.grad, "gw": bn.weight.grad, "gb": bn.bias.grad,
                "rm": bn.running_mean, "rv": bn.running_var}, out)
    dist.destroy_process_group()
    """
)


def free_port() -> int:
    """A port no one listens on now (the system's choice), so that tests run side by side never share one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_global_batchnorm_equals_batchnorm_on_the_whole_batch(tmp_path: Path) -> None:
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    procs = [
        subprocess.Popen([sys.executable, "-c", _BN_WORKER, str(rank), str(tmp_path / f"{rank}.pt")], env=env)
        for rank in (0, 1)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    parts = [torch.load(tmp_path / f"{rank}.pt") for rank in (0, 1)]

    torch.manual_seed(0)
    x = (torch.randn(8, 3, 4, 5, 5) * 2 + 1).requires_grad_(True)
    bn = torch.nn.BatchNorm3d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        bn.bias.copy_(torch.tensor([0.0, -1.0, 1.0]))
    y = bn(x)
    weights = torch.cat([torch.arange(y[:4].numel()).reshape(y[:4].shape).sin()] * 2)
    (y * weights).sum().backward()

    torch.testing.assert_close(torch.cat([p["y"] for p in parts]), y.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat([p["gx"] for p in parts]), x.grad, atol=1e-5, rtol=1e-5)
    for part in parts:
        torch.testing.assert_close(part["gw"], bn.weight.grad, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(part["gb"], bn.bias.grad, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(part["rm"], bn.running_mean, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(part["rv"], bn.running_var, atol=1e-6, rtol=1e-6)
    assert type(AllReduceSyncBatchNorm().revert(AllReduceSyncBatchNorm().apply(bn))) is torch.nn.BatchNorm3d
    assert isinstance(AllReduceSyncBatchNorm().apply(torch.nn.BatchNorm3d(2)), GlobalBatchNorm)


def _job_files(root: Path, name: str) -> dict[str, Path]:
    return {p.parent.name: p for p in sorted(root.rglob(name))}


def _probabilities(path: Path) -> list[float]:
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [float(row[c]) for row in rows for c in ("prob_CP", "prob_NCP", "prob_Normal")]


def _weights(job_dir: Path) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(job_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    return {k: v.float() for k, v in checkpoint["state_dict"].items() if "num_batches_tracked" not in k}


def _max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.slow
def test_ddp_cpu_two_fold_sweep_matches_one_process(tmp_path: Path) -> None:
    common = (
        "+experiment=smoke",
        "debug=tiny",
        "fold=0..1",
        "-m",
        "deterministic=true",
        "trainer.precision=32-true",
        "data.augment.enabled=false",
        "+trainer.limit_train_batches=7",  # full global batches of 4 only (fold 0 has 31 training scans)
    )
    ddp = run_cli(*common, "trainer=ddp_cpu", "logger=wandb", f"paths.log_dir={tmp_path / 'ddp'}", cwd=tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = run_cli(*common, "logger=none", f"paths.log_dir={tmp_path / 'single'}", cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]

    ddp_metrics = _job_files(tmp_path / "ddp", "test_metrics.json")
    single_metrics = _job_files(tmp_path / "single", "test_metrics.json")
    assert sorted(ddp_metrics) == sorted(single_metrics) == ["fold0", "fold1"]
    # exactly one output folder per job, shared by both ranks; one W&B run per job (rank 0 only)
    assert len(list((tmp_path / "ddp").rglob("config_resolved.yaml"))) == 2
    assert len(list((tmp_path / "ddp").rglob(".hydra"))) == 2
    assert len(list((tmp_path / "ddp").rglob("ddp_rank1.log"))) == 2
    runs = list((tmp_path / "ddp").rglob("offline-run-*"))
    assert len([run for run in runs if "report" not in run.parts]) == 2 and len(runs) == 3  # and the report's run

    for fold, path in ddp_metrics.items():
        a, b = json.loads(path.read_text()), json.loads(single_metrics[fold].read_text())
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], abs=1e-4), key
        prob_a = _probabilities(path.parent / "predictions.csv")
        prob_b = _probabilities(single_metrics[fold].parent / "predictions.csv")
        assert len(prob_a) == len(prob_b) > 0  # every test scan once, not padded or split over ranks
        assert max(abs(p - q) for p, q in zip(prob_a, prob_b, strict=True)) < 1e-4
        assert _max_difference(_weights(path.parent), _weights(single_metrics[fold].parent)) < 1e-3

    # the check can fail: the two folds' weights (different training scans) differ by far more than the tolerance
    folds = [_weights(p.parent) for p in single_metrics.values()]
    assert _max_difference(*folds) > 0.05

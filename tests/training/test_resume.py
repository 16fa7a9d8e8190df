"""Interrupted trainings resume exactly: a run stopped by SIGTERM mid-epoch, or killed after an end-of-epoch
checkpoint, ends with bit-identical weights to a run that was never interrupted (CPU, deterministic mode)."""

from __future__ import annotations

import functools
import os
import signal
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

from darnet_pl.data.datamodule import CTDataModule
from darnet_pl.data.sampling import ResumableSampler, item_seed
from darnet_pl.data.sources.synthetic import SyntheticSource
from darnet_pl.training.module import DARNetModule
from darnet_pl.training.preemption import CheckpointOnSigterm

SIZE = (8, 32, 32)
EPOCHS = 3


class _Interrupt(pl.Callback):
    """Stops the run at (epoch, batch): by a real SIGTERM to this process, or by a crash (as SIGKILL would)."""

    def __init__(self, epoch: int, batch: int, how: str) -> None:
        self.at = (epoch, batch)
        self.how = how

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module, batch, batch_idx: int) -> None:
        if (trainer.current_epoch, batch_idx) != self.at:
            return
        if self.how == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)  # arrives during the batch; Lightning's handler only notes it
        else:
            raise RuntimeError("simulated kill")


def _fit(
    workdir: Path,
    num_workers: int = 0,
    interrupt: _Interrupt | None = None,
    ckpt_path: str | None = None,
    augment_on_device: bool = False,
) -> DARNetModule:
    pl.seed_everything(7, workers=True)
    source = SyntheticSource(patients_per_class=6, scans_per_patient=(1, 1), size=SIZE, seed=0, lesion_scale=2.5)
    data = CTDataModule(
        source,
        size=SIZE,
        batch_size=3,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        n_folds=3,
        augment={"on_device": augment_on_device},
    )
    scheduler = functools.partial(torch.optim.lr_scheduler.MultiStepLR, milestones=[1], gamma=0.5)
    optimizer = functools.partial(torch.optim.Adam, lr=1e-3)
    model = DARNetModule(width=4, input_size=SIZE, optimizer=optimizer, scheduler=scheduler)
    callbacks: list[pl.Callback] = [
        ModelCheckpoint(dirpath=workdir / "checkpoints", save_last=True, monitor="val/loss"),
        CheckpointOnSigterm(dirpath=str(workdir / "checkpoints")),
    ]
    if interrupt is not None:
        callbacks.append(interrupt)
    trainer = pl.Trainer(
        max_epochs=EPOCHS,
        accelerator="cpu",
        deterministic=True,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=callbacks,
        default_root_dir=workdir,
    )
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path, weights_only=False)
    return model


def _assert_same_weights(a: DARNetModule, b: DARNetModule) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    different = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> DARNetModule:
    return _fit(tmp_path_factory.mktemp("straight"))


def test_sigterm_mid_epoch_checkpoints_and_the_resumed_run_is_identical(tmp_path: Path, uninterrupted) -> None:
    with pytest.raises(SIGTERMException):
        _fit(tmp_path, interrupt=_Interrupt(epoch=1, batch=1, how="sigterm"))
    last = tmp_path / "checkpoints" / "last.ckpt"
    state = torch.load(last, weights_only=False)
    assert state["epoch"] == 1  # saved in the middle of epoch 1, not at its end
    assert state["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 1, "batches_done": 2}]
    resumed = _fit(tmp_path, ckpt_path=str(last))
    _assert_same_weights(resumed, uninterrupted)


def test_a_kill_after_an_end_of_epoch_checkpoint_resumes_identically(tmp_path: Path, uninterrupted) -> None:
    with pytest.raises(RuntimeError, match="simulated kill"):
        _fit(tmp_path, interrupt=_Interrupt(epoch=2, batch=0, how="kill"))
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [
        {"epoch": 2, "batches_done": 0}
    ]
    resumed = _fit(tmp_path, ckpt_path=str(last))
    _assert_same_weights(resumed, uninterrupted)


def test_worker_processes_give_the_same_training_as_the_main_process(tmp_path: Path, uninterrupted) -> None:
    # augmentation is seeded per (seed, epoch, item), not per worker: the loader's parallelism changes nothing
    _assert_same_weights(_fit(tmp_path, num_workers=2), uninterrupted)


def test_augmentation_after_the_transfer_draws_the_same_as_in_the_loader(tmp_path: Path, uninterrupted) -> None:
    # augment.on_device: the random transforms run on the training device, item by item with the loader's seeds;
    # on the CPU that must be the very same training
    _assert_same_weights(_fit(tmp_path, augment_on_device=True), uninterrupted)


def test_resumable_sampler_order_is_a_function_of_seed_and_epoch() -> None:
    data = list(range(10))
    full = ResumableSampler(data, num_replicas=1, rank=0, seed=3)
    full.set_epoch(4)
    order = list(full)
    assert {e for e, _ in order} == {4} and sorted(i for _, i in order) == data
    resumed = ResumableSampler(data, num_replicas=1, rank=0, seed=3)
    resumed.resume(epoch=4, items_done=6)
    assert list(resumed) == order[6:]
    assert list(resumed) == order  # the skip applies to the resumed epoch's first pass only
    resumed.set_epoch(5)
    assert list(resumed) != order
    assert item_seed(1, 2, 3) == item_seed(1, 2, 3) != item_seed(1, 3, 2)


@pytest.mark.slow
def test_sigterm_to_the_cli_exits_143_and_the_same_run_dir_resumes_to_the_same_metrics(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys
    import time

    from tests.helpers.cli import run_cli
    from tests.helpers.user import run_module
    from tests.helpers.wandb_runs import offline_runs

    common = ("+experiment=smoke", "debug=tiny", "trainer.max_epochs=3", "logger=[csv,wandb]", "deterministic=true")
    straight = run_cli(*common, f"hydra.run.dir={tmp_path / 'straight'}", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr[-3000:]

    run_dir = tmp_path / "stopped"
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONWARNINGS": "ignore"}
    process = subprocess.Popen(
        [sys.executable, "-m", "darnet_pl", *common, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while not (run_dir / "checkpoints" / "last.ckpt").is_file() and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint after 240 s"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert f"stopped by SIGTERM; {run_dir / 'checkpoints' / 'last.ckpt'} holds the training state" in stderr
    assert f"add hydra.run.dir={run_dir}" in stderr
    assert not (run_dir / "test_metrics.json").exists()

    resumed = run_module("darnet_pl", *common, f"hydra.run.dir={run_dir}", cwd=tmp_path)  # the user's environment
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # resuming writes into the run's own checkpoints/ folder: no library warning about it reaches the console
    printed = resumed.stdout + resumed.stderr
    assert "Warning" not in printed and "exists and is not empty" not in printed, resumed.stderr[-3000:]
    expected = json.loads((tmp_path / "straight" / "test_metrics.json").read_text())
    assert json.loads((run_dir / "test_metrics.json").read_text()) == expected
    # the CSV history keeps the epochs before the stop, once each, as in the uninterrupted run
    assert _validation_history(run_dir) == _validation_history(tmp_path / "straight")
    # one job, one W&B run: the resumed run continues the first one's id
    run_ids = {p.name.rsplit("-", 1)[-1] for p in (run_dir / "wandb").glob("offline-run-*")}
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 2 and len(run_ids) == 1
    assert run_ids == {(run_dir / "wandb_run_id.txt").read_text().strip()}
    # the stop came after epoch 0's last.ckpt: the resumed run's summary still names the selected epoch and its
    # validation metrics as the uninterrupted run's does (SelectedEpochSummary's state travels in last.ckpt)
    [straight_run] = offline_runs(tmp_path / "straight")
    resumed_run = offline_runs(run_dir)[-1]  # folder names start with the start time
    epoch = straight_run.summary["selected/epoch"]
    assert (run_dir / "checkpoints" / f"epoch{epoch:03d}.ckpt").is_file()
    assert straight_run.summary["selected/val/loss"] == straight_run.summary["val/loss"]["min"]
    selected = {k: v for k, v in straight_run.summary.items() if k.startswith("selected/")}
    assert len(selected) > 10 and {k: resumed_run.summary[k] for k in selected} == selected


def _validation_history(run_dir: Path) -> list[tuple[str, str, str]]:
    """(epoch, step, val/loss) of every validation row of a run's csv/metrics.csv."""
    import csv

    with (run_dir / "csv" / "metrics.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("val/loss")]
    return [(r["epoch"], r["step"], r["val/loss"]) for r in rows]


@pytest.mark.slow
def test_last_checkpoint_is_the_latest_epoch_when_the_monitored_score_stops_improving(tmp_path: Path) -> None:
    """The best checkpoint stays at epoch 0 (``monitor=epoch, mode=min`` never improves again); last.ckpt must still
    be the latest epoch, and a resumed run continues after it instead of redoing the epochs since the best."""
    from tests.helpers.cli import run_cli

    run_dir = tmp_path / "run"
    common = ("+experiment=smoke", "debug=tiny", "callbacks.model_checkpoint.monitor=epoch", f"hydra.run.dir={run_dir}")
    first = run_cli(*common, "trainer.max_epochs=3", "test=false", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    checkpoints = run_dir / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("*.ckpt")) == ["epoch000.ckpt", "last.ckpt"]
    last = torch.load(checkpoints / "last.ckpt", weights_only=True)
    assert last["epoch"] == 2, "last.ckpt must hold the latest epoch (2), not the best (0)"

    resumed = run_cli(*common, "trainer.max_epochs=4", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming the interrupted job from {checkpoints / 'last.ckpt'}" in resumed.stdout + resumed.stderr
    history = _validation_history(run_dir)
    assert [int(epoch) for epoch, _, _ in history] == [0, 1, 2, 3], "each epoch trained once, none redone"
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["epoch"] == 3
    assert (run_dir / "test_metrics.json").is_file()  # the best (still epoch 0) was tested

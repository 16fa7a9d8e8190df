"""LightningDataModule: a scan source + a patient-level split + MONAI transforms -> loaders.

It never knows the model. What it was built with (source, size, classes, split) is saved in the checkpoint via
``save_hyperparameters``, so ``predict`` can repeat the preprocessing without asking the user.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytorch_lightning as pl
from monai.data import DataLoader

from darnet_pl.data.dataset import ScanDataset, VolumeLoader
from darnet_pl.data.records import CLASS_NAMES, ScanRecord
from darnet_pl.data.sampling import EpochKey, ResumableDataLoader, ResumableSampler, per_device_batch
from darnet_pl.data.splits import (
    SplitError,
    describe_duplicates,
    duplicates_across_subsets,
    read_split_manifest,
    split_summary,
    stratified_patient_chunks,
    subsets_for_fold,
    write_split_manifest,
)
from darnet_pl.data.transforms import AugmentConfig, DeviceAugmentation, eval_transforms, train_transforms
from darnet_pl.utils.worker_pool import worker_count

log = logging.getLogger(__name__)


class ScanSource(Protocol):
    """What the data module needs from a dataset: records, a one-off preparation, and a volume loader."""

    def records(self) -> list[ScanRecord]: ...

    def prepare(self) -> None: ...

    def volume_loader(self) -> VolumeLoader: ...

    def describe(self) -> dict: ...


class CTDataModule(pl.LightningDataModule):
    """Train / val / test loaders for fold ``fold`` of a patient-level split.

    ``split="stratified"`` makes a seeded class-stratified, patient-grouped split of ``n_folds`` chunks plus a test
    chunk (written to ``split_manifest_out`` for audit); ``split="paper"`` reads ``split_manifest``
    (``class,patient_id,scan_id,...,split`` with split in fold1..foldK / test), e.g. the DARNet paper's own split.
    """

    def __init__(
        self,
        source: ScanSource,
        size: Sequence[int] = (64, 224, 224),
        class_names: Sequence[str] = CLASS_NAMES,
        split: str = "stratified",
        split_manifest: str | None = None,
        split_seed: int = 0,
        n_folds: int = 5,
        fold: int = 0,
        batch_size: int = 8,
        num_workers: int = 2,
        pin_memory: bool = False,
        persistent_workers: bool = True,
        augment: Mapping[str, Any] | None = None,
        split_manifest_out: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["source"], logger=False)
        self.hparams["source_description"] = source.describe()
        self.source = source
        self.size = tuple(int(s) for s in size)
        self.class_names = tuple(class_names)
        if split not in ("stratified", "paper"):
            raise ValueError(f"data.split must be 'stratified' or 'paper', got {split!r}")
        if not 0 <= fold < n_folds:
            raise ValueError(f"fold={fold} is out of range: folds are 0..{n_folds - 1}")
        self.augment = AugmentConfig(**(augment or {}))
        self.subsets: dict[str, list[ScanRecord]] = {}
        self.device_augmentation: DeviceAugmentation | None = None
        self._workers: int | None = None

    def prepare_data(self) -> None:
        self.source.prepare()

    def setup(self, stage: str | None = None) -> None:
        if self.subsets:
            return
        records = self.source.records()
        chunks = self._chunks(records)
        self.subsets = subsets_for_fold(records, chunks, self.hparams.fold)
        for name, subset in self.subsets.items():
            if not subset:
                raise SplitError(f"fold {self.hparams.fold}: the {name} subset is empty")
        log.info("fold %d split\n%s", self.hparams.fold, split_summary(self.subsets, self.class_names))
        self._report_duplicates()
        loader = self.source.volume_loader()
        on_device = self.augment.enabled and self.augment.on_device
        if on_device:
            self.device_augmentation = DeviceAugmentation(self.size, self.augment)
        self.datasets = {
            "train": ScanDataset(
                self.subsets["train"],
                self.class_names,
                loader,
                eval_transforms() if on_device else train_transforms(self.size, self.augment),
                seed=_training_seed(),
                emit_seed=on_device,
            ),
            "val": ScanDataset(self.subsets["val"], self.class_names, loader, eval_transforms()),
            "test": ScanDataset(self.subsets["test"], self.class_names, loader, eval_transforms()),
        }

    def _report_duplicates(self) -> None:
        """A warning naming both ids of every volume found in two subsets (sources that record content hashes)."""
        hashes = getattr(self.source, "volume_hashes", None)
        if not callable(hashes):
            return
        pairs = duplicates_across_subsets(self.subsets, hashes())
        if pairs:
            log.warning("fold %d: %s", self.hparams.fold, describe_duplicates(pairs))

    def _chunks(self, records: list[ScanRecord]) -> dict[str, str]:
        hp = self.hparams
        if hp.split == "paper":
            if not hp.split_manifest:
                raise SplitError("data.split=paper needs data.split_manifest=<path to the split CSV>")
            _, manifest_chunks = read_split_manifest(hp.split_manifest)
            chunks = self._available_chunks(manifest_chunks, records)
        else:
            chunks = stratified_patient_chunks(records, n_folds=hp.n_folds, seed=hp.split_seed)
        if hp.split_manifest_out:  # the split actually used, for audit
            write_split_manifest(records, chunks, Path(hp.split_manifest_out))
        return chunks

    def _available_chunks(self, chunks: dict[str, str], records: list[ScanRecord]) -> dict[str, str]:
        """The manifest's chunks restricted to the scans the source has.

        Manifest scans the source does not have (left out by a cleaning list or an exclusion, or failed at
        ingest) are dropped with a warning, so one damaged scan does not block the paper's split; scans the
        source has but the manifest lacks are an error, as a split must place every scan.
        """
        manifest = self.hparams.split_manifest
        available = {r.key for r in records}
        unplaced = [r.key for r in records if r.key not in chunks]
        if unplaced:
            raise SplitError(
                f"{manifest}: {len(unplaced)} scan(s) of the data are not in the split manifest, e.g. {unplaced[0]}"
            )
        missing = [key for key in chunks if key not in available]
        if missing and len(missing) == len(chunks):
            raise SplitError(f"{manifest}: none of the manifest's {len(chunks)} scans is in the data")
        if missing:
            report = getattr(self.source, "report_path", None)
            log.warning(
                "%s: %d scan(s) of the split manifest are not available (left out by cleaning or an exclusion, "
                "or failed at ingest) and are dropped from the split, e.g. %s%s",
                manifest,
                len(missing),
                missing[0],
                f"; ingest report: {report}" if report else "",
            )
        return {key: chunk for key, chunk in chunks.items() if key in available}

    @property
    def loader_workers(self) -> int:
        """``num_workers``, at most one per CPU core this process may use: more only add memory and switching (the
        paper's recipe asks for 8 on a GPU machine); capping says so once, naming ``data.num_workers``."""
        if self._workers is None:
            self._workers = worker_count(int(self.hparams.num_workers), sys.maxsize, "data.num_workers")
        return self._workers

    def _loader_options(self) -> dict[str, Any]:
        workers = self.loader_workers
        world = self.trainer.world_size if self.trainer is not None else 1
        return {
            "batch_size": per_device_batch(self.hparams.batch_size, world),
            "num_workers": workers,
            "pin_memory": self.hparams.pin_memory,
            "persistent_workers": self.hparams.persistent_workers and workers > 0,
            "drop_last": False,
        }

    def train_dataloader(self) -> DataLoader:
        # data.batch_size is the GLOBAL batch: under DDP each process loads its share. Training batches are cut from
        # one seeded permutation the same way whatever the number of processes (Lightning keeps a sampler that is
        # already distributed), so DDP trains on exactly the global batches of a one-process run.
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer is not None else (1, 0)
        sampler = ResumableSampler(self.datasets["train"], num_replicas=world, rank=rank, seed=_training_seed())
        return ResumableDataLoader(
            self.datasets["train"],
            sampler=sampler,
            shuffle=False,
            progress=self._training_progress,
            **self._loader_options(),
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.datasets["val"], shuffle=False, **self._loader_options())

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.datasets["test"], shuffle=False, **self._loader_options())

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """With ``augment.on_device``, training batches are augmented here, on the training device."""
        if self.device_augmentation is not None and self.trainer is not None and self.trainer.training:
            return self.device_augmentation(batch)
        return batch

    def _training_progress(self) -> EpochKey:
        """(epoch, batches done in it) of the fit loop, for the training loader's checkpointed state."""
        trainer = self.trainer
        if trainer is None:
            return 0, 0
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if done >= trainer.num_training_batches:  # an end-of-epoch checkpoint: the next run starts the next epoch
            return trainer.current_epoch + 1, 0
        return trainer.current_epoch, done


def _training_seed() -> int:
    """The run's seed (``seed_everything`` exports it), which fixes batch order and augmentation."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))

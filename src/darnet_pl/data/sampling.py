"""Training order and augmentation as pure functions of (seed, epoch, position), so an interrupted run resumes exactly.

A plain loader draws augmentation parameters from per-worker random streams that live only as long as the
worker processes, and restarts an epoch from its first batch. A run resumed from a checkpoint then sees other
augmentations (and, mid-epoch, other batches) than the run that was interrupted. Here:

- the order of epoch ``e`` is the seeded permutation of ``DistributedSampler`` (seed, e), cut per process the same
  way whatever the number of processes;
- the sampler yields ``(epoch, index)`` keys, and the dataset seeds the random transforms of that item from
  ``(seed, epoch, index)`` alone (:func:`item_seed`), so no random state has to be carried between processes;
- the loader is *stateful* in Lightning's sense: a checkpoint records the epoch and how many of its batches were
  done, and a resumed loader starts that epoch at the next batch.

Together with the model/optimizer/scheduler state in the checkpoint, a resumed CPU run in deterministic mode
ends with the same weights and metrics as one that was never interrupted (tests/training/test_resume.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from monai.data import DataLoader
from torch.utils.data import Dataset, DistributedSampler

EpochKey = tuple[int, int]  # (epoch, dataset index)


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed for the random transforms of one item in one epoch; independent streams for every triple."""
    return int(np.random.SeedSequence([seed % 2**32, epoch, index]).generate_state(1)[0])


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (shuffled, seeded) that yields ``(epoch, index)`` and can start an epoch mid-way.

    A subclass, so Lightning keeps it under DDP instead of injecting its own.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self._resume_at: EpochKey | None = None  # (epoch, items of this process already done in it)

    def resume(self, epoch: int, items_done: int) -> None:
        """Make the next iteration epoch ``epoch``, starting after its first ``items_done`` items."""
        self.set_epoch(epoch)
        self._resume_at = (epoch, items_done)

    def __iter__(self) -> Iterator[EpochKey]:  # type: ignore[override]
        epoch = self.epoch
        skip = 0
        if self._resume_at is not None and self._resume_at[0] == epoch:
            skip = self._resume_at[1]
        self._resume_at = None
        indices = list(super().__iter__())
        return iter([(epoch, index) for index in indices[skip:]])


class ResumableDataLoader(DataLoader):
    """A MONAI DataLoader whose position survives a checkpoint (Lightning's ``state_dict`` loader protocol).

    Args:
        progress: returns ``(epoch, batches done in it)`` of the training loop at the time of a checkpoint; the
            data module reads it from its trainer. A finished epoch is reported as ``(epoch + 1, 0)``.
    """

    def __init__(self, *args: Any, progress: Callable[[], EpochKey] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.progress = progress

    def state_dict(self) -> dict[str, int]:
        if self.progress is None:
            return {}
        epoch, batches_done = self.progress()
        return {"epoch": int(epoch), "batches_done": int(batches_done)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state and isinstance(self.sampler, ResumableSampler):
            self.sampler.resume(state["epoch"], state["batches_done"] * self.batch_size)


def per_device_batch(batch_size: int, world_size: int) -> int:
    """The share of a global batch one process loads; refuses a batch that does not split evenly."""
    if batch_size % world_size:
        raise ValueError(
            f"data.batch_size={batch_size} is the global batch and must be divisible by the number of processes "
            f"({world_size}); choose e.g. data.batch_size={max(1, round(batch_size / world_size)) * world_size}"
        )
    return batch_size // world_size

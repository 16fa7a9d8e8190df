"""A map-style dataset of scans: record -> volume (via a loader) -> MONAI dictionary transforms.

Keys are dataset indices, or ``(epoch, index)`` pairs from :class:`~darnet_pl.data.sampling.ResumableSampler`; for
a pair, the random transforms are seeded from ``(seed, epoch, index)``, so an item's augmentation does not depend
on which worker process loads it or on what that process loaded before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from monai.transforms import Randomizable
from torch.utils.data import Dataset

from darnet_pl.data.records import ScanRecord, label_of
from darnet_pl.data.sampling import EpochKey, item_seed

VolumeLoader = Callable[[ScanRecord], np.ndarray]


class ScanDataset(Dataset):
    """Items are dictionaries: ``image`` (1, D, H, W) float32 in [0, 1], ``label``, ``patient_id``, ``scan_id``
    (and ``aug_seed`` with ``emit_seed``)."""

    def __init__(
        self,
        records: Sequence[ScanRecord],
        class_names: Sequence[str],
        load_volume: VolumeLoader,
        transform: Callable[[dict], dict] | None = None,
        seed: int = 0,
        emit_seed: bool = False,
    ) -> None:
        self.records = list(records)
        self.labels = [label_of(r, class_names) for r in self.records]
        self.load_volume = load_volume
        self.transform = transform
        self.seed = seed
        self.emit_seed = emit_seed  # put the item's seed in it (``aug_seed``), for augmentation after the loader

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int | EpochKey) -> dict:
        seed = None
        if isinstance(key, tuple):
            epoch, index = key
            seed = item_seed(self.seed, epoch, index)
            if isinstance(self.transform, Randomizable):
                self.transform.set_random_state(seed=seed)
        else:
            index = key
        record = self.records[index]
        volume = np.asarray(self.load_volume(record))
        if volume.dtype == np.uint8:  # in place: one pass over a fresh copy, the same values as ``/ 255.0``
            volume = volume.astype(np.float32)
            volume /= np.float32(255.0)
        item = {
            "image": volume.astype(np.float32, copy=False)[None],
            "label": self.labels[index],
            "patient_id": record.patient_id,
            "scan_id": record.scan_id,
        }
        if self.emit_seed and seed is not None:
            item["aug_seed"] = seed
        return self.transform(item) if self.transform is not None else item

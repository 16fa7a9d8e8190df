"""A map-style dataset of scans: record -> volume (via a loader) -> MONAI dictionary transforms."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from torch.utils.data import Dataset

from darnet_pl.data.records import ScanRecord, label_of

VolumeLoader = Callable[[ScanRecord], np.ndarray]


class ScanDataset(Dataset):
    """Items are dictionaries: ``image`` (1, D, H, W) float32 in [0, 1], ``label``, ``patient_id``, ``scan_id``."""

    def __init__(
        self,
        records: Sequence[ScanRecord],
        class_names: Sequence[str],
        load_volume: VolumeLoader,
        transform: Callable[[dict], dict] | None = None,
    ) -> None:
        self.records = list(records)
        self.labels = [label_of(r, class_names) for r in self.records]
        self.load_volume = load_volume
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        volume = np.asarray(self.load_volume(record))
        if volume.dtype == np.uint8:
            volume = volume.astype(np.float32) / 255.0
        item = {
            "image": volume.astype(np.float32, copy=False)[None],
            "label": self.labels[index],
            "patient_id": record.patient_id,
            "scan_id": record.scan_id,
        }
        return self.transform(item) if self.transform is not None else item

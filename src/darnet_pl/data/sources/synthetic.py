"""The built-in synthetic phantom cohort as a scan source: records plus a picklable volume loader.

``shortcut`` plants a non-disease mark on a share of one class (``darnet_pl.data.phantoms.shortcut``), for testing
the shortcut audit; ``planted_flags`` says which scans carry it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from darnet_pl.data.phantoms import SyntheticScan, render_scan, render_scan_with_lungs, synthetic_cohort
from darnet_pl.data.phantoms.shortcut import PlantedShortcut, planted_shortcut
from darnet_pl.data.records import CLASS_NAMES, ScanRecord


class SyntheticVolumes:
    """Renders a scan on demand (fast at small sizes), so nothing is written to disk and workers agree."""

    def __init__(
        self,
        scans: Sequence[SyntheticScan],
        size: Sequence[int],
        seed: int,
        lesion_scale: float = 1.0,
        shortcut: PlantedShortcut | None = None,
    ) -> None:
        self.size = tuple(int(s) for s in size)
        self.seed = seed
        self.lesion_scale = lesion_scale
        self.shortcut = shortcut
        self._by_key = {_record_of(scan).key: scan for scan in scans}

    def render(self, record: ScanRecord) -> tuple[np.ndarray, np.ndarray]:
        """(volume, lesion mask) of one scan, with the planted mark where it has one."""
        scan = self._by_key[record.key]
        shortcut = self.shortcut
        if shortcut is None or not shortcut.marks(scan.label, scan.patient_index):
            return render_scan(scan, self.size, seed=self.seed, lesion_scale=self.lesion_scale)
        volume, lesions, lungs = render_scan_with_lungs(scan, self.size, seed=self.seed, lesion_scale=self.lesion_scale)
        return shortcut.apply(volume, lungs), lesions

    def __call__(self, record: ScanRecord) -> np.ndarray:
        return self.render(record)[0]

    def lesion_mask(self, record: ScanRecord) -> np.ndarray:
        """Ground-truth lesion mask, for checking where explanations point."""
        return self.render(record)[1]


def _record_of(scan: SyntheticScan) -> ScanRecord:
    return ScanRecord(class_name=CLASS_NAMES[scan.label], patient_id=scan.patient_id, scan_id=scan.scan_id)


class SyntheticSource:
    """A seeded cohort of 3D chest phantoms (CP / NCP / Normal) with several scans per patient."""

    class_names: tuple[str, ...] = CLASS_NAMES

    def __init__(
        self,
        patients_per_class: int = 60,
        scans_per_patient: Sequence[int] = (1, 3),
        size: Sequence[int] = (64, 224, 224),
        seed: int = 0,
        lesion_scale: float = 1.0,
        shortcut: PlantedShortcut | dict | None = None,
    ) -> None:
        self.size = tuple(int(s) for s in size)
        self.seed = int(seed)
        self.lesion_scale = float(lesion_scale)
        self.shortcut = planted_shortcut(shortcut)
        low, high = (int(v) for v in scans_per_patient)
        self.scans = synthetic_cohort(patients_per_class, (low, high), seed=self.seed)
        self.patients_per_class = patients_per_class

    def records(self) -> list[ScanRecord]:
        return [_record_of(scan) for scan in self.scans]

    def prepare(self) -> None:
        """Nothing to download or cache: volumes are rendered on demand."""

    def volume_loader(self) -> SyntheticVolumes:
        return SyntheticVolumes(self.scans, self.size, self.seed, self.lesion_scale, self.shortcut)

    def planted_flags(self) -> dict[str, bool]:
        """Scan key -> whether it carries the planted shortcut (empty without one)."""
        if self.shortcut is None:
            return {}
        return {_record_of(s).key: self.shortcut.marks(s.label, s.patient_index) for s in self.scans}

    def describe(self) -> dict:
        description = {
            "source": "synthetic",
            "size": list(self.size),
            "seed": self.seed,
            "lesion_scale": self.lesion_scale,
        }
        if self.shortcut is not None:  # only then: checkpoints of cohorts without one describe them as before
            description["shortcut"] = self.shortcut.to_dict()
        return description

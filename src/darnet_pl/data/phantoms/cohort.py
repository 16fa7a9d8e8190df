"""Which phantoms make up a cohort: ``SyntheticScan`` and the seeded ``synthetic_cohort``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from darnet_pl.data.phantoms.params import TAG_COHORT
from darnet_pl.data.records import CLASS_NAMES


@dataclass(frozen=True)
class SyntheticScan:
    """One synthetic CT scan: identifiers, label and the indices that seed its rendering."""

    patient_id: str
    scan_id: str
    label: int
    patient_index: int
    scan_index: int


def synthetic_cohort(
    patients_per_class: int, scans_per_patient: Sequence[int] = (1, 3), seed: int = 0
) -> list[SyntheticScan]:
    """Deterministic list of scans; each patient gets a seeded number of scans in the inclusive range.

    Patient ``i`` of class ``c`` has the global index ``3 * i + c``: indices are unique across classes and a
    smaller cohort is a prefix-subset of a larger one (same patients, same scans).
    """
    lo, hi = (int(v) for v in scans_per_patient)
    if patients_per_class < 0 or not 1 <= lo <= hi:
        raise ValueError(f"need patients_per_class >= 0 and 1 <= lo <= hi, got {patients_per_class}, {(lo, hi)}")
    scans = []
    for i in range(patients_per_class):
        for label, name in enumerate(CLASS_NAMES):
            index = len(CLASS_NAMES) * i + label
            n = int(np.random.default_rng([seed, index, TAG_COHORT]).integers(lo, hi + 1))
            patient_id = f"syn-{name}-{index:04d}"
            for s in range(n):
                scans.append(SyntheticScan(patient_id, f"{patient_id}-s{s}", label, index, s))
    return scans

"""The unit of data: one CT scan of one patient, with its class. Every source yields these."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_CLASS_NAMES: tuple[str, ...] = ("CP", "NCP", "Normal")
"""Label order of the paper's code: CP=0, NCP (COVID-19)=1, Normal=2."""


@dataclass(frozen=True)
class ScanRecord:
    """Where one scan lives and what it is.

    ``path`` is a slice-image folder, a NIfTI file or a DICOM series folder; synthetic scans have none.
    ``n_slices`` is what an index file claims, checked against the folder during ingest.
    """

    class_name: str
    patient_id: str
    scan_id: str
    path: str | None = None
    n_slices: int | None = None

    @property
    def key(self) -> str:
        """Unique, file-name-safe identity of the scan: ``CLASS__patient__scan``."""
        return "__".join(_safe(part) for part in (self.class_name, self.patient_id, self.scan_id))


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in str(text))


def label_of(record: ScanRecord, class_names: Sequence[str]) -> int:
    """Class index of a record; a class outside the list is a user error worth a clear message."""
    try:
        return list(class_names).index(record.class_name)
    except ValueError:
        raise ValueError(
            f"scan {record.patient_id}/{record.scan_id}: label {record.class_name!r} is not one of "
            f"the configured classes {list(class_names)}"
        ) from None

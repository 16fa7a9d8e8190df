"""The unit of data: one CT scan of one patient, with its class. Every source yields these."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

CLASS_NAMES: tuple[str, ...] = ("CP", "NCP", "Normal")
"""Label order of the paper's code: CP=0, NCP (COVID-19)=1, Normal=2. The one place the classes and their order are
written (tests/test_boundaries.py keeps it so)."""

CLASS_TITLES: dict[str, str] = {"CP": "CP", "NCP": "COVID-19 (NCP)", "Normal": "Normal"}
"""How tables and figures name each class."""

KEY_SEPARATOR = "__"
MAX_PLAIN_KEY = 120
"""Longest key kept readable as is; a cache file name must stay well under the file system's 255 bytes."""
_PLAIN_PART = re.compile(r"[A-Za-z0-9.-]+(?:_[A-Za-z0-9.-]+)*")
"""A part that can be joined with ``__`` and still be told apart: ASCII, no ``__``, no ``_`` at either end."""


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
        """Unique, file-name-safe identity of the scan: ``CLASS__patient__scan`` (see ``scan_key``)."""
        return scan_key(self.class_name, self.patient_id, self.scan_id)


def scan_key(class_name: str, patient_id: str, scan_id: str) -> str:
    """``CLASS__patient__scan`` where that is unambiguous, else a readable prefix plus ``+<hash>`` of the exact ids.

    Distinct scans must never share a key (they would share one cache file, and one would be dropped as a
    "duplicate"): ``a b`` and ``a-b``, or patient ``1__2`` scan ``3`` and patient ``1`` scan ``2__3``, would
    collapse to one name if characters were simply replaced. ``+`` never appears in a plain key, so a hashed key
    cannot equal a plain one. Keys are also kept short (a 200-character folder name would not fit a file name).
    """
    parts = (str(class_name), str(patient_id), str(scan_id))
    plain = KEY_SEPARATOR.join(parts)
    if len(plain) <= MAX_PLAIN_KEY and all(_PLAIN_PART.fullmatch(part) for part in parts):
        return plain
    readable = KEY_SEPARATOR.join(_ascii_safe(part) for part in parts)[:80]
    digest = hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{readable}+{digest}"


def _ascii_safe(text: str) -> str:
    """ASCII letters, digits and ``-_.`` kept, anything else ``-``: one byte per character in a file name."""
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_.") else "-" for ch in text)


def label_of(record: ScanRecord, class_names: Sequence[str]) -> int:
    """Class index of a record; a class outside the list is a user error worth a clear message."""
    try:
        return list(class_names).index(record.class_name)
    except ValueError:
        raise ValueError(
            f"scan {record.patient_id}/{record.scan_id}: label {record.class_name!r} is not one of "
            f"the configured classes {list(class_names)}"
        ) from None

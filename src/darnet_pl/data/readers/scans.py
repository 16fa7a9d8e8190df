"""What every scan reader shares: ``ScanError`` (one line naming the scan), the notes that travel beside a volume,
and what kind of scan a path is.

The readers themselves: ``slices`` (a folder of numbered 8-bit slice images: CC-CCII, or the user's own) and
``volumes`` (a NIfTI file or a DICOM series folder in Hounsfield units, loaded with its geometry; the rest is the
MONAI transform chain of ``darnet_pl.data.volume_transforms``); ``load`` picks one from the path. Where the scans
come from - CC-CCII's tree and index, the user's CSV - is ``darnet_pl.data.sources``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import NamedTuple

from darnet_pl.utils.file_kinds import not_regular

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
"""Slice image types, matched case-insensitively."""

NIFTI_SUFFIXES = (".nii", ".nii.gz")

IGNORED_NAMES = frozenset({"thumbs.db", "desktop.ini", "dicomdir"})
"""Files that sit in scan folders without being slices (besides hidden ``.*`` files, always skipped)."""


class ScanError(Exception):
    """A scan that cannot be read as given; the message is one line: ``<path>: <cause>``."""

    def __init__(self, path: str | os.PathLike[str], cause: str) -> None:
        self.path = str(path)
        self.cause = " ".join(str(cause).split())
        super().__init__(f"{self.path}: {self.cause}")


class ScanProblem(NamedTuple):
    """One scan (or index entry) left out, and why: what ingest reports instead of dropping it silently."""

    key: str
    path: str
    cause: str

    @classmethod
    def from_error(cls, key: str, error: ScanError) -> ScanProblem:
        return cls(key, error.path, error.cause)


class ScanNote(NamedTuple):
    """Something worth knowing about a scan that was converted anyway (a skipped stray file, a gap)."""

    key: str
    path: str
    note: str


_notes: ContextVar[list[tuple[str, str]] | None] = ContextVar("scan_notes", default=None)


def note(path: str | os.PathLike[str], text: str) -> None:
    """Report something odd about a scan that is still read; the ingest lists it (or, outside one, a warning).

    Readers return only a volume, so the notes travel beside it: ``collecting_notes`` gathers them for the scan
    being converted, in whatever process converts it, and the ingest report carries them back.
    """
    collector = _notes.get()
    if collector is None:
        log.warning("%s: %s", path, text)
    else:
        collector.append((str(path), " ".join(text.split())))


@contextlib.contextmanager
def collecting_notes() -> Iterator[list[tuple[str, str]]]:
    """The ``(path, note)`` pairs that ``note`` is given inside the block."""
    collected: list[tuple[str, str]] = []
    token = _notes.set(collected)
    try:
        yield collected
    finally:
        _notes.reset(token)


def is_ignored(name: str) -> bool:
    """Hidden files (``.DS_Store``, macOS ``._1.png`` forks) and OS clutter are not slices."""
    return name.startswith(".") or name.lower() in IGNORED_NAMES


def is_slice_image(name: str) -> bool:
    return not is_ignored(name) and name.lower().endswith(IMAGE_EXTENSIONS)


def is_nifti(name: str) -> bool:
    return name.lower().endswith(NIFTI_SUFFIXES)


MIN_SIDE_FRACTION = 16
"""A slice side at least 1/16 of the model's (14 px for the paper's 224; CT slices are 256-512 px): a scan far
smaller than the model's input carries nothing to classify once upsampled, yet would be predicted as confidently
as a real one."""


def check_slice_size(path: str | os.PathLike[str], height: int, width: int, model_size: Sequence[int]) -> None:
    """Refuse slices far smaller than the model's (D, H, W) input (``MIN_SIDE_FRACTION``), in one line naming the
    sizes."""
    _, model_h, model_w = model_size
    need_h, need_w = (max(2, -(-side // MIN_SIDE_FRACTION)) for side in (model_h, model_w))
    if height < need_h or width < need_w:
        raise ScanError(
            path,
            f"scan is {width}x{height} pixels, far smaller than the model's {model_w}x{model_h} input (slices of at "
            f"least {need_w}x{need_h} are read)",
        )


def scan_kind(path: str | os.PathLike[str]) -> str:
    """``"slices"``, ``"dicom"`` or ``"nifti"``: the reader a path needs (``ScanError`` if none fits)."""
    path = Path(path)
    if path.is_file():
        if is_nifti(path.name):
            return "nifti"
        raise ScanError(
            path,
            "unsupported file type: a scan is a .nii/.nii.gz file, a DICOM series or a slice-image folder",
        )
    if not path.is_dir():
        raise ScanError(path, not_regular(path) or "not found")
    entries = [entry for entry in os.scandir(path) if not is_ignored(entry.name)]
    names = [entry.name for entry in entries if entry.is_file()]
    if any(is_slice_image(name) for name in names):
        return "slices"
    if names:
        return "dicom"
    folders = sorted(entry.name for entry in entries if entry.is_dir())
    hint = f" (it has subfolders {', '.join(folders[:3])}: give one scan's folder)" if folders else ""
    raise ScanError(path, f"empty scan folder: no slice images or DICOM files{hint}")


__all__ = [
    "IMAGE_EXTENSIONS",
    "ScanError",
    "ScanNote",
    "ScanProblem",
    "check_slice_size",
    "collecting_notes",
    "is_slice_image",
    "note",
    "scan_kind",
]

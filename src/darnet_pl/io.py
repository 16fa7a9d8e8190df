"""Atomic file output: write to a temporary name in the same folder, then rename.

A crash or a full disk never leaves a truncated file under the final name that a later run would trust.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class StorageError(OSError):
    """An output cannot be written (full disk, read-only or missing folder); ``<path>: <cause>``, one line."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def storage_error(path: str | os.PathLike[str], error: OSError, what: str) -> StorageError:
    """``<path>: cannot write <what> (<OS reason>)`` - the reason as the OS states it, e.g. no space left."""
    reason = error.strerror or str(error)
    return StorageError(error.errno, f"{os.fspath(path)}: cannot write {what} ({reason})")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed to ``path``, on error removed.

    ``suffix`` keeps an extension some writers insist on (``np.save`` appends ``.npy`` otherwise).
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix or ".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; results are meant to be shared like any other
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike[str], payload: Any) -> Path:
    return write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def check_writable(folder: str | os.PathLike[str]) -> None:
    """Create ``folder`` if needed and write (then remove) a probe file in it; raises StorageError if it cannot."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise storage_error(folder, error, "into this output folder") from None

"""Paths that are neither a regular file nor a folder: a FIFO, a device, a socket.

A scan list or a ``--ckpt`` pointing at one is a mistake (or a trap): reading a FIFO with no writer blocks for
ever, ``/dev/zero`` never ends, and ``Path.is_file()`` is False for all of them, so "not found" would send the
user looking for a file that is there. Readers ask ``special_kind`` first and say "not a regular file (a FIFO)".
"""

from __future__ import annotations

import os
import stat

_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def special_kind(path: str | os.PathLike[str]) -> str | None:
    """``"a FIFO"``, ``"a character device"``, ... for such a path (links followed), else None (regular files,
    folders, and paths that do not exist)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    return next((name for test, name in _KINDS if test(mode)), None)


def not_regular(path: str | os.PathLike[str]) -> str | None:
    """``"not a regular file (a FIFO)"`` for a special file, else None: the cause a reader reports."""
    kind = special_kind(path)
    return None if kind is None else f"not a regular file ({kind})"

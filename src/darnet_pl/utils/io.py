"""Atomic file output: write to a temporary name in the same folder, then rename.

A crash or a full disk never leaves a truncated file under the final name that a later run would trust.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator, Mapping
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

    ``suffix`` keeps an extension some writers insist on (``np.save`` appends ``.npy`` otherwise). An ``OSError``
    in the block or on the way (full disk, read-only folder) leaves with ``filename`` set to ``path``: the temporary
    name means nothing to a user, the file that could not be written does (see ``storage_guard``).
    """
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = fresh_hidden(final.parent, f".{final.name}.", suffix or ".tmp", _create_file, _remove_file)
    except OSError as error:
        _name(error, final)
        raise
    try:
        yield tmp
        os.replace(tmp, final)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        _name(error, final)
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fresh_hidden(
    folder: Path, prefix: str, suffix: str, create: Callable[[Path], None], remove: Callable[[Path], None]
) -> Path:
    """A new, unused name in ``folder`` that ``create`` brings into being (a file, a folder).

    Unlike ``tempfile.mkstemp``, the name is known before it exists: a stop that lands just after the creation
    (Ctrl-C; a conversion worker's SIGTERM, which its pool sends at exactly such moments) removes it on the way out
    instead of leaving a hidden, empty file behind. Files are made with the usual permissions (0666 less the umask).
    """
    for _ in range(100):
        candidate = folder / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            create(candidate)
            return candidate
        except FileExistsError:
            continue
        except OSError:
            raise
        except BaseException:
            with contextlib.suppress(OSError):
                remove(candidate)
            raise
    raise FileExistsError(errno.EEXIST, f"{folder}: no unused temporary name in 100 tries")


def remove_tree(path: Path) -> None:
    """A folder and all it holds removed, errors ignored (a clean-up must not hide the error that caused it)."""
    shutil.rmtree(path, ignore_errors=True)


def _create_file(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))


def _remove_file(path: Path) -> None:
    path.unlink(missing_ok=True)


def _name(error: OSError, path: Path) -> None:
    """Give ``error`` ``path`` as its file name (a StorageError already names its file and is left alone)."""
    if not isinstance(error, StorageError):
        error.filename, error.filename2 = os.fspath(path), None


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike[str], payload: Any) -> Path:
    return write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def write_probe(folder: Path) -> None:
    """Create and remove a file in ``folder``: an OSError says why nothing can be written there."""
    fresh_hidden(folder, ".write-probe.", "", lambda probe: (_create_file(probe), probe.unlink()), _remove_file)


def check_writable(folder: str | os.PathLike[str]) -> None:
    """Create ``folder`` if needed and write (then remove) a probe file in it; raises StorageError if it cannot."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_probe(folder)
    except OSError as error:
        raise storage_error(folder, error, "into this output folder") from None


def nearest_existing(folder: Path) -> Path:
    """``folder`` itself if it exists, else the nearest folder above it that does (where it would be created)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def probe_writable(folder: Path, what: str = "into this output folder") -> None:
    """Raise StorageError (``<folder>: cannot write <what> (<reason>)``) unless files can be created in ``folder``
    or, where it does not exist yet, in the nearest folder above it (which is where it will be created). Creates
    nothing that stays behind."""
    existing = nearest_existing(folder)
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        write_probe(existing)
    except OSError as error:
        raise storage_error(folder, error, what) from None


class FolderInUse(StorageError):
    """Another process is writing the same output folder right now."""


@contextlib.contextmanager
def storage_guard(default: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Turn an ``OSError`` of the block into a one-line ``StorageError`` naming the file it was writing.

    The file is the error's own ``filename`` (``atomic_path`` sets it to the final name), else ``default``.
    """
    try:
        yield
    except StorageError:
        raise
    except OSError as error:
        raise storage_error(error.filename or default, error, what) from None


def _missing_folders(folder: Path) -> list[Path]:
    """The folders ``folder.mkdir(parents=True)`` would create, innermost first."""
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    return missing


def _remove_if_empty(folders: list[Path]) -> None:
    for folder in folders:  # innermost first; stops at the first folder that holds something
        try:
            folder.rmdir()
        except OSError:
            return


@contextlib.contextmanager
def output_folder(folder: str | os.PathLike[str], tool: str) -> Iterator[Path]:
    """Create ``folder`` if needed and hold an exclusive lock on it for the block.

    Two processes writing the same folder at once would mix their files; the second one is refused at once
    (``FolderInUse``) rather than made to wait for a run that may never end. The lock is ``flock`` on the folder
    itself, so no lock file is left behind. Folders this call created are removed again when the block fails and
    leaves them empty: a refused or failed run leaves nothing behind.
    """
    folder = Path(folder)
    created = _missing_folders(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as error:
        _remove_if_empty(created)
        if isinstance(error, FileExistsError | NotADirectoryError):
            raise StorageError(error.errno, f"{folder}: is not a folder") from None
        raise storage_error(folder, error, "into this output folder") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderInUse(
                errno.EBUSY, f"{folder}: another {tool} is writing into this folder right now; wait for it to finish"
            ) from None
        yield folder
    except BaseException:
        _remove_if_empty(created)
        raise
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def publish_files(folder: str | os.PathLike[str], files: Mapping[str, bytes], what: str) -> list[Path]:
    """Write several files into ``folder`` together: all of them or, if any write fails, none.

    Each file is first written into a hidden staging folder inside ``folder`` (same file system, so renames are
    atomic); only when every one is complete are they renamed into place. A full disk or an interrupt while
    writing therefore changes nothing in ``folder`` and leaves no temporary files. Names are plain file names.
    """
    folder = Path(folder)
    for name in files:
        if Path(name).name != name or name in ("", ".", ".."):
            raise ValueError(f"{name!r}: not a plain file name")
        if (folder / name).is_dir():
            raise StorageError(errno.EISDIR, f"{folder / name}: is a folder, cannot write {what} there")
    try:
        stage = fresh_hidden(folder, ".staging-", "", lambda path: path.mkdir(mode=0o700), remove_tree)
    except OSError as error:  # its file name would be the staging folder's: name the output folder
        raise storage_error(folder, error, "into this output folder") from None
    try:
        for name, data in files.items():
            with storage_guard(folder / name, what), (stage / name).open("wb") as handle:
                handle.write(data)
        written = []
        for name in files:
            with storage_guard(folder / name, what):
                os.replace(stage / name, folder / name)
            written.append(folder / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return written

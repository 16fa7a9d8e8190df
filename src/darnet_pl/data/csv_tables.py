"""Reading the user's CSV files (scan lists, indexes, split manifests, cleaning lists) with errors that name them.

Python's own errors for a bad CSV name no file: ``'utf-8' codec can't decode byte 0xe9 in position 1034`` for a
list saved by Excel in a Windows code page, ``line contains NUL`` for a spreadsheet given instead of a CSV.
Every reader here goes through ``read_table``, which turns those into ``<file>:<line>: <problem>`` and checks
the columns, with a hint when the file is separated by ``;`` or tabs (what a spreadsheet exports in many
locales).
"""

from __future__ import annotations

import codecs
import csv
import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from darnet_pl.utils.csv_cells import plain_cell
from darnet_pl.utils.file_kinds import not_regular

ErrorFactory = Callable[[str, str], Exception]
"""``(where, cause) -> exception``: each reader raises its own error type (``ScanError``, ``SplitError``, ...)."""

_BOMS = ((codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))


class TableError(ValueError):
    """A CSV that cannot be read as a table: ``<file>[:<line>]: <problem>``."""

    def __init__(self, where: str, cause: str) -> None:
        super().__init__(f"{where}: {cause}")


def decode_text(path: Path, error: ErrorFactory = TableError) -> str:
    """The file's text as UTF-8 (a BOM is allowed); anything else is refused with the line of the first bad byte.

    Guessing another encoding could silently turn ids into other ids; saying where the file is wrong lets the
    user re-save it as UTF-8.
    """
    if (cause := not_regular(path)) is not None:  # a FIFO would block read_bytes for ever
        raise error(str(path), cause)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise error(str(path), f"cannot read the file ({exc.strerror or exc})") from None
    for bom, name in _BOMS:
        if raw.startswith(bom):
            raise error(str(path), f"the file is {name} text: save it as UTF-8 CSV")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        cause = f"not UTF-8 text (byte 0x{raw[exc.start]:02x}): save it as UTF-8 CSV"
        raise error(f"{path}:{line}", cause) from None


def read_table(
    path: str | os.PathLike[str],
    required: Sequence[str],
    expected: str,
    error: ErrorFactory = TableError,
) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Column names and ``(line, row)`` pairs of a CSV, names and values stripped (a missing value is ``""``).

    ``required`` columns must all be present (``expected`` is the header shown in the message). The line is the
    file line a row ends on, so a quoted field spanning lines does not shift later line numbers.
    """
    path = Path(path)
    text = decode_text(path, error)
    if "\0" in text:
        raise error(str(path), "binary content (NUL bytes): not a CSV text file")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in next(reader, [])]
        missing = [column for column in required if column not in header]
        if missing:
            raise error(str(path), f"missing column(s) {missing}: expected {expected}{_separator_hint(header)}")
        rows = []
        for values in reader:
            if not any(value.strip() for value in values):  # blank lines, or a row of empty cells
                continue
            row = {name: "" for name in header if name}
            for name, value in zip(header, values, strict=False):
                if name:
                    row[name] = plain_cell(value.strip())  # a value the package wrote neutralised, as it was
            rows.append((reader.line_num, row))
    except csv.Error as exc:
        raise error(f"{path}:{reader.line_num}", f"malformed CSV ({exc})") from None
    return header, rows


def _separator_hint(header: Sequence[str]) -> str:
    joined = ",".join(header)
    for separator, name in ((";", "semicolons"), ("\t", "tabs")):
        if separator in joined:
            return f" (the header is separated by {name}: save the file with commas)"
    return ""

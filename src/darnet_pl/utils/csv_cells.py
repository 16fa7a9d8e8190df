"""CSV cells that are safe to open in a spreadsheet and read back exactly as they were written.

Ids, paths, labels and messages in the package's CSV files come from users' files and folders. A cell starting
with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return) is a formula to Excel, LibreOffice and Google
Sheets: a scan list with a patient id ``=HYPERLINK("http://...")`` would make every predictions table a link, or
worse (OWASP, "CSV Injection"). As OWASP advises, such a cell is written with a leading single quote, which the
spreadsheet shows as text; the csv module quotes separators and quotes inside cells.

Plain numbers (``-0.25``, ``+3``, ``-1e-05``) are left alone: a spreadsheet reads them as the numbers they are, and
the report's differences stay numbers. Every other cell that starts with a formula character - or with the quote
itself, so that the rule can be undone without doubt - gets the quote, and ``plain_cell`` removes exactly it:
``plain_cell(safe_cell(x)) == x`` for every text ``x``. Every CSV writer of the package goes through
``csv_writer``/``SafeDictWriter``, and every reader of those files through ``plain_cell``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
"""What spreadsheets take as the start of a formula (with the full-width forms some of them accept)."""
QUOTE = "'"
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def looks_like_formula(text: str) -> bool:
    """Whether a spreadsheet would take ``text`` for a formula (plain numbers are not)."""
    return text.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(text)


def _needs_quote(text: str) -> bool:
    return looks_like_formula(text) or text.startswith(QUOTE)


def safe_cell(value: Any) -> Any:
    """``value`` as a spreadsheet shows it as written: a text starting like a formula gets a leading quote."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = str(value)
    return QUOTE + text if _needs_quote(text) else text


def plain_cell(text: str) -> str:
    """The value ``safe_cell`` wrote as ``text`` (cells of other files pass through unchanged)."""
    return text[1:] if text.startswith(QUOTE) and _needs_quote(text[1:]) else text


class SafeWriter:
    """``csv.writer`` whose cells go through ``safe_cell``."""

    def __init__(self, handle: Any, **kwargs: Any) -> None:
        self._writer = csv.writer(handle, **kwargs)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([safe_cell(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_writer(handle: Any, **kwargs: Any) -> SafeWriter:
    """A ``csv.writer`` (same arguments) that neutralises formula cells."""
    return SafeWriter(handle, **kwargs)


class SafeDictWriter(csv.DictWriter):
    """``csv.DictWriter`` whose cells (header included) go through ``safe_cell``."""

    def writerow(self, rowdict: Mapping[str, Any]) -> Any:
        return super().writerow({key: safe_cell(value) for key, value in rowdict.items()})

    def writerows(self, rowdicts: Iterable[Mapping[str, Any]]) -> None:
        for row in rowdicts:
            self.writerow(row)


def plain_rows(rows: Iterable[Mapping[str, str | None]]) -> Iterator[dict[str, str | None]]:
    """The rows of a ``csv.DictReader`` with every cell as it was before ``safe_cell``."""
    for row in rows:
        yield {key: (plain_cell(value) if isinstance(value, str) else value) for key, value in row.items()}

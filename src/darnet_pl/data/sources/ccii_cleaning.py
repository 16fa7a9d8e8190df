"""He et al.'s CC-CCII cleaning list (``he2020_CT_cleaned_v2.csv``), parsed: which slices each scan keeps.

Cleaning list semantics (the list has no reference implementation; this is how it is read here, and why):

- slice positions are 0-based indices into the scan's slices in numeric order (the lists start at 0);
  ``a-b`` is the inclusive range; ``repeat_ids`` separates items with ``;``, ``re_order`` with ``+``;
- ``re_order`` lists the slices to keep, in their new order (slices it does not name are dropped; in the list
  it names exactly the non-repeated slices for most scans); ``reverse`` reverses the whole scan;
- ``repeat_ids`` slices are dropped, also where ``re_order`` names them; ``discard`` (in ``repeat_ids``)
  leaves the scan out;
- positions past the scan's last slice are ignored (the list overshoots "to the end" ranges and has a few
  typos such as ``109120``); each cleaned scan's result is listed in ``selection_report.csv``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from darnet_pl.data.csv_tables import read_table
from darnet_pl.data.records import ScanRecord

CLEANING_COLUMNS = ("cls", "pid", "scan_id", "is_seg", "is_repeat", "repeat_ids", "re_order")
_ITEM = re.compile(r"(\d+)(?:-(\d+))?")


class CleaningListError(ValueError):
    """A cleaning list row that cannot be read: ``<file>:<line>: <what>``."""


@dataclass(frozen=True)
class CleaningEntry:
    """One row of the cleaning list, parsed."""

    key: str
    is_seg: bool
    discard: bool
    drop: frozenset[int]
    order: tuple[int, ...] | None
    reverse: bool
    line: int

    @property
    def changes_slices(self) -> bool:
        return not self.discard and (self.reverse or self.order is not None or bool(self.drop))

    def positions(self, n_slices: int) -> tuple[tuple[int, ...], str]:
        """The slice positions a scan of ``n_slices`` slices is built from, and a note of what changed."""
        if self.reverse:
            base: Sequence[int] = range(n_slices - 1, -1, -1)
        elif self.order is not None:
            base = self.order
        else:
            base = range(n_slices)
        kept: list[int] = []
        seen: set[int] = set()
        for position in base:
            if position < n_slices and position not in self.drop and position not in seen:
                seen.add(position)
                kept.append(position)
        notes = []
        if self.reverse:
            notes.append("slices reversed")
        elif self.order is not None and kept != sorted(kept):
            notes.append("slices re-ordered")
        if len(kept) < n_slices:
            notes.append(f"{n_slices - len(kept)} of {n_slices} slices dropped")
        beyond = sorted({p for p in (*(self.order or ()), *self.drop) if p >= n_slices})
        if beyond:
            notes.append(f"{len(beyond)} position(s) past the last slice ignored (e.g. {beyond[0]})")
        return tuple(kept), "; ".join(notes) or "unchanged"


def parse_positions(text: str, separator: str, where: str) -> list[int]:
    """``"0-3;7"`` -> ``[0, 1, 2, 3, 7]`` (inclusive ranges), refusing anything else with its location."""
    positions: list[int] = []
    for item in text.split(separator):
        match = _ITEM.fullmatch(item.replace(" ", ""))
        if not match:
            raise CleaningListError(f"{where}: {item!r} is not a slice position or an a-b range")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise CleaningListError(f"{where}: range {item!r} runs backwards")
        positions.extend(range(first, last + 1))
    return positions


def read_cleaning_list(path: str | os.PathLike[str]) -> dict[str, CleaningEntry]:
    """Entries of a He et al. cleaning list (``cls,pid,scan_id,is_seg,is_repeat,repeat_ids,re_order``), by key.

    ``is_repeat`` is informational (``repeat_ids`` says what to drop) and is not checked.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: cleaning list not found")
    entries: dict[str, CleaningEntry] = {}
    _, rows = read_table(path, CLEANING_COLUMNS, ",".join(CLEANING_COLUMNS), error=_cleaning_error)
    for line, row in rows:
        where = f"{path}:{line}"
        if row["is_seg"] not in ("0", "1"):
            raise CleaningListError(f"{where}: is_seg must be 0 or 1, got {row['is_seg']!r}")
        key = ScanRecord(row["cls"], row["pid"], row["scan_id"]).key
        if key in entries:
            raise CleaningListError(f"{where}: scan {key} listed twice (line {entries[key].line})")
        repeat, order = row["repeat_ids"], row["re_order"]
        discard = repeat.lower() == "discard"
        reverse = order.lower() == "reverse"
        entries[key] = CleaningEntry(
            key=key,
            is_seg=row["is_seg"] == "1",
            discard=discard,
            drop=frozenset(parse_positions(repeat, ";", where) if repeat and not discard else ()),
            order=tuple(parse_positions(order, "+", where)) if order and not reverse else None,
            reverse=reverse,
            line=line,
        )
    return entries


def _cleaning_error(where: str, cause: str) -> CleaningListError:
    return CleaningListError(f"{where}: {cause}")

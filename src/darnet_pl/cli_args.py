"""The command line, made ready for Hydra.

- `key=a..b` is an inclusive integer range, rewritten to Hydra's `range(a,b+1)`. Hydra's grammar reads `fold=0..4`
  as the string "0..4"; users (and the paper's five-fold protocol) expect the values 0-4. Only values made of
  integers around `..` are touched, so paths such as `data.root=../scans` pass as they are, and Hydra's own sweep
  forms (`0,1,2`, `range(0,5)`) keep working.
- `-m`/`--multirun` goes first: Hydra's parser drops overrides that follow it.
- `debug=NAME` becomes `+debug=NAME` and goes last, so a debug preset overrides the experiment's settings whatever
  the order they were typed in (Hydra applies appended groups in command-line order).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_RANGE_LIKE = re.compile(r"^\s*(?P<start>[-+]?\d+)?\s*\.\.\s*(?P<stop>[-+]?\d+)?\s*$")


class RangeError(ValueError):
    """A malformed `a..b` range on the command line."""


def expand_inclusive_range(argument: str) -> str:
    """``fold=0..4`` -> ``fold=range(0,5)``; anything that is not ``key=<int>..<int>`` is returned unchanged."""
    if argument.startswith("-") or "=" not in argument:
        return argument
    key, value = argument.split("=", 1)
    match = _RANGE_LIKE.match(value)
    if match is None or (match["start"] is None and match["stop"] is None):
        return argument
    if match["start"] is None or match["stop"] is None:
        raise RangeError(f"{argument}: a range needs both ends, e.g. {key}=0..4")
    start, stop = int(match["start"]), int(match["stop"])
    if start > stop:
        raise RangeError(f"{argument}: empty range ({start} > {stop}); write {key}={stop}..{start}")
    return f"{key}=range({start},{stop + 1})"


_FOLD_VALUES = re.compile(r"^(\d+(,\d+)*|range\(\d+,\d+(,\d+)?\))$")


def check_fold(argument: str) -> str:
    """``fold=`` takes fold numbers only (``3``, ``0,2``, ``0..4``, ``range(0,5)``): refuse anything else up front.

    Otherwise a value like ``fold=a..b`` reaches Hydra's sweep-folder naming and fails there with a traceback.
    """
    key, _, value = argument.partition("=")
    if key.lstrip("+~") == "fold" and not _FOLD_VALUES.match(value.replace(" ", "")):
        raise RangeError(f"{argument}: folds are whole numbers, e.g. fold=2, fold=0,1 or fold=0..4")
    return argument


MULTIRUN_FLAGS = ("-m", "--multirun")
_DEBUG = re.compile(r"^\+?debug=")


def normalize_argv(argv: Sequence[str]) -> list[str]:
    """Expand ranges, put the multirun flag first and debug presets last (argv[0] is left alone)."""
    if not argv:
        return []
    rest = [check_fold(expand_inclusive_range(a)) for a in argv[1:]]
    flags = [a for a in rest if a in MULTIRUN_FLAGS][:1]
    debug = ["+" + a.lstrip("+") for a in rest if _DEBUG.match(a)]
    others = [a for a in rest if a not in MULTIRUN_FLAGS and not _DEBUG.match(a)]
    return [argv[0], *flags, *others, *debug]

"""The command line, made ready for Hydra.

- `key=a..b` is an inclusive integer range, rewritten to Hydra's `range(a,b+1)`. Hydra's grammar reads `fold=0..4`
  as the string "0..4"; users (and the paper's five-fold protocol) expect the values 0-4. Only values made of
  integers around `..` are touched, so paths such as `data.root=../scans` pass as they are, and Hydra's own sweep
  forms (`0,1,2`, `range(0,5)`) keep working.
- `-m`/`--multirun` goes first: Hydra's parser drops overrides that follow it.
- `experiment=NAME` becomes `+experiment=NAME` (lightning-hydra-template's spelling: no recipe is in the primary
  config's defaults, so Hydra itself accepts only the appending form).
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
# Hydra's options that take a value as the next word (``--cfg job``): the pair stays together, ahead of overrides.
_OPTIONS_WITH_VALUE = {
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--experimental-rerun",
    "--shell-completion",
    "-sc",
}
_DEBUG = re.compile(r"^\+?debug=")
# groups that no primary config lists in its defaults: typed without '+', they are appended all the same
_APPENDED_GROUPS = re.compile(r"^(experiment|debug)=")


def _split_options(words: Sequence[str]) -> tuple[list[str], list[str]]:
    """(Hydra options with their values, overrides), each in the order typed."""
    options: list[str] = []
    overrides: list[str] = []
    words = list(words)
    while words:
        word = words.pop(0)
        if word.startswith("-"):
            options.append(word)
            if word in _OPTIONS_WITH_VALUE and words:
                options.append(words.pop(0))
        else:
            overrides.append(word)
    return options, overrides


def _appended(argument: str) -> str:
    """``experiment=smoke`` -> ``+experiment=smoke``; every other override as typed."""
    return "+" + argument if _APPENDED_GROUPS.match(argument) else argument


def normalize_argv(argv: Sequence[str]) -> list[str]:
    """Expand ranges; the multirun flag first, then Hydra's other options, the overrides, debug presets last.

    argv[0] is left alone. Options go before the overrides so that a preset moved to the end never lands after an
    option that takes a value (``--cfg job debug=tiny`` would make Hydra read ``debug=tiny`` as an argument).
    """
    if not argv:
        return []
    options, overrides = _split_options(argv[1:])
    overrides = [_appended(check_fold(expand_inclusive_range(a))) for a in overrides]
    flags = [a for a in options if a in MULTIRUN_FLAGS][:1]
    options = [a for a in options if a not in MULTIRUN_FLAGS]
    debug = [a for a in overrides if _DEBUG.match(a)]
    others = [a for a in overrides if not _DEBUG.match(a)]
    return [argv[0], *flags, *options, *others, *debug]

"""Hydra's configuration errors as one line, ``error: <override>: <problem>; did you mean <nearest>?``, exit code 2.

Hydra reports a typo on the command line (an unknown key, an unknown option of a group, an override it cannot
parse) over several lines, ends with "Set the environment variable HYDRA_FULL_ERROR=1 ...", and exits 1; yet it
is a user error like any other (README "Errors": one line naming the key, exit 2). Hydra hands its exceptions to
the caller only when HYDRA_FULL_ERROR=1, so the entry point sets it around the call (``config_errors_in_one_line``)
and words the composition errors here, with the nearest valid names (difflib). Everything else is untouched: user
errors inside a run are handled there (utils.errors), bugs keep their traceback. A user who sets
HYDRA_FULL_ERROR=1 or DARNET_FULL_ERROR=1 gets Hydra's own report.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from hydra.errors import ConfigCompositionException, OverrideParseException

from darnet_pl.utils.exit_codes import EXIT_USER_ERROR

CONFIG_ERRORS = (ConfigCompositionException, OverrideParseException)
"""What Hydra raises while composing a config from the command line (MissingConfigException is one of the first)."""

# Config groups that come with an optional Hydra plugin: what to install when one is missing.
PLUGIN_GROUPS = {
    "hydra/launcher/joblib": "the joblib launcher (hydra/launcher=local_parallel): pip install -e '.[cluster]'",
    "hydra/launcher/submitit_slurm": "the SLURM launcher (hydra/launcher=slurm): pip install -e '.[cluster]'",
    "hydra/launcher/submitit_local": "the submitit launcher: pip install -e '.[cluster]'",
    "hydra/sweeper/optuna": "the Optuna sweeper (+experiment=search): pip install -e '.[search]'",
}
GRAMMAR_URL = "https://hydra.cc/docs/advanced/override_grammar/basic/"


def nearest(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The candidates closest to ``word`` (difflib's ratio of at least 0.6), best first."""
    return difflib.get_close_matches(word, sorted(set(candidates)), n=n, cutoff=0.6)


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    close = nearest(word, candidates)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def _listing(names: Iterable[str], limit: int = 12) -> str:
    names = sorted(set(names))
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _dotted_keys(node: Any, prefix: str = "") -> Iterator[str]:
    """Every key of a config below ``node``, dotted (``model.optimizer.lr``); values are never resolved."""
    from omegaconf import DictConfig

    if not isinstance(node, DictConfig):
        return
    for key in node:
        dotted = f"{prefix}{key}"
        yield dotted
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            yield from _dotted_keys(child, dotted + ".")


def unknown_option(missing: str, options: Iterable[str]) -> str:
    """``experiment=smok: no such experiment; did you mean smoke? (options: ...)``, or the plugin to install."""
    if missing in PLUGIN_GROUPS:
        return f"{missing}: not installed; it is {PLUGIN_GROUPS[missing]}"
    group, _, name = missing.rpartition("/")
    options = list(options)
    return f"{group}={name}: no such option{did_you_mean(name, options)} ({group}: {_listing(options)})"


def unknown_key(full_key: str, parent: Any, typed: str | None) -> str:
    """``model.attenton=ca: no such key; did you mean model.attention?``: siblings first, then any key of the config
    whose last part is close (``attention=ca`` -> ``model.attention``)."""
    from omegaconf import DictConfig

    prefix, _, last = full_key.rpartition(".")
    siblings = [str(k) for k in parent] if isinstance(parent, DictConfig) else []
    close = [f"{prefix}.{k}" if prefix else k for k in nearest(last, siblings)]
    if not close and not prefix and isinstance(parent, DictConfig):  # a top-level typo of a nested key
        everywhere = [key for key in _dotted_keys(parent) if not key.startswith("hydra.")]
        by_last = {key: key.rpartition(".")[2] for key in everywhere}
        close = [key for key in everywhere if by_last[key] in nearest(last, by_last.values())][:3]
    shown = typed or full_key
    if close:
        return f"{shown}: no such key; did you mean {' or '.join(close)}?"
    public = [k for k in siblings if not k.startswith("_")]
    if prefix:
        return f"{shown}: no such key ({prefix} has: {_listing(public)})"
    return f"{shown}: no such key (top-level keys: {_listing(public)}; +{shown} adds a new one)"


def as_typed(override: str) -> str:
    """``fold=range(0,5)`` back to ``fold=0..4``, the way it was typed (cli.argv rewrote it for Hydra)."""
    match = re.fullmatch(r"(.+)=range\((-?\d+),(-?\d+)\)", override)
    return f"{match[1]}={match[2]}..{int(match[3]) - 1}" if match else override


def describe(error: BaseException) -> str:
    """One line for a Hydra composition error: the override, what is wrong, and the nearest valid names."""
    from hydra.errors import MissingConfigException
    from omegaconf.errors import ConfigKeyError

    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    if isinstance(error, OverrideParseException):
        return f"{error.override}: cannot be read ({first}); see {GRAMMAR_URL}"
    if isinstance(error, MissingConfigException) and error.missing_cfg_file:
        return unknown_option(str(error.missing_cfg_file), error.options or ())
    cause = error.__cause__
    if isinstance(cause, ConfigKeyError | AttributeError) and getattr(cause, "full_key", None):
        appended = re.search(r"use \+(\S+)", text)
        return unknown_key(str(cause.full_key), getattr(cause, "parent_node", None), appended and appended[1])
    several = re.match(r"(?:Ambiguous value for argument|Sweep parameters) '(.+?)'", first)
    if several:
        return f"{as_typed(several[1])}: several values for one run; add -m to run one job per value (a sweep)"
    exists = re.match(r"Could not append to config\. An item is already at '(.+)'", first)
    if exists:
        return f"+{exists[1]}: {exists[1]} exists already; set it without the +"
    return first


def _hydra_usage_error(error: BaseException) -> bool:
    """A ValueError Hydra raises while reading its own options (``-m`` with ``--cfg``), before any job."""
    traceback = error.__traceback__
    while traceback is not None and traceback.tb_next is not None:
        traceback = traceback.tb_next
    return traceback is not None and traceback.tb_frame.f_globals.get("__name__") == "hydra._internal.utils"


@contextlib.contextmanager
def config_errors_in_one_line() -> Iterator[None]:
    """Around Hydra's entry: a composition error becomes ``error: <one line>`` and exit code 2."""
    previous = os.environ.get("HYDRA_FULL_ERROR")
    full = previous == "1" or bool(os.environ.get("DARNET_FULL_ERROR"))
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra then raises instead of printing its report and exiting 1
    try:
        yield
    except (*CONFIG_ERRORS, ValueError) as error:
        if full or not (isinstance(error, CONFIG_ERRORS) or _hydra_usage_error(error)):
            raise
        from darnet_pl.cli.hydra_callbacks import remove_unused_sweep_dirs

        remove_unused_sweep_dirs()  # a sweep whose jobs could not be composed leaves nothing behind
        print(f"error: {describe(error)}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
    finally:
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous

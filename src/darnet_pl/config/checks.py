"""Check the values a user types on the command line before anything is built or written.

Hydra accepts ``data.batch_size=abc`` (the configs are untyped YAML), and the mistake then surfaces deep inside
Lightning or a DataLoader as a traceback that names neither the key nor the value. Each key here is checked for
what it must be; a wrong value is one ``ValueError`` naming the key, the value and what was expected.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(value: Any) -> bool:
    return _is_int(value) and value > 0


def _non_negative_int(value: Any) -> bool:
    return _is_int(value) and value >= 0


def _positive_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _non_negative_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def _epochs(value: Any) -> bool:
    return _is_int(value) and (value > 0 or value == -1)


def _size(value: Any) -> bool:
    return isinstance(value, Sequence) and len(value) == 3 and all(_positive_int(v) for v in value)


def _int_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str) and all(_non_negative_int(v) for v in value)


def _bool(value: Any) -> bool:
    return isinstance(value, bool)


# key -> (test, what it must be). Keys absent from a config (another data source, no scheduler) are skipped.
CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "fold": (_non_negative_int, "a fold number (0, 1, ...)"),
    "seed": (_is_int, "an integer"),
    "deterministic": (_bool, "true or false"),
    "test": (_bool, "true or false"),
    "redo": (_bool, "true or false"),
    "data.batch_size": (_positive_int, "a positive integer"),
    "data.num_workers": (_non_negative_int, "0 or a positive integer"),
    "data.size": (_size, "three positive integers [D,H,W]"),
    "data.split_seed": (_is_int, "an integer"),
    "data.n_folds": (_positive_int, "a positive integer"),
    "model.width": (_positive_int, "a positive integer"),
    "model.optimizer.lr": (_positive_number, "a positive number"),
    "model.optimizer.weight_decay": (_non_negative_number, "0 or a positive number"),
    "model.scheduler.milestones": (_int_list, "a list of epochs, e.g. [30,60]"),
    "model.scheduler.gamma": (_positive_number, "a positive number"),
    "trainer.max_epochs": (_epochs, "a positive integer (or -1: no limit)"),
    "trainer.min_epochs": (_non_negative_int, "0 or a positive integer"),
    "trainer.log_every_n_steps": (_positive_int, "a positive integer"),
    "trainer.check_val_every_n_epoch": (_positive_int, "a positive integer"),
    "trainer.accumulate_grad_batches": (_positive_int, "a positive integer"),
}

_MISSING = object()


def _value(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key, default=_MISSING)
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    return value


# darnet_pl.models.ATTENTION_VARIANTS (config/ does not import the model; tests/config/test_checks.py keeps them equal)
ATTENTION_VARIANTS = ("none", "ca", "da", "dual")

CCII_SOURCE = "darnet_pl.data.sources.ccii.CCIISource"


CCII_ONLY = ("apply_cleaning", "exclude_segmented", "cleaning_csv")


def check_data_root(cfg: DictConfig) -> None:
    """CC-CCII has no default location: without a usable root, say what to set (never fall back to phantoms)."""
    target = OmegaConf.select(cfg, "data.source._target_", default=None)
    if target != CCII_SOURCE:
        source = OmegaConf.select(cfg, "data.source", default=None) or {}
        given = [key for key in CCII_ONLY if key in source]
        if given:  # e.g. +experiment=shortcut_control data=synthetic
            raise ValueError(
                f"data.source.{given[0]}: CC-CCII's cleaning list applies to data=ccii only, not to {target}"
            )
        return
    root = OmegaConf.select(cfg, "data.root", default=None)
    hint = "set data.root=/path/to/CC-CCII or DARNET_CCII_ROOT"
    if root in (None, ""):
        raise ValueError(f"data=ccii needs the CC-CCII download: {hint}")
    if not Path(str(root)).expanduser().is_dir():
        raise ValueError(f"data.root={root}: no such folder; {hint}")


def check_config(cfg: DictConfig) -> None:
    """Raise ``ValueError("<key>=<value>: expected <what>")`` for the first value that cannot be right."""
    check_data_root(cfg)
    for key, (test, expected) in CHECKS.items():
        value = _value(cfg, key)
        if value is _MISSING or value is None:
            continue
        if not test(value):
            shown = value if not isinstance(value, list) else "[" + ",".join(str(v) for v in value) + "]"
            raise ValueError(f"{key}={shown}: expected {expected}")
    attention = _value(cfg, "model.attention")
    if attention not in (_MISSING, None) and attention not in ATTENTION_VARIANTS:
        close = difflib.get_close_matches(str(attention), ATTENTION_VARIANTS, n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ValueError(f"model.attention={attention}: expected one of {', '.join(ATTENTION_VARIANTS)}{hint}")
    how = _value(cfg, "model.patient_aggregation")
    if how not in (_MISSING, None, "mean", "max"):
        raise ValueError(f"model.patient_aggregation={how}: expected one of mean, max")
    init_from = _value(cfg, "model.init_from")
    if init_from not in (_MISSING, None) and not Path(str(init_from)).expanduser().is_file():
        raise ValueError(f"model.init_from={init_from}: no such file (the weights to start from)")
    n_folds = _value(cfg, "data.n_folds")
    fold = _value(cfg, "fold")
    if _positive_int(n_folds) and _is_int(fold) and fold >= n_folds:
        raise ValueError(f"fold={fold} is out of range: folds are 0..{n_folds - 1}")

"""Check the values a user types on the command line before anything is built or written.

Hydra accepts ``data.batch_size=abc`` (the configs are untyped YAML), and the mistake then surfaces deep inside
Lightning or a DataLoader as a traceback that names neither the key nor the value. Each key here is checked for
what it must be; a wrong value is one ``ValueError`` naming the key, the value and what was expected.
"""

from __future__ import annotations

import difflib
import os
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


SEED_MAX = 2**32 - 1
"""numpy's and Lightning's seeds are 0..2**32-1: Lightning replaces any other by a random seed, with a warning."""


def _seed(value: Any) -> bool:
    return _is_int(value) and 0 <= value <= SEED_MAX


def _probability(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1


def _at_least(minimum: int) -> Callable[[Any], bool]:
    return lambda value: _is_int(value) and value >= minimum


def _count_range(value: Any) -> bool:
    """``[lo, hi]`` with 1 <= lo <= hi."""
    return (
        isinstance(value, Sequence)
        and len(value) == 2
        and all(_positive_int(v) for v in value)
        and (value[0] <= value[1])
    )


def _devices(value: Any) -> bool:
    """Lightning's ``devices``: a positive count, -1 (all), ``auto``, ``"0,1"`` or a list of device indices."""
    if _is_int(value):
        return value > 0 or value == -1
    if isinstance(value, str):
        text = value.strip()
        return text in ("auto", "-1") or (text.replace(",", "").isdigit() and text.strip(",") not in ("", "0"))
    return isinstance(value, Sequence) and len(value) > 0 and all(_non_negative_int(v) for v in value)


# key -> (test, what it must be). Keys absent from a config (another data source, no scheduler) are skipped.
CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "fold": (_non_negative_int, "a fold number (0, 1, ...)"),
    "seed": (_seed, f"an integer from 0 to {SEED_MAX} (numpy's seed range)"),
    "deterministic": (_bool, "true or false"),
    "test": (_bool, "true or false"),
    "redo": (_bool, "true or false"),
    "data.batch_size": (_positive_int, "a positive integer"),
    "data.num_workers": (_non_negative_int, "0 or a positive integer"),
    "data.size": (_size, "three positive integers [D,H,W]"),
    "data.split_seed": (_seed, f"an integer from 0 to {SEED_MAX} (numpy's seed range)"),
    "data.n_folds": (_at_least(2), "an integer of at least 2 (one fold validates, the others train)"),
    "data.source.workers": (_at_least(-1), "-1 (one per CPU core), 0 (none) or a positive integer"),
    "synthetic_patients_per_class": (_positive_int, "a positive integer"),
    "data.source.patients_per_class": (_positive_int, "a positive integer"),
    "data.source.scans_per_patient": (_count_range, "[min,max] scans per patient, 1 <= min <= max"),
    "synthetic_lesion_scale": (_positive_number, "a positive number"),
    "data.source.lesion_scale": (_positive_number, "a positive number"),
    "data.source.preprocessing.border_crop": (_non_negative_int, "0 or a positive integer (pixels)"),
    "data.source.preprocessing.reference_width": (_positive_int, "a positive integer (pixels)"),
    "data.source.preprocessing.window_width": (_positive_number, "a positive number (Hounsfield units)"),
    "data.augment.flip_prob": (_probability, "a probability from 0 to 1"),
    "data.augment.affine_prob": (_probability, "a probability from 0 to 1"),
    "data.augment.rotate_degrees": (_non_negative_number, "0 or a positive number of degrees"),
    "data.augment.translate_fraction": (_probability, "a fraction of the image from 0 to 1"),
    "data.augment.scale_range": (_probability, "a fraction from 0 to 1"),
    "model.width": (_positive_int, "a positive integer"),
    "model.in_channels": (_positive_int, "a positive integer"),
    "model.ca_reduction": (_positive_int, "a positive integer"),
    "model.optimizer.lr": (_positive_number, "a positive number"),
    "model.optimizer.weight_decay": (_non_negative_number, "0 or a positive number"),
    "model.scheduler.milestones": (_int_list, "a list of epochs, e.g. [30,60]"),
    "model.scheduler.gamma": (_positive_number, "a positive number"),
    "trainer.max_epochs": (_epochs, "a positive integer (or -1: no limit)"),
    "trainer.min_epochs": (_non_negative_int, "0 or a positive integer"),
    "trainer.log_every_n_steps": (_positive_int, "a positive integer"),
    "trainer.check_val_every_n_epoch": (_positive_int, "a positive integer"),
    "trainer.accumulate_grad_batches": (_positive_int, "a positive integer"),
    "trainer.max_steps": (lambda v: _is_int(v) and (v > 0 or v == -1), "a positive integer (or -1: no limit)"),
    "trainer.devices": (_devices, "a positive number of devices, -1 (all), auto, or a list of device indices"),
    "callbacks.model_checkpoint.save_top_k": (_at_least(-1), "-1 (all), 0 (none) or a positive integer"),
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


OUTPUT_FOLDERS = ("paths.log_dir", "paths.data_dir", "data.cache_dir")
"""Folders that must be named: an empty one puts ``<it>/<task_name>`` at the filesystem root (``/smoke/runs``)."""
NAMES_IN_PATHS = ("task_name",)
"""Values that become one folder name below the output folder (``<log_dir>/<task_name>/runs/...``)."""


def _path_part_problem(value: str) -> str | None:
    """Why ``value`` cannot be one folder name (it would leave its parent folder), or None."""
    if not value.strip():
        return "is empty"
    if value in (".", "..") or any(sep in value for sep in ("/", "\\", "\0")):
        return "would leave the output folder (no '/', '..' or absolute paths)"
    return None


def check_output_names(cfg: DictConfig) -> None:
    """Outputs stay where the user put them: the output folders are named, and names that become folder names
    (``task_name``, the experiment's name) are plain names. Checked before Hydra makes the run folder."""
    for key in OUTPUT_FOLDERS:
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and not str(value).strip():
            raise ValueError(f"{key} is empty: give a folder (an empty DARNET_LOG_DIR/DARNET_DATA_DIR counts as unset)")
    for key in NAMES_IN_PATHS:
        value = OmegaConf.select(cfg, key, default=None)
        problem = None if value is None else _path_part_problem(str(value))
        if problem:
            raise ValueError(f"{key}={value}: {problem}; it names the runs' folder <log_dir>/<{key}>, e.g. {key}=mine")
    experiment = OmegaConf.select(cfg, "hydra.runtime.choices.experiment", default=None)
    if experiment is not None and _path_part_problem(str(experiment)):
        raise ValueError(f"experiment={experiment}: expected the name of a recipe in conf/experiment, e.g. smoke")


def check_config(cfg: DictConfig) -> None:
    """Raise ``ValueError("<key>=<value>: expected <what>")`` for the first value that cannot be right."""
    check_data_root(cfg)
    check_output_names(cfg)
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
    check_memory(cfg)


DARNET_PARAMETERS_AT_WIDTH_64 = 35_237_163
"""DARNet (dual attention) at the paper's width 64; the count grows with the square of ``model.width``."""
TRAINING_BYTES_PER_PARAMETER = 16
"""fp32 weights, gradients and Adam's two moments."""


def physical_memory() -> int | None:
    """Bytes of memory of this machine (None where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(cfg: DictConfig) -> None:
    """Sizes no machine of this kind could hold are refused before anything is allocated (an allocation of
    terabytes does not fail cleanly: it swaps the machine to a halt or is killed): the model's weights and optimizer
    state at ``model.width``, and one input batch of ``data.batch_size`` volumes of ``data.size``."""
    memory = physical_memory()
    if not memory:
        return
    width = _value(cfg, "model.width")
    if _positive_int(width):
        parameters = DARNET_PARAMETERS_AT_WIDTH_64 * (width / 64) ** 2
        needed = parameters * TRAINING_BYTES_PER_PARAMETER
        if needed > memory:
            raise ValueError(
                f"model.width={width}: DARNet at this width has about {parameters:.2g} parameters, "
                f"{needed / 1e9:.3g} GB to train, more than this machine's {memory / 1e9:.3g} GB of memory"
            )
    size, batch = _value(cfg, "data.size"), _value(cfg, "data.batch_size")
    if _size(size) and _positive_int(batch):
        needed = 4 * batch * size[0] * size[1] * size[2]
        if needed > memory:
            shown = ",".join(str(v) for v in size)
            raise ValueError(
                f"data.size=[{shown}] with data.batch_size={batch}: one input batch alone is {needed / 1e9:.3g} GB, "
                f"more than this machine's {memory / 1e9:.3g} GB of memory"
            )

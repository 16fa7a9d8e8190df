"""What every job of a command needs, checked once before the first job starts (``CheckJobNeeds``).

A sweep whose jobs all lack the same thing (the CC-CCII download, a writable cache, the W&B package, the launcher's
plugin, a value that cannot be right) would otherwise fail the same way in every job: the same error once per job,
a job folder with ``failed.json`` each, exit 1. Checked here on the sweep's own config, it is one line and exit 2,
and no job folder is made. Only what no sweep value changes is checked: a failure that involves a swept key
(``data.root=/a,/b``, ``fold=0,7``) is left to the jobs, which check their own values again.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Collection
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

FOLDER_SOURCE = "darnet_pl.data.sources.folder.FolderSource"
# The optional packages behind a target, and how to install them.
INSTALL_HINTS = {
    "hydra_plugins.hydra_joblib_launcher": "pip install -e '.[cluster]'",
    "hydra_plugins.hydra_submitit_launcher": "pip install -e '.[cluster]'",
    "hydra_plugins.hydra_optuna_sweeper": "pip install -e '.[search]'",
    "wandb": "pip install wandb",
}
# targets installed with the package itself (importing them here would only slow the start down)
_PART_OF_THE_PACKAGE = ("darnet_pl.", "hydra._internal.", "pytorch_lightning.", "lightning.")
_KEY_OF_MESSAGE = re.compile(r"^\+?(?P<key>[\w./]+?)(?:=|: | )")


class MissingDependency(ImportError):
    """An optional package the chosen launcher, sweeper or logger needs is not installed."""


def varied_keys(config: DictConfig) -> frozenset[str]:
    """The keys a multirun gives several values: sweep overrides (``fold=0..4``) and the sweeper's ``params``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    keys: set[str] = set()
    typed = [str(o) for o in OmegaConf.select(config, "hydra.overrides.task", default=None) or ()]
    for override in OverridesParser.create().parse_overrides(typed):
        if override.is_sweep_override():
            keys.add(override.get_key_element())
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    keys.update(str(key) for key in params)
    return frozenset(key.lstrip("+~").split("@")[0].replace("/", ".") for key in keys)


def varies(key: str, varied: Collection[str]) -> bool:
    """Whether a sweep may give ``key`` several values: the key itself, a group or key above it, one below it, or
    the recipe (``experiment``) is swept."""
    key = key.replace("/", ".")
    if "experiment" in varied:
        return True
    return any(key == v or key.startswith(v + ".") or v.startswith(key + ".") for v in varied)


def check_values(config: DictConfig, varied: Collection[str]) -> None:
    """The run's value checks (config.checks) on the sweep's config; a failure on a swept key is the jobs' to
    report. A config only a job can resolve (e.g. its output folder) is left to the job as well."""
    from darnet_pl.config.checks import check_config

    try:
        check_config(config)
    except ValueError as error:
        match = _KEY_OF_MESSAGE.match(str(error))
        if match is None or not varies(match["key"], varied):
            raise
    except Exception:  # not resolvable before a job runs: each job checks it
        return


def check_scan_list(config: DictConfig, varied: Collection[str]) -> None:
    """data=folder reads its scans from one CSV (``data.scan_list``): it must be there."""
    source = OmegaConf.select(config, "data.source._target_", default=None, throw_on_resolution_failure=False)
    if source != FOLDER_SOURCE or varies("data.scan_list", varied):
        return
    scan_list = OmegaConf.select(config, "data.scan_list", default=None, throw_on_resolution_failure=False)
    if scan_list and not Path(str(scan_list)).expanduser().is_file():
        raise ValueError(f"data.scan_list={scan_list}: no such file (the CSV listing your scans)")


def check_cache_writable(config: DictConfig, varied: Collection[str]) -> None:
    """The data cache (``data.cache_dir``, for CC-CCII and your own scans) must be writable: training writes its
    reports there even when every volume is cached."""
    from darnet_pl.utils.io import StorageError, probe_writable

    if varies("data.cache_dir", varied):
        return
    cache_dir = OmegaConf.select(config, "data.cache_dir", default=None, throw_on_resolution_failure=False)
    if not cache_dir:
        return
    try:
        probe_writable(Path(str(cache_dir)), "the data cache into this folder")
    except StorageError as error:
        raise StorageError(error.errno, f"{error}; choose another with data.cache_dir=<folder>") from None


def _targets(config: DictConfig, varied: Collection[str]) -> list[tuple[str, str]]:
    """(choice, ``_target_``) of the launcher, the sweeper and each logger that no sweep value changes."""
    found = []
    for group in ("launcher", "sweeper"):
        target = OmegaConf.select(config, f"hydra.{group}._target_", default=None)
        if target and not varies(f"hydra.{group}", varied):
            choice = OmegaConf.select(config, f"hydra.runtime.choices.hydra/{group}", default=None) or group
            found.append((f"hydra/{group}={choice}", str(target)))
    if not varies("logger", varied):
        for name, logger in (OmegaConf.select(config, "logger", default=None) or {}).items():
            target = str(logger.get("_target_", "")) if isinstance(logger, DictConfig) else ""
            if target:
                found.append((f"logger={name}", "wandb" if "wandb" in target.lower() else target))
    return found


def check_dependencies(config: DictConfig, varied: Collection[str]) -> None:
    """Import the module behind the launcher, the sweeper and each logger: a missing package is one line."""
    for choice, target in _targets(config, varied):
        if target.startswith(_PART_OF_THE_PACKAGE):
            continue
        module = target if target == "wandb" else target.rsplit(".", 1)[0]
        try:
            importlib.import_module(module)
        except ImportError as error:
            hint = next((h for prefix, h in INSTALL_HINTS.items() if module.startswith(prefix)), None)
            how = f": {hint}" if hint else ""
            raise MissingDependency(f"{choice} needs {module}, which cannot be imported ({error}){how}") from None


def check_job_needs(config: DictConfig, varied: Collection[str] = ()) -> None:
    """Raise ValueError, StorageError or MissingDependency for what no job of this command could do without."""
    check_values(config, varied)
    check_scan_list(config, varied)
    check_cache_writable(config, varied)
    check_dependencies(config, varied)

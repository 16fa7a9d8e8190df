"""OmegaConf resolvers the configs use; registered once, before Hydra composes anything."""

from __future__ import annotations

import os
from typing import Any

from omegaconf import ListConfig, OmegaConf

from darnet_pl.config.help import help_text
from darnet_pl.runs.naming import experiment_of, job_subdir
from darnet_pl.utils.package_files import RESOURCES_DIR

RESOURCES = RESOURCES_DIR


def packaged_file(name: str) -> str:
    """The path of a data file shipped with the package (``resources/<name>``), e.g. the paper's split."""
    path = RESOURCES / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not shipped with this installation of darnet-pl")
    return str(path)


def env_or_default(name: str, default: Any = None) -> Any:
    """``$name``, or ``default`` when it is unset or empty (blank): ``DARNET_LOG_DIR=`` typed to clear the variable
    must not turn ``${DARNET_LOG_DIR}/<task>`` into a folder at the filesystem root, as ``oc.env`` would."""
    value = os.environ.get(str(name), "")
    return value if value.strip() else default


def experiment_key(task_name: str, attention: str, overrides: Any) -> str:
    """``smoke_ablation/dual/model.optimizer.lr=0.0001``: the experiment these overrides make (runs.naming)."""
    return experiment_of(str(task_name), str(attention), [str(o) for o in overrides or ()]).key


def run_name(key: str, fold: Any, output_dir: str | None, sweep_dir: str | None) -> str:
    """The W&B run name of one job, unique per job folder: ``<experiment>/fold<k>`` for a sweep job; a single run,
    whose folder is new each time, adds that folder's name."""
    name = f"{key}/fold{fold}"
    if not output_dir or not sweep_dir:  # composed without running (--cfg job)
        return name
    inside_sweep = os.path.commonpath([os.path.abspath(output_dir), os.path.abspath(sweep_dir)])
    return name if inside_sweep == os.path.abspath(sweep_dir) else f"{name}@{os.path.basename(output_dir)}"


def run_tags(tags: Any, choices: Any) -> ListConfig:
    """The recipe's tags plus where the data come from (``data:<source>``) and any debug preset (``debug:<name>``),
    so that W&B filters tell try-outs from real runs."""
    out = [str(t) for t in tags or ()]
    for group in ("data", "debug"):
        chosen = choices.get(group) if choices is not None else None
        if chosen:
            out.append(f"{group}:{chosen}")
    return ListConfig(list(dict.fromkeys(out)))  # a config node: a plain list cannot be resolved in place


def console_verbose(verbose: Any, hydra_verbose: Any = False) -> bool:
    """Whether the console shows every message: ``verbose=true`` or Hydra's ``hydra.verbose`` (true or loggers)."""
    return verbose is True or bool(hydra_verbose)


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("darnet_packaged"):
        OmegaConf.register_new_resolver("darnet_packaged", packaged_file)
    # The folder the command was typed in. Not ${hydra:runtime.cwd}: Hydra resolves hydra.sweep.dir (and calls the
    # run/multirun-start callbacks) before it sets the Hydra config that resolver reads, so sweeps failed with it.
    if not OmegaConf.has_resolver("darnet_env"):
        OmegaConf.register_new_resolver("darnet_env", env_or_default)
    if not OmegaConf.has_resolver("darnet_cwd"):
        OmegaConf.register_new_resolver("darnet_cwd", os.getcwd, use_cache=True)
    if not OmegaConf.has_resolver("darnet_job_subdir"):
        OmegaConf.register_new_resolver(
            "darnet_job_subdir", lambda attention, fold, overrides: job_subdir(attention, fold, overrides)
        )
    for name, function in (
        ("darnet_help", help_text),
        ("darnet_verbose", console_verbose),
        ("darnet_experiment", experiment_key),
        ("darnet_run_name", run_name),
        ("darnet_run_tags", run_tags),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)
    # ${darnet_not:${deterministic}}: a switch that is on unless another is (trainer.benchmark in trainer/gpu.yaml)
    if not OmegaConf.has_resolver("darnet_not"):
        OmegaConf.register_new_resolver("darnet_not", lambda value: not value)

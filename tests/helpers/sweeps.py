"""A launcher dry run: the jobs a multirun command would launch, each composed, without running or submitting one.

For README commands that need GPUs or a SLURM cluster: what can be checked on a CPU is that every job composes,
that the launcher asked for is configured and importable, and what each job's Trainer would be given.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import get_class
from omegaconf import OmegaConf

from darnet_pl.cli.argv import MULTIRUN_FLAGS, normalize_argv
from darnet_pl.cli.train import CONFIG_DIR
from darnet_pl.config.resolvers import register_resolvers


@dataclass(frozen=True)
class PlannedJob:
    overrides: tuple[str, ...]
    fold: int
    attention: str
    launcher: str
    trainer: dict[str, Any]


@contextlib.contextmanager
def _inside(folder: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def dry_run_jobs(args: Sequence[str], cwd: Path) -> list[PlannedJob]:
    """The jobs of ``python -m darnet_pl <args>`` (a multirun), as the basic sweeper would split them."""
    register_resolvers()
    argv = [a for a in normalize_argv(["prog", *args])[1:] if a not in MULTIRUN_FLAGS]
    parser = OverridesParser.create()
    fixed = [o.input_line for o in parser.parse_overrides(argv) if not o.is_sweep_override()]
    jobs: list[PlannedJob] = []
    with _inside(cwd), initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        base = compose(config_name="config", overrides=fixed, return_hydra_config=True)
        params = [f"{k}={v}" for k, v in (base.hydra.sweeper.params or {}).items()]
        for batch in BasicSweeper.split_arguments(parser.parse_overrides(params + argv), None):
            for overrides in batch:
                cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
                HydraConfig.instance().set_config(cfg)
                get_class(cfg.hydra.launcher._target_)  # the launcher plugin is installed and importable
                trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
                jobs.append(
                    PlannedJob(
                        tuple(overrides), int(cfg.fold), str(cfg.model.attention), cfg.hydra.launcher._target_, trainer
                    )
                )
    return jobs

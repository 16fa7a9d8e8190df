"""OmegaConf resolvers the configs use; registered once, before Hydra composes anything."""

from __future__ import annotations

import os

from omegaconf import OmegaConf

from darnet_pl.runs.naming import job_subdir
from darnet_pl.utils.package_files import RESOURCES_DIR

RESOURCES = RESOURCES_DIR


def packaged_file(name: str) -> str:
    """The path of a data file shipped with the package (``resources/<name>``), e.g. the paper's split."""
    path = RESOURCES / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not shipped with this installation of darnet-pl")
    return str(path)


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("darnet_packaged"):
        OmegaConf.register_new_resolver("darnet_packaged", packaged_file)
    # The folder the command was typed in. Not ${hydra:runtime.cwd}: Hydra resolves hydra.sweep.dir (and calls the
    # run/multirun-start callbacks) before it sets the Hydra config that resolver reads, so sweeps failed with it.
    if not OmegaConf.has_resolver("darnet_cwd"):
        OmegaConf.register_new_resolver("darnet_cwd", os.getcwd, use_cache=True)
    if not OmegaConf.has_resolver("darnet_job_subdir"):
        OmegaConf.register_new_resolver(
            "darnet_job_subdir", lambda attention, fold, overrides: job_subdir(attention, fold, overrides)
        )
    # ${darnet_not:${deterministic}}: a switch that is on unless another is (trainer.benchmark in trainer/gpu.yaml)
    if not OmegaConf.has_resolver("darnet_not"):
        OmegaConf.register_new_resolver("darnet_not", lambda value: not value)

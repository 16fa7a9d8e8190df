"""OmegaConf resolvers the configs use; registered once, before Hydra composes anything."""

from __future__ import annotations

import os

from omegaconf import OmegaConf

from darnet_pl.job_dirs import job_subdir


def register_resolvers() -> None:
    # The folder the command was typed in. Not ${hydra:runtime.cwd}: Hydra resolves hydra.sweep.dir (and calls the
    # run/multirun-start callbacks) before it sets the Hydra config that resolver reads, so sweeps failed with it.
    if not OmegaConf.has_resolver("darnet_cwd"):
        OmegaConf.register_new_resolver("darnet_cwd", os.getcwd, use_cache=True)
    if not OmegaConf.has_resolver("darnet_job_subdir"):
        OmegaConf.register_new_resolver(
            "darnet_job_subdir", lambda attention, fold, overrides: job_subdir(attention, fold, overrides)
        )

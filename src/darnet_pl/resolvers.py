"""OmegaConf resolvers the configs use; registered once, before Hydra composes anything."""

from __future__ import annotations

from omegaconf import OmegaConf

from darnet_pl.job_dirs import job_subdir


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("darnet_job_subdir"):
        OmegaConf.register_new_resolver(
            "darnet_job_subdir", lambda attention, fold, overrides: job_subdir(attention, fold, overrides)
        )

"""Which experiment a job belongs to: the one definition behind job folders, report rows, W&B groups, ensembles.

An experiment is the recipe (``task_name``), the attention variant and every override typed on the command line
that changes what is trained or how it is selected. A job is one fold of it. Where and how a job runs - devices,
strategy, launcher, precision, loader workers, output folders, loggers - never makes another experiment: the same
sweep run on a laptop, two GPUs or a SLURM cluster finds the same job folders, fills the same report rows and the same
W&B group, and ``darnet-predict`` ensembles only models of one experiment.

Job folders are ``<log_dir>/<task_name>/sweep/<variant>/[<other overrides>/]fold<k>``: the same command always maps
a job to the same folder (a rerun skips finished jobs), different experiments never share one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from darnet_pl.utils.text import safe_name

# Overrides that do not define the experiment, each with why. Keys are matched exactly; PREFIXES cover a group.
NOT_EXPERIMENT_KEYS: Mapping[str, str] = {
    # the job's place in its experiment
    "fold": "a job of the experiment: folds are averaged and ensembled within it",
    "data.fold": "the same as fold",
    "model.attention": "the variant: a part of the identity of its own (Experiment.variant, the folder's first part)",
    "experiment": "the recipe: a part of the identity of its own (Experiment.name, from task_name)",
    # what this invocation does with the job
    "redo": "runs a finished job again; the job is the same",
    "test": "whether this invocation tests; the job is the same",
    "ckpt_path": "where this invocation resumes from",
    "tags": "labels for the dashboard",
    "verbose": "what the console shows",
    # where results go
    "logger": "where metrics are written (csv, wandb)",
    # where the data are read from (the same data at another path, or in another cache)
    "data.root": "where the same data lie on this machine",
    "data.cache_dir": "where the preprocessed cache lies",
    # how fast, on which machine
    "trainer": "the machine shape (cpu, gpu, ddp, ddp_cpu, slurm): the same recipe on other devices",
    "trainer.accelerator": "the device type",
    "trainer.devices": "the number of devices (the global batch is unchanged)",
    "trainer.num_nodes": "the number of machines (the global batch is unchanged)",
    "trainer.strategy": "how the devices share the work",
    "trainer.sync_batchnorm": "DDP's BatchNorm over the global batch, i.e. the one-device result",
    "trainer.precision": "numerics chosen for the machine (bf16-mixed keeps float32 weights), not the recipe",
    "trainer.benchmark": "cuDNN's kernel choice",
    "trainer.enable_progress_bar": "the console",
    "trainer.enable_model_summary": "the console",
    "trainer.log_every_n_steps": "how often metrics are logged",
    "deterministic": "bit-identical reruns at some speed; the same recipe",
    "data.num_workers": "loader processes",
    "data.pin_memory": "host-to-device copies",
    "data.persistent_workers": "loader processes",
    "data.source.workers": "processes that build the cache",
    "data.augment.on_device": "where the same augmentation runs",
    "model.memory_format": "tensor layout (speed)",
    "model.compile": "torch.compile (speed)",
    "model.activation_checkpointing": "recomputation instead of memory (speed)",
}
NOT_EXPERIMENT_PREFIXES: Mapping[str, str] = {
    "paths.": "where outputs go",
    "hydra.": "Hydra's own settings (output folders, launcher and sweeper parameters)",
    "hydra/": "the launcher or sweeper: how jobs are started",
    "logger.": "the loggers' settings",
    "callbacks.": "the callbacks' settings, except the checkpoint selection (SELECTION_KEYS)",
}
SELECTION_KEYS = frozenset({"callbacks.model_checkpoint.monitor", "callbacks.model_checkpoint.mode"})
"""Callback settings that define the experiment: they choose the checkpoint that is tested."""
NOT_IN_FOLDER_NAME = frozenset({"data.split_manifest"})
"""Defines the experiment but is no folder name (a path)."""


def override_key(override: str) -> str:
    """``data.size`` of ``+data.size=[8,32,32]``."""
    return override.split("=", 1)[0].lstrip("+~")


def defines_experiment(key: str) -> bool:
    if key in SELECTION_KEYS:
        return True
    return key not in NOT_EXPERIMENT_KEYS and not key.startswith(tuple(NOT_EXPERIMENT_PREFIXES))


def experiment_overrides(overrides: Iterable[str]) -> tuple[str, ...]:
    """The overrides that define the experiment besides its name and variant, sorted, '+'/'~' kept as typed."""
    return tuple(sorted(str(o) for o in overrides if defines_experiment(override_key(str(o)))))


def _safe(text: str) -> str:
    """A folder-name part; one made of dots only (``..``) would leave the sweep folder, so it becomes ``_``s."""
    part = safe_name(text, keep="=.,_+-", fill="_")[:120]
    return part if part.strip(".") else part.replace(".", "_")


@dataclass(frozen=True)
class Experiment:
    """One experiment: recipe, variant, and the other defining overrides (sorted, ``+``/``~`` stripped)."""

    name: str
    variant: str
    overrides: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """Readable and unique: ``smoke_ablation/dual/model.optimizer.lr=0.0001`` (the W&B group)."""
        return "/".join([_safe(self.name) or "run", *self._folder_parts(in_folder_only=False)])

    @property
    def label(self) -> str:
        """For people: ``smoke_ablation dual model.optimizer.lr=0.0001``."""
        return " ".join([self.name, self.variant, *self.overrides])

    def _folder_parts(self, in_folder_only: bool) -> list[str]:
        extra = [o for o in self.overrides if not (in_folder_only and override_key(o) in NOT_IN_FOLDER_NAME)]
        return [p for p in (_safe(self.variant), *(_safe(o) for o in extra)) if p]

    def job_subdir(self, fold: int | str) -> str:
        """The folder of this experiment's job ``fold`` below its sweep folder: ``<variant>/[<overrides>/]fold<k>``."""
        return "/".join([*self._folder_parts(in_folder_only=True), f"fold{_safe(str(fold))}"])


def experiment_of(name: str, variant: str, overrides: Iterable[str]) -> Experiment:
    """The experiment of a job of recipe ``name`` and variant ``variant`` typed with ``overrides``."""
    kept = sorted(o.lstrip("+~") for o in experiment_overrides(overrides) if override_key(o) != "experiment")
    return Experiment(name=str(name), variant=str(variant), overrides=tuple(kept))


def job_subdir(attention: str, fold: int | str, overrides: Iterable[str] = ()) -> str:
    """The folder of one sweep job below the sweep folder (the experiment's name is the sweep folder's)."""
    return experiment_of("", attention, overrides).job_subdir(fold)


def job_experiment(job_dir: str | os.PathLike[str]) -> Experiment | None:
    """The experiment of a job folder, from what training wrote there (None where it cannot be told)."""
    from omegaconf import OmegaConf

    from darnet_pl.runs.layout import CONFIG_FILE, HYDRA_CONFIG, HYDRA_OVERRIDES

    folder = Path(job_dir)
    config: Any = None
    for candidate in (folder / CONFIG_FILE, folder / HYDRA_CONFIG):
        try:
            config = OmegaConf.to_container(OmegaConf.load(candidate), resolve=False)
            break
        except Exception:  # missing, torn or hand-edited: try the next, else unknown
            continue
    if not isinstance(config, dict):
        return None
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    name, variant = config.get("task_name"), model.get("attention")
    try:
        overrides = OmegaConf.to_container(OmegaConf.load(folder / HYDRA_OVERRIDES))
    except Exception:
        overrides = []
    if not isinstance(name, str) or not isinstance(variant, str):
        return None
    return experiment_of(name, variant, overrides if isinstance(overrides, list) else [])

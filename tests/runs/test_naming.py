"""One definition of "which experiment": what is excluded from it and why, and what follows from it."""

from __future__ import annotations

from omegaconf import OmegaConf

from darnet_pl.runs.naming import (
    NOT_EXPERIMENT_KEYS,
    NOT_EXPERIMENT_PREFIXES,
    SELECTION_KEYS,
    defines_experiment,
    experiment_of,
    job_subdir,
)
from tests.helpers.cli import compose_config

# Every override that does not make another experiment, and why (the table in runs/naming.py must say the same).
EXCLUDED = {
    "fold": "the job's place: folds are averaged and ensembled within one experiment",
    "data.fold": "the same as fold",
    "model.attention": "the variant, a field of the identity of its own",
    "experiment": "the recipe, a field of the identity of its own (task_name)",
    "redo": "reruns the same job",
    "test": "whether this invocation tests",
    "ckpt_path": "where this invocation resumes from",
    "tags": "dashboard labels",
    "verbose": "console",
    "logger": "where metrics go",
    "data.root": "where the same data lie",
    "data.cache_dir": "where the cache lies",
    "trainer": "machine shape: cpu, gpu, ddp, ddp_cpu, slurm",
    "trainer.accelerator": "device type",
    "trainer.devices": "device count (global batch unchanged)",
    "trainer.num_nodes": "machine count (global batch unchanged)",
    "trainer.strategy": "how devices share work",
    "trainer.sync_batchnorm": "global-batch BatchNorm = the one-device result",
    "trainer.precision": "machine numerics, not the recipe",
    "trainer.benchmark": "cuDNN kernel choice",
    "trainer.enable_progress_bar": "console",
    "trainer.enable_model_summary": "console",
    "trainer.log_every_n_steps": "logging frequency",
    "deterministic": "bit-identical reruns",
    "data.num_workers": "loader processes",
    "data.pin_memory": "host-to-device copies",
    "data.persistent_workers": "loader processes",
    "data.source.workers": "cache-building processes",
    "data.augment.on_device": "where the same augmentation runs",
    "model.memory_format": "speed",
    "model.compile": "speed",
    "model.activation_checkpointing": "speed",
}
EXCLUDED_PREFIXES = {"paths.", "hydra.", "hydra/", "logger.", "callbacks."}


def test_the_excluded_keys_are_exactly_these_and_each_says_why() -> None:
    assert set(NOT_EXPERIMENT_KEYS) == set(EXCLUDED)
    assert set(NOT_EXPERIMENT_PREFIXES) == EXCLUDED_PREFIXES
    assert all(len(why) > 3 for why in [*NOT_EXPERIMENT_KEYS.values(), *NOT_EXPERIMENT_PREFIXES.values()])
    for key in EXCLUDED:
        assert not defines_experiment(key), key
    # the checkpoint selection is a callback setting that does define it
    assert {"callbacks.model_checkpoint.monitor", "callbacks.model_checkpoint.mode"} == SELECTION_KEYS
    assert all(defines_experiment(k) for k in SELECTION_KEYS)
    assert not defines_experiment("callbacks.log_cam_samples.n")


def test_excluded_keys_name_real_settings() -> None:
    """A typo in the table would exclude nothing: every dotted key is a setting of a composed recipe (or one of the few
    that a user adds with '+', listed here)."""
    added_by_users = {"data.persistent_workers", "trainer.benchmark", "trainer.enable_progress_bar"}
    added_by_users |= {"trainer.enable_model_summary", "trainer.num_nodes", "data.fold"}
    recipes = [
        ("+experiment=darnet", "trainer=ddp"),
        ("+experiment=darnet", "trainer=slurm", "hydra/launcher=slurm"),
        ("+experiment=smoke", "trainer=ddp_cpu"),
    ]
    present: set[str] = set()
    for overrides in recipes:
        cfg = compose_config(*overrides)
        for key in EXCLUDED:
            parent, _, leaf = key.rpartition(".")
            if parent and leaf in (OmegaConf.select(cfg, parent) or {}):  # its value may need Hydra to resolve
                present.add(key)
    dotted = {key for key in EXCLUDED if "." in key}
    assert dotted - added_by_users - present == set()


def test_where_a_job_runs_never_changes_its_folder_or_experiment() -> None:
    plain = ["+experiment=darnet", "fold=1", "model.optimizer.lr=0.0001"]
    elsewhere = [
        *plain,
        "trainer=ddp",
        "trainer.devices=4",
        "trainer.precision=bf16-mixed",
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        "data.num_workers=16",
        "data.root=/scratch/ccii",
        "paths.log_dir=/scratch/out",
        "logger=[csv,wandb]",
        "deterministic=true",
    ]
    assert job_subdir("dual", 1, elsewhere) == job_subdir("dual", 1, plain) == "dual/model.optimizer.lr=0.0001/fold1"
    assert experiment_of("darnet", "dual", elsewhere) == experiment_of("darnet", "dual", plain)
    assert experiment_of("darnet", "dual", plain).key == "darnet/dual/model.optimizer.lr=0.0001"


def test_what_is_trained_or_selected_makes_another_experiment() -> None:
    base = experiment_of("smoke_ablation", "dual", ["+experiment=smoke_ablation"])
    assert base.key == "smoke_ablation/dual"
    for different in (
        experiment_of("smoke_ablation", "ca", []),
        experiment_of("smoke_ablation", "dual", ["model.optimizer.lr=1e-4"]),
        experiment_of("smoke_ablation", "dual", ["+debug=tiny"]),
        experiment_of("smoke_ablation", "dual", ["callbacks.model_checkpoint.monitor=val/auc"]),
        experiment_of("smoke_ablation", "dual", ["seed=3"]),
        experiment_of("smoke", "dual", []),
    ):
        assert different != base and different.key != base.key


def test_a_value_of_dots_never_leaves_the_sweep_folder() -> None:
    assert job_subdir("..", 0) == "__/fold0"
    assert job_subdir(".", "..", ["seed=.."]) == "_/seed=../fold__"

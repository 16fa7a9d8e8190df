"""Deterministic, readable sweep job folders: ``<sweep>/<variant>/[<other overrides>/]fold<k>``.

The same command always maps a job to the same folder, so re-running an interrupted sweep finds the jobs that
already finished (their ``test_metrics.json``) and skips them; different settings get different folders, so
sweeps never collide.
"""

from __future__ import annotations

from collections.abc import Iterable

from darnet_pl.utils.text import safe_name

# Overrides that do not define the experiment: the variant (shown on its own), the fold, and where or how a job
# runs. The report groups jobs by what is left; sweep job folders are named by it.
NOT_EXPERIMENT_KEYS = frozenset(
    {
        "fold",
        "data.fold",
        "model.attention",
        "redo",
        "test",
        "ckpt_path",
        "tags",
        "logger",
        "data.num_workers",
        "data.root",
        "data.cache_dir",
        "trainer.accelerator",
        "trainer.devices",
    }
)
NOT_EXPERIMENT_PREFIXES = ("paths.", "hydra.", "hydra/", "callbacks.", "logger.")
NOT_IN_FOLDER_NAME = frozenset({"experiment", "data.split_manifest"})
"""Also left out of job folder names: the sweep folder is already the experiment's, and a path is no folder name."""


def override_key(override: str) -> str:
    """``data.size`` of ``+data.size=[8,32,32]``."""
    return override.split("=", 1)[0].lstrip("+~")


def experiment_overrides(overrides: Iterable[str]) -> tuple[str, ...]:
    """The overrides that define the experiment, sorted, as given."""
    kept = []
    for item in overrides:
        key = override_key(str(item))
        if key not in NOT_EXPERIMENT_KEYS and not key.startswith(NOT_EXPERIMENT_PREFIXES):
            kept.append(str(item))
    return tuple(sorted(kept))


def _safe(text: str) -> str:
    return safe_name(text, keep="=.,_+-", fill="_")[:120]


def job_subdir(attention: str, fold: int, overrides: Iterable[str] = ()) -> str:
    """The folder of one sweep job below the sweep folder."""
    extra = sorted(o.lstrip("+~") for o in experiment_overrides(overrides) if override_key(o) not in NOT_IN_FOLDER_NAME)
    parts = [_safe(str(attention)), *(_safe(o) for o in extra), f"fold{_safe(str(fold))}"]
    return "/".join(p for p in parts if p)

"""Deterministic, readable sweep job folders: ``<sweep>/<variant>/[<other overrides>/]fold<k>``.

The same command always maps a job to the same folder, so re-running an interrupted sweep finds the jobs that
already finished (their ``test_metrics.json``) and skips them; different settings get different folders, so
sweeps never collide.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Overrides that do not change what a job computes (or are already in the path) stay out of the folder name.
IGNORED_KEYS = (
    "fold",
    "model.attention",
    "experiment",
    "redo",
    "logger",
    "ckpt_path",
    "tags",
    "data.num_workers",
    "data.root",
    "data.cache_dir",
    "data.split_manifest",
    "trainer.accelerator",
    "trainer.devices",
)
IGNORED_PREFIXES = ("paths.", "hydra.", "hydra/", "callbacks.", "logger.")


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _is_ignored(key: str) -> bool:
    return key in IGNORED_KEYS or key.startswith(IGNORED_PREFIXES)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9=.,_+-]+", "_", text).strip("_")[:120]


def job_subdir(attention: str, fold: int, overrides: Iterable[str] = ()) -> str:
    """The folder of one sweep job below the sweep folder."""
    extra = sorted(o.lstrip("+~") for o in overrides if not _is_ignored(_key(o)))
    parts = [_safe(str(attention)), *(_safe(o) for o in extra), f"fold{_safe(str(fold))}"]
    return "/".join(p for p in parts if p)

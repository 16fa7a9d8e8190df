"""The best-on-validation checkpoint callback, whose saved state follows its job folder when the folder moves.

Lightning's ``ModelCheckpoint`` stores absolute paths in its state (``dirpath``, ``best_model_path``, the top-k).
When a job folder is moved or copied (a sweep rsynced off a cluster, a copy of a sweep resumed elsewhere) and then
resumed, Lightning finds another ``dirpath`` in ``last.ckpt``, warns, drops the best score and keeps
``best_model_path`` pointing into the old folder: the resumed job would then test a checkpoint of another folder
(or fail when that is gone) and report no validation score. Here the saved paths under the old ``dirpath`` are
moved to the current one before Lightning reads them, so a moved job resumes as if it had never moved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytorch_lightning.callbacks import ModelCheckpoint

PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")


def _moved(path: str, old: Path, new: Path) -> str:
    """``path`` under ``old`` as the same file under ``new``; other paths (and empty ones) unchanged."""
    if not path:
        return path
    try:
        return str(new / Path(path).relative_to(old))
    except ValueError:
        return path


def relocated_state(state: dict[str, Any], dirpath: str | None) -> dict[str, Any]:
    """``state`` (a ModelCheckpoint's saved state) with its paths under its saved ``dirpath`` moved to ``dirpath``."""
    saved = state.get("dirpath")
    if not saved or not dirpath or Path(saved) == Path(dirpath):
        return state
    old, new = Path(saved), Path(dirpath)
    moved = dict(state, dirpath=dirpath)
    for key in PATH_KEYS:
        if isinstance(state.get(key), str):
            moved[key] = _moved(state[key], old, new)
    if isinstance(state.get("best_k_models"), dict):
        moved["best_k_models"] = {_moved(k, old, new): v for k, v in state["best_k_models"].items()}
    return moved


class BestCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose restored state follows a moved job folder (see the module docstring)."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(relocated_state(state_dict, self.dirpath))

"""Reading a torch file safely: ``torch.load(weights_only=True)`` only, with one-line reasons when it fails.

Checkpoints and downloaded weights are data, never code: the safe unpickler rebuilds tensors and plain values and
refuses anything else, so a file carrying pickled code cannot run it. One home for that rule and its messages.
"""

from __future__ import annotations

import os
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from darnet_pl.utils.file_kinds import not_regular


class UnsafeOrUnreadable(ValueError):
    """A file ``torch.load(weights_only=True)`` refuses or cannot read; the message names the file."""


def load_safely(path: str | os.PathLike[str], what: str, map_location: str | torch.device = "cpu") -> Any:
    """The file's content; ``what`` ("checkpoint", "weights file") words the errors."""
    path = Path(path)
    if path.is_dir():
        raise UnsafeOrUnreadable(f"{path}: is a folder, not a {what}")
    if (cause := not_regular(path)) is not None:
        raise UnsafeOrUnreadable(f"{path}: {cause}, not a {what}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the unpickler warns about pickle protocols before refusing
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise UnsafeOrUnreadable(f"{path}: {_why(exc, path, what)}") from None


def _why(exc: Exception, path: Path, what: str) -> str:
    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if not found and not zipfile.is_zipfile(path):
        return f"not a PyTorch {what} (not a torch.save archive)"
    if found or "Weights only load failed" in text:
        held = f"the Python object {found.group(1)}" if found else "pickled Python objects"
        return (
            f"refused: the file holds {held}, which safe loading (weights_only=True) does not unpickle; only "
            f"{what}s made of tensors and plain values are loaded"
        )
    first = text.strip().splitlines()[0][:120] if text.strip() else ""
    return f"damaged or not a PyTorch {what} ({type(exc).__name__}{': ' + first if first else ''})"

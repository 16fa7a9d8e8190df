"""Checkpoints written atomically, and refused loudly when they cannot be written.

Lightning's default writer goes through an fsspec transaction whose local implementation can leave a truncated
``epochNNN.ckpt`` behind when the disk fills up - a file that a later resume or ``darnet-predict`` would trust.
Here a checkpoint is written under a temporary name in its own folder, flushed to disk, then renamed; on any error
the temporary file is removed and the error is one line naming the checkpoint and the OS reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from darnet_pl.io import atomic_path, storage_error


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose save is temp-file + fsync + rename (local paths)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options")
        final = Path(path)
        try:
            with atomic_path(final) as tmp, tmp.open("wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as error:
            raise storage_error(final, error, "the checkpoint") from None
        except RuntimeError as error:  # torch.save reports a failed write as a RuntimeError around the OSError
            cause = error.__cause__ if isinstance(error.__cause__, OSError) else OSError(str(error).splitlines()[0])
            raise storage_error(final, cause, "the checkpoint") from None

"""Checkpoints written atomically, and refused loudly when they cannot be written.

Lightning's default writer goes through an fsspec transaction whose local implementation can leave a truncated
``epochNNN.ckpt`` behind when the disk fills up - a file that a later resume or ``darnet-predict`` would trust.
Here a checkpoint is written under a temporary name in its own folder, flushed to disk, then renamed; on any error
the temporary file is removed and the error is one line naming the checkpoint and the OS reason.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from darnet_pl.utils.io import atomic_path, storage_error


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose save is temp-file + fsync + rename (local paths)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options")
        final = Path(path)
        # serialised in memory first (as Lightning does): torch.save's own file writer reports a full disk as an
        # opaque C++ "unexpected pos" error, a plain write reports ENOSPC
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        try:
            with atomic_path(final) as tmp, tmp.open("wb") as handle:
                handle.write(buffer.getbuffer())
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as error:
            raise storage_error(final, error, "the checkpoint") from None

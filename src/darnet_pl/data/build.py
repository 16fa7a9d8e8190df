"""``build_datamodule``: the Hydra target of the ``ccii``/``folder`` data configs.

It lets a config carry plain values such as ``data.root`` (used only through interpolation) that the data module
does not take.
"""

from __future__ import annotations

from typing import Any

from darnet_pl.data.datamodule import CTDataModule


def build_datamodule(
    source: Any,
    root: str | None = None,
    cache_dir: str | None = None,
    scan_list: str | None = None,
    **settings: Any,
) -> CTDataModule:
    """``CTDataModule(source, **settings)``; ``root``, ``cache_dir`` and ``scan_list`` are config-level values
    (``data.root=...`` on the command line) that reach the source by interpolation, not data module arguments."""
    return CTDataModule(source=source, **settings)

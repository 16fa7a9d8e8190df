"""The options ``darnet-predict`` and ``darnet-evaluate`` share: which checkpoints, how to run them, where to write.

One home for their names, defaults and help, so that the two commands read the same to a user.
"""

from __future__ import annotations

import argparse


def add_ensemble_options(parser: argparse.ArgumentParser, ckpt_help: str, out_help: str, **out_kwargs: object) -> None:
    """``--ckpt`` (repeatable), ``--tta``, ``--out``/``--overwrite``, ``--batch-size`` and ``--device``."""
    parser.add_argument("--ckpt", action="append", required=True, metavar="PATH", help=ckpt_help)
    parser.add_argument(
        "--tta", action="store_true",
        help="test-time augmentation: each model's softmax is the mean over the in-plane flips (none, H, W, H+W)",
    )  # fmt: skip
    parser.add_argument("--out", help=out_help, **out_kwargs)
    parser.add_argument("--overwrite", action="store_true", help="write into an existing non-empty --out")
    parser.add_argument("--batch-size", type=int, default=4, help="scans per forward pass (default 4)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")

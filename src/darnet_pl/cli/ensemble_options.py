"""The options ``darnet-predict`` and ``darnet-evaluate`` share: which checkpoints, how to run them, where to write.

One home for their names, defaults and help, so that the two commands read the same to a user.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from darnet_pl.runs.jobs import ModelSet, model_sets


def add_ensemble_options(parser: argparse.ArgumentParser, ckpt_help: str, out_help: str, **out_kwargs: object) -> None:
    """``--ckpt`` (repeatable), ``--tta``, ``--out``/``--overwrite``, ``--batch-size`` and ``--device``."""
    parser.add_argument("--ckpt", action="append", required=True, metavar="PATH", help=ckpt_help)
    parser.add_argument(
        "--experiment", metavar="KEY", default=None,
        help="from a folder of several experiments, use this one's jobs (its key, e.g. smoke_ablation/ca)",
    )  # fmt: skip
    parser.add_argument(
        "--per-experiment", action="store_true",
        help="one ensemble per experiment of the --ckpt folders, each in its own sub-folder of --out",
    )  # fmt: skip
    add_best_so_far(parser)
    parser.add_argument(
        "--tta", action="store_true",
        help="test-time augmentation: each model's softmax is the mean over the in-plane flips (none, H, W, H+W)",
    )  # fmt: skip
    parser.add_argument("--out", help=out_help, **out_kwargs)
    parser.add_argument("--overwrite", action="store_true", help="write into an existing non-empty --out")
    parser.add_argument("--batch-size", type=int, default=4, help="scans per forward pass (default 4)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")


def add_best_so_far(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--best-so-far", action="store_true",
        help="also use jobs that have not finished (running, failed, interrupted): their best checkpoint so far",
    )  # fmt: skip


def chosen_model_sets(args: argparse.Namespace) -> list[ModelSet]:
    """The model set(s) ``--ckpt`` gives with ``--experiment``, ``--per-experiment`` and ``--best-so-far``; the jobs
    left out are noted on stderr, one line each."""
    sets = model_sets(
        args.ckpt, experiment=args.experiment, per_experiment=args.per_experiment, best_so_far=args.best_so_far
    )
    note_left_out(sets)
    return sets


def note_left_out(sets: Sequence[ModelSet]) -> None:
    for chosen in sets:
        for skipped in chosen.skipped:
            print(f"note: {skipped.line()}", file=sys.stderr)

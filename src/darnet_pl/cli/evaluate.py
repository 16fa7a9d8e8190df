"""``darnet-evaluate``: the command line of ``darnet_pl.evaluation.evaluate`` (options, output, exit codes).

Exit codes: 0 every scan evaluated; 3 some scans could not be read (listed in ``errors.csv``; the metrics are over
the others); 2 a user error, one line ``error: ...`` (a missing or unusable checkpoint or list, a list without
``path`` or ``label``, a label that is not a class of the checkpoint, an ``--out`` folder that is not empty or
cannot be written); 130/143 stopped by Ctrl-C/SIGTERM, with nothing written.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from darnet_pl.evaluation.evaluate import Evaluation, evaluate
from darnet_pl.inference.predict import pick_device
from darnet_pl.utils.console import OneLineParser, Terminated, sigterm_raises
from darnet_pl.utils.errors import USER_ERRORS, one_line
from darnet_pl.utils.exit_codes import EXIT_OK, EXIT_SCAN_ERRORS, EXIT_SIGINT, EXIT_SIGTERM, EXIT_USER_ERROR


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="darnet-evaluate",
        description="The paper's metrics (with patient-level bootstrap CIs), ROC, confusion and reliability plots "
        "of trained DARNet checkpoints on a labelled scan list (CSV: path,label[,patient_id]).",
    )
    parser.add_argument(
        "--ckpt", action="append", required=True, metavar="PATH",
        help="a checkpoint file, a run folder (its best checkpoint) or a sweep folder (the fold ensemble); repeat "
        "the option to average several",
    )  # fmt: skip
    parser.add_argument("--scans", type=Path, required=True, help="CSV with the columns path, label[, patient_id]")
    parser.add_argument("--out", type=Path, required=True, help="output folder (refused when not empty)")
    parser.add_argument("--overwrite", action="store_true", help="write into an existing non-empty --out")
    parser.add_argument("--tta", action="store_true", help="test-time augmentation over in-plane flips")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (0: no CIs; default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--positive-class", default="NCP", help="the class of the 2class metrics (default NCP)")
    parser.add_argument("--batch-size", type=int, default=4, help="scans per forward pass (default 4)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    return parser


def _number(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.4f}"


def summary_lines(result: Evaluation) -> list[str]:
    summary = result.summary
    scans = summary["scans"]
    lines = [
        f"darnet-evaluate: {scans['predicted']} of {scans['listed']} scan(s) evaluated ({scans['failed']} failed, "
        f"{summary['patients']} patient(s)), {summary['ensemble']}{', TTA' if summary['tta'] else ''}; "
        f"results in {result.out}"
    ]
    for name, entry in summary["headline"].items():
        ci = entry["ci"]
        interval = f"  [{_number(ci[0])}, {_number(ci[1])}]" if ci else ""
        lines.append(f"  {name:<24} {_number(entry['value'])}{interval}")
    return lines + [f"note: {note}" for note in result.notes]


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit code (0 ok, 3 some scans unreadable, 2 user error, 130/143 stopped)."""
    args = build_parser().parse_args(argv)
    try:
        with sigterm_raises():
            result = evaluate(
                args.ckpt, args.scans.expanduser(), args.out.expanduser(), device=pick_device(args.device),
                tta=args.tta, n_bootstrap=args.bootstrap, seed=args.seed, positive_class=args.positive_class,
                batch_size=args.batch_size, overwrite=args.overwrite,
            )  # fmt: skip
    except USER_ERRORS as error:
        if os.environ.get("DARNET_FULL_ERROR"):
            raise
        print(f"error: {one_line(error)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (KeyboardInterrupt, Terminated) as stop:
        print("stopped: nothing was written (the files are written together, at the end)", file=sys.stderr)
        return EXIT_SIGTERM if isinstance(stop, Terminated) else EXIT_SIGINT
    print("\n".join(summary_lines(result)))
    return EXIT_SCAN_ERRORS if result.n_failed else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())

"""``darnet-report DIR [DIR ...]``: the command line of ``darnet_pl.report.writer`` (options, exit codes).

Several folders are reported together, e.g. the paper's recipe and its shortcut control, two sweeps::

    darnet-report outputs/darnet/sweep outputs/shortcut_control/sweep   # -> outputs/report/
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from darnet_pl.report.wandb_report import WHEN, report_to_wandb
from darnet_pl.report.writer import NothingToReport, write_report
from darnet_pl.utils.console import OneLineParser
from darnet_pl.utils.errors import console_tool
from darnet_pl.utils.exit_codes import EXIT_OK


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="darnet-report",
        description="Table IV (mean ± std over folds, fold ensemble with patient-level bootstrap CIs), the variants "
        "of an ablation compared on the same test scans (paired bootstrap CIs, DeLong's test), ROC curves and "
        "confusion matrices of a Hydra sweep or of a single run; several folders (e.g. a sweep and its shortcut "
        "control) in one report.",
    )
    parser.add_argument(
        "dir",
        type=Path,
        nargs="+",
        help="a sweep folder (job folders at any depth) or one run folder; several: reported together",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: DIR/report; for several folders, their common parent's report/)",
    )
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (0: no CIs; default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument(
        "--expected-folds", type=int, default=None, help="folds each row should have (default: every fold seen)"
    )
    parser.add_argument("--no-plots", action="store_true", help="tables and report.json only")
    parser.add_argument(
        "--all-pairs",
        action="store_true",
        help="compare every pair of variants of an experiment (default: each variant against the full DARNet, dual)",
    )
    parser.add_argument(
        "--wandb",
        choices=WHEN,
        default="auto",
        help="log the report as the folder's one W&B run (job type report; a rerun updates it): auto (default) "
        "where the jobs logged to W&B, on, off",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0: report written; 2: a user error (missing folder, nothing finished, bad --out, unusable predictions,
    an output folder that cannot be written), one line; 130/143: stopped by Ctrl-C/SIGTERM. Only a complete report
    is ever written."""
    args = build_parser().parse_args(argv)

    def body() -> int:
        if args.bootstrap < 0:
            raise ValueError(f"--bootstrap {args.bootstrap}: must be 0 or more")
        if args.expected_folds is not None and args.expected_folds < 1:
            raise ValueError(f"--expected-folds {args.expected_folds}: must be 1 or more")
        result = write_report(
            args.dir[0] if len(args.dir) == 1 else args.dir,
            args.out,
            n_bootstrap=args.bootstrap,
            seed=args.seed,
            expected_folds=args.expected_folds,
            make_plots=not args.no_plots,
            all_pairs=args.all_pairs,
        )
        print(result.summary)
        for line in report_to_wandb(result, args.wandb):
            print(line)
        return EXIT_OK

    stopped = "interrupted: the report was not written (its files are only written together, at the end)"
    return console_tool(body, stopped=stopped, errors=(NothingToReport,))


if __name__ == "__main__":
    sys.exit(main())

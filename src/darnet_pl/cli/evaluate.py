"""``darnet-evaluate``: the command line of ``darnet_pl.evaluation.evaluate`` (options, output, exit codes).

Exit codes: 0 every scan evaluated; 3 some scans could not be read (listed in ``errors.csv``; the metrics are over
the others); 2 a user error, one line ``error: ...`` (a missing or unusable checkpoint or list, a list without
``path`` or ``label``, a label that is not a class of the checkpoint, an ``--out`` folder that is not empty or
cannot be written); 130/143 stopped by Ctrl-C/SIGTERM, with nothing written.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from darnet_pl.cli.ensemble_options import add_ensemble_options, chosen_model_sets
from darnet_pl.evaluation.evaluate import Evaluation, evaluate
from darnet_pl.inference.predict import check_out_dir, pick_device
from darnet_pl.utils.console import OneLineParser
from darnet_pl.utils.errors import console_tool
from darnet_pl.utils.exit_codes import EXIT_OK, EXIT_SCAN_ERRORS


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="darnet-evaluate",
        description="The paper's metrics (with patient-level bootstrap CIs), ROC, confusion and reliability plots "
        "of trained DARNet checkpoints on a labelled scan list (CSV: path,label[,patient_id]).",
    )
    add_ensemble_options(
        parser,
        ckpt_help="a checkpoint file, a run folder (its best checkpoint) or a sweep folder (the fold ensemble of its "
        "finished jobs, one experiment); repeat the option to average several",
        out_help="output folder (refused when not empty)",
        type=Path,
        required=True,
    )
    parser.add_argument("--scans", type=Path, required=True, help="CSV with the columns path, label[, patient_id]")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (0: no CIs; default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--positive-class", default="NCP", help="the class of the 2class metrics (default NCP)")
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

    def body() -> int:
        out = args.out.expanduser()
        device = pick_device(args.device)
        sets = chosen_model_sets(args)  # which jobs, of which experiment(s): one line and nothing loaded if refused
        if args.per_experiment:
            check_out_dir(out, args.overwrite, resume=False, resumable=False)
        failed = False
        for chosen in sets:
            result = evaluate(
                chosen, args.scans.expanduser(), out / chosen.folder_name if args.per_experiment else out,
                device=device, tta=args.tta, n_bootstrap=args.bootstrap, seed=args.seed,
                positive_class=args.positive_class, batch_size=args.batch_size, overwrite=args.overwrite,
            )  # fmt: skip
            print("\n".join([*summary_lines(result), f"models: {chosen.summary()}"]))
            failed = failed or bool(result.n_failed)
        return EXIT_SCAN_ERRORS if failed else EXIT_OK

    return console_tool(body, stopped="stopped: nothing was written (the files are written together, at the end)")


if __name__ == "__main__":
    raise SystemExit(main())

"""``darnet-export``: the command line of ``darnet_pl.inference.export`` (TorchScript, ONNX) and
``darnet_pl.inference.bundle`` (a MONAI bundle): options, refusals, exit codes."""

from __future__ import annotations

from collections.abc import Sequence

from darnet_pl.cli.ensemble_options import add_best_so_far
from darnet_pl.inference.export import DEFAULT_OPSET, FORMATS, MIN_OPSET, ExportError, export
from darnet_pl.utils.console import OneLineParser
from darnet_pl.utils.errors import console_tool
from darnet_pl.utils.exit_codes import EXIT_OK

BUNDLE = "bundle"
DEFAULT_BUNDLE_DIR = "darnet_bundle"


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="darnet-export",
        description="Export a DARNet checkpoint as TorchScript and/or ONNX with its preprocessing metadata, or as a "
        "MONAI bundle (--format bundle).",
    )
    parser.add_argument(
        "--ckpt", required=True,
        help="the checkpoint (.ckpt) to export; with --format bundle also a run folder or a sweep folder of one "
        "experiment (its folds become an ensemble)",
    )  # fmt: skip
    parser.add_argument(
        "--experiment", metavar="KEY", default=None,
        help="--format bundle from a folder of several experiments: this one's jobs (its key, e.g. smoke_ablation/ca)",
    )  # fmt: skip
    add_best_so_far(parser)
    parser.add_argument(
        "--format", nargs="+", choices=(*FORMATS, BUNDLE), default=list(FORMATS),
        help="default: torchscript and onnx; 'bundle' (alone): a MONAI bundle folder",
    )  # fmt: skip
    parser.add_argument(
        "--out", default=None,
        help=f"output folder (default: the checkpoint's folder; a bundle's own folder: ./{DEFAULT_BUNDLE_DIR})",
    )  # fmt: skip
    parser.add_argument("--name", default=None, help="file name stem (default: the checkpoint's)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (>= {MIN_OPSET})")
    parser.add_argument("--overwrite", action="store_true", help="replace existing exported files (or bundle)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: 0 on success, 2 on user errors (one line), 130/143 when stopped by Ctrl-C/SIGTERM
    (nothing written)."""
    args = build_parser().parse_args(argv)

    def body() -> int:
        if BUNDLE in args.format:
            if len(set(args.format)) > 1:
                raise ExportError("--format bundle: give it alone (the bundle holds its own TorchScript model)")
            if args.name is not None:
                raise ExportError("--name: not used with --format bundle (--out is the bundle folder)")
            from darnet_pl.inference.bundle import export_bundle

            out = args.out if args.out is not None else DEFAULT_BUNDLE_DIR
            written = export_bundle(
                args.ckpt, out, overwrite=args.overwrite, best_so_far=args.best_so_far, experiment=args.experiment
            )
            print(f"bundle: {out} ({len(written)} files)")
            return EXIT_OK
        if args.experiment is not None:
            raise ExportError("--experiment: for --format bundle only (TorchScript/ONNX export one checkpoint)")
        written = export(args.ckpt, args.out, args.format, args.name, args.opset, args.overwrite, args.best_so_far)
        for fmt, path in written.items():
            print(f"{fmt}: {path}")
        return EXIT_OK

    # the files are only written together at the end: a stop leaves none
    return console_tool(body, stopped="interrupted: nothing was written")


if __name__ == "__main__":
    raise SystemExit(main())

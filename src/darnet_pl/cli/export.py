"""``darnet-export``: the command line of ``darnet_pl.inference.export`` (options, refusals, exit codes)."""

from __future__ import annotations

from collections.abc import Sequence

from darnet_pl.cli.ensemble_options import add_best_so_far
from darnet_pl.inference.export import DEFAULT_OPSET, FORMATS, MIN_OPSET, export
from darnet_pl.utils.console import OneLineParser
from darnet_pl.utils.errors import console_tool
from darnet_pl.utils.exit_codes import EXIT_OK


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="darnet-export",
        description="Export a DARNet checkpoint as TorchScript and/or ONNX with its preprocessing metadata.",
    )
    parser.add_argument(
        "--ckpt", required=True, help="the checkpoint (.ckpt) to export, or a run folder (its best checkpoint)"
    )
    add_best_so_far(parser)
    parser.add_argument("--format", nargs="+", choices=FORMATS, default=list(FORMATS), help="default: both")
    parser.add_argument("--out", default=None, help="output folder (default: the checkpoint's folder)")
    parser.add_argument("--name", default=None, help="file name stem (default: the checkpoint's)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (>= {MIN_OPSET})")
    parser.add_argument("--overwrite", action="store_true", help="replace existing exported files")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: 0 on success, 2 on user errors (one line), 130/143 when stopped by Ctrl-C/SIGTERM
    (nothing written)."""
    args = build_parser().parse_args(argv)

    def body() -> int:
        written = export(args.ckpt, args.out, args.format, args.name, args.opset, args.overwrite, args.best_so_far)
        for fmt, path in written.items():
            print(f"{fmt}: {path}")
        return EXIT_OK

    # the files are only written together at the end: a stop leaves none
    return console_tool(body, stopped="interrupted: nothing was written")


if __name__ == "__main__":
    raise SystemExit(main())

"""``darnet-export``: the command line of ``darnet_pl.inference.export`` (options, refusals, exit codes)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from darnet_pl.inference.export import DEFAULT_OPSET, FORMATS, MIN_OPSET, export
from darnet_pl.utils.console import OneLineParser
from darnet_pl.utils.errors import USER_ERRORS, one_line
from darnet_pl.utils.exit_codes import EXIT_SIGINT, EXIT_USER_ERROR


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="darnet-export",
        description="Export a DARNet checkpoint as TorchScript and/or ONNX with its preprocessing metadata.",
    )
    parser.add_argument("--ckpt", required=True, help="the checkpoint (.ckpt) to export")
    parser.add_argument("--format", nargs="+", choices=FORMATS, default=list(FORMATS), help="default: both")
    parser.add_argument("--out", default=None, help="output folder (default: the checkpoint's folder)")
    parser.add_argument("--name", default=None, help="file name stem (default: the checkpoint's)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (>= {MIN_OPSET})")
    parser.add_argument("--overwrite", action="store_true", help="replace existing exported files")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: 0 on success, 2 on user errors (one line), 130 when interrupted (nothing written)."""
    args = build_parser().parse_args(argv)
    try:
        written = export(args.ckpt, args.out, args.format, args.name, args.opset, args.overwrite)
    except USER_ERRORS as error:
        if os.environ.get("DARNET_FULL_ERROR"):
            raise
        print(f"error: {one_line(error)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:  # files are only written together at the end: an interrupt leaves none
        print("interrupted: nothing was written", file=sys.stderr)
        return EXIT_SIGINT
    for fmt, path in written.items():
        print(f"{fmt}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``darnet-model-card REPORT``: a recipe's model card (``MODEL_CARD.md``) from the ``report.json`` of
``darnet-report``, in the layout of a MONAI bundle's README (``darnet_pl.inference.model_card``).

REPORT is a ``report.json``, a folder holding one (a report folder, ``experiments/<recipe>/results``) or a sweep
folder holding ``report/report.json``. The card is written beside the ``report.json`` unless ``--out`` says
where; an existing card is kept unless ``--overwrite``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from darnet_pl.inference.model_card import render_recipe_card
from darnet_pl.runs.layout import REPORT_JSON, SWEEP_REPORT_DIR
from darnet_pl.utils.console import OneLineParser
from darnet_pl.utils.errors import console_tool
from darnet_pl.utils.exit_codes import EXIT_OK
from darnet_pl.utils.io import write_text_atomic

CARD_NAME = "MODEL_CARD.md"


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="darnet-model-card",
        description="Write a recipe's model card (intended use: research, not diagnosis; training data and its known "
        "shortcut; metrics with CIs; limitations; how it was run) from the report.json of darnet-report.",
    )
    parser.add_argument(
        "report",
        type=Path,
        metavar="REPORT",
        help="a report.json, a folder holding one, or a sweep folder holding report/report.json",
    )
    parser.add_argument("--out", type=Path, default=None, help=f"the card's path (default: {CARD_NAME} beside it)")
    parser.add_argument("--title", default=None, help="the card's title (default: names the recipe)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing card")
    return parser


def find_report(path: Path) -> Path:
    """The ``report.json`` that ``path`` names or holds (directly or in ``report/``)."""
    for candidate in (path, path / REPORT_JSON, path / SWEEP_REPORT_DIR / REPORT_JSON):
        if candidate.is_file():
            return candidate
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found")
    inside = f"{SWEEP_REPORT_DIR}/{REPORT_JSON}"
    raise FileNotFoundError(f"{path}: holds no {REPORT_JSON} (nor {inside}): run darnet-report on it first")


def read_report(path: Path) -> dict:
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a report.json of darnet-report ({error})") from None
    if not isinstance(report, dict) or "groups" not in report:
        raise ValueError(f"{path}: not a report.json of darnet-report (no 'groups')")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0: card written; 2: a user error (no report, not a report, a card in the way), one line."""
    args = build_parser().parse_args(argv)

    def body() -> int:
        report_path = find_report(args.report)
        out = args.out or report_path.parent / CARD_NAME
        if out.exists() and not args.overwrite:
            raise FileExistsError(f"{out}: exists; pass --overwrite to replace it")
        card = render_recipe_card(read_report(report_path), title=args.title)
        write_text_atomic(out, card)
        print(f"model card: {out}")
        return EXIT_OK

    return console_tool(body, stopped="interrupted: no model card written", errors=(FileExistsError,))


if __name__ == "__main__":
    sys.exit(main())

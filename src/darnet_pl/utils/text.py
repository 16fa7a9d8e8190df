"""File-name-safe text: one slug rule for run folders, report groups, cache namespaces and prediction files."""

from __future__ import annotations

import re
import textwrap


def safe_name(text: str, keep: str = "-_.", fill: str = "-") -> str:
    """``text`` with every run of characters other than ASCII letters, digits and ``keep`` replaced by ``fill``,
    and ``fill`` stripped from both ends (may be empty: callers choose their own fallback)."""
    return re.sub(f"[^A-Za-z0-9{re.escape(keep)}]+", fill, str(text)).strip(fill)


AVERAGE_CHARACTER_EM = 0.65
"""Width of an average character of matplotlib's default font (DejaVu Sans), in ems; on the generous side."""


def wrap_to_width(text: str, inches: float, fontsize: float) -> str:
    """``text`` broken into lines (at spaces; existing line breaks kept) that fit ``inches`` at ``fontsize`` points:
    a plot title wider than its figure is cut off in the picture."""
    columns = max(10, int(inches * 72 / (fontsize * AVERAGE_CHARACTER_EM)))
    return "\n".join(textwrap.fill(line, columns) if line else line for line in str(text).split("\n"))

"""File-name-safe text: one slug rule for run folders, report groups, cache namespaces and prediction files."""

from __future__ import annotations

import re


def safe_name(text: str, keep: str = "-_.", fill: str = "-") -> str:
    """``text`` with every run of characters other than ASCII letters, digits and ``keep`` replaced by ``fill``,
    and ``fill`` stripped from both ends (may be empty: callers choose their own fallback)."""
    return re.sub(f"[^A-Za-z0-9{re.escape(keep)}]+", fill, str(text)).strip(fill)

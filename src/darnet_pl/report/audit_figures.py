"""The shortcut audit beside a sweep's results: ``darnet-audit``'s ``audit.json``, when a sweep folder holds one.

Run ``darnet-audit <same data options> audit.out=<sweep folder>`` and the report shows which non-disease signals
predict the label on that data (``report.json`` ``audit``, the summary and the table notes).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from darnet_pl.runs.layout import AUDIT_JSON


def find_audits(roots: Sequence[Path]) -> list[dict[str, Any]]:
    """``{"path", "probes"}`` for each given folder holding a readable ``audit.json`` (a list of probes)."""
    found = []
    for root in roots:
        path = Path(root) / AUDIT_JSON
        if not path.is_file():
            continue
        try:
            probes = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(probes, list) and all(isinstance(p, dict) and "name" in p for p in probes):
            found.append({"path": str(path), "probes": probes})
    return found


def audit_lines(audits: Sequence[dict[str, Any]]) -> list[str]:
    """One line per audit: every probe's AUC, the flagged ones marked with their reason."""
    lines = []
    for audit in audits:
        parts = []
        for probe in audit["probes"]:
            auc = probe.get("auc")
            shown = f"{auc:.2f}" if isinstance(auc, int | float) and math.isfinite(auc) else "-"
            flag = f" FLAGGED ({probe.get('reason')})" if probe.get("flagged") else ""
            parts.append(f"{probe['name']} {shown}{flag}")
        lines.append(f"shortcut audit ({audit['path']}): " + "; ".join(parts))
    return lines

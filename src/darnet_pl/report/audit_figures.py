"""The shortcut audit beside a sweep's results: ``darnet-audit``'s ``audit.json``, when a sweep folder holds one.

Run ``darnet-audit <same data options> audit.out=<sweep folder>`` (with ``--ckpt <sweep folder>`` for the model-level
checks) and the report shows which non-disease signals predict which class on that data: ``report.json`` ``audit``
holds the audit's tables as rows of plain values (``per_class``, ``subsets``, ``model_checks``), ready to log; the
summary and the table notes give one line per table. An ``audit.json`` of the first layout (a list of probes)
gives the probes alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from darnet_pl.runs.layout import AUDIT_JSON


def find_audits(roots: Sequence[Path]) -> list[dict[str, Any]]:
    """``{"path", "probes", "per_class", "subsets", "model_checks"}`` for each given folder holding a readable
    ``audit.json``."""
    found = []
    for root in roots:
        path = Path(root) / AUDIT_JSON
        if not path.is_file():
            continue
        try:
            contents = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        tables = contents if isinstance(contents, dict) else {"probes": contents}
        probes, checks = tables.get("probes"), tables.get("model_checks")
        if isinstance(probes, list) and all(isinstance(p, dict) and "name" in p for p in probes):
            found.append(
                {
                    "path": str(path),
                    "probes": probes,
                    "per_class": _rows(tables.get("per_class")),
                    "subsets": _rows(tables.get("subsets")),
                    "model_checks": checks if isinstance(checks, dict) else None,
                }
            )
    return found


def _rows(value: Any) -> list[dict[str, Any]]:
    return [row for row in value if isinstance(row, dict)] if isinstance(value, list) else []


def _auc(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) and math.isfinite(value) else "-"


def _probe_part(probe: dict[str, Any]) -> str:
    per_class = probe.get("per_class") or {}
    classes = ", ".join(f"{c} {_auc(f.get('auc'))}" for c, f in per_class.items() if isinstance(f, dict))
    shown = _auc(probe.get("auc")) + (f" ({classes})" if classes else "")
    if not probe.get("flagged"):
        return f"{probe['name']} {shown}"
    which = ", ".join(probe.get("flagged_classes") or [])
    return f"{probe['name']} {shown} FLAGGED{' ' + which if which else ''} ({probe.get('reason')})"


def audit_lines(audits: Sequence[dict[str, Any]]) -> list[str]:
    """Per audit: every probe's macro AUC and per-class AUCs, the flagged ones with their reason; the flagged
    signals in the test subset; the model-level checks' sensitivity gaps and probe AUCs."""
    lines = []
    for audit in audits:
        lines.append(f"shortcut audit ({audit['path']}): " + "; ".join(_probe_part(p) for p in audit["probes"]))
        test = [r for r in audit.get("subsets") or [] if r.get("subset") == "test"]
        if test:
            lines.append(
                "shortcut audit, test subset: "
                + "; ".join(f"{r['probe']} {r['class']} AUC {_auc(r.get('auc'))}, {r.get('summary')}" for r in test)
            )
        checks = audit.get("model_checks") or {}
        gaps = [r for r in checks.get("stratified") or [] if r.get("metric") == "sensitivity"]
        probes = {(p.get("checkpoint"), p.get("probe"), p.get("class")): p for p in checks.get("feature_probes") or []}
        parts = []
        for r in gaps:
            ci = r.get("gap_ci")
            interval = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
            probe = probes.get((r.get("checkpoint"), r.get("probe"), r.get("class"))) or {}
            parts.append(
                f"{Path(str(r.get('checkpoint'))).name} {r['probe']} {r['class']} sensitivity {_auc(r.get('yes'))} "
                f"where the signal points to it vs {_auc(r.get('no'))} (gap {_auc(r.get('gap'))}{interval}), "
                f"feature probe AUC {_auc(probe.get('auc'))}, evidence AUC {_auc(probe.get('evidence_auc'))}"
            )
        if parts:
            lines.append(f"shortcut audit, model checks on {checks.get('subset')}: " + "; ".join(parts))
    return lines

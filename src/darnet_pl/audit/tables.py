"""The audit's findings as rows of plain values (``audit.json``, ready to log as tables) and as aligned text.

``per_class_rows`` is the per-class table (one row per probe and class, with the probe's macro AUC as a column);
``subsets.subset_rows`` and ``model_checks.model_checks`` give the other tables' rows; ``text_table`` prints any of
them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from darnet_pl.audit.probes import ProbeResult


def per_class_rows(results: Sequence[ProbeResult]) -> list[dict[str, Any]]:
    """One row per probe and class: AUC, partial share and its precision, flagged; ``macro_auc`` repeated."""
    return [
        {
            "probe": r.name,
            "class": name,
            "auc": finding.auc,
            "partial": finding.partial,
            "partial_precision": finding.precision,
            "identified": finding.identified,
            "n_scans": finding.n_scans,
            "flagged": finding.flagged,
            "macro_auc": r.auc,
        }
        for r in results
        for name, finding in r.per_class.items()
    ]


def _number(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _share(value: Any) -> str:
    return "-" if value is None else f"{value:.0%}"


def _ci(value: Any, ci: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; the last column is left as is (a reason or a summary)."""
    table = [list(header), *[list(row) for row in rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)), row[-1]]).rstrip()
        for row in table
    )


def probe_table(results: Sequence[ProbeResult]) -> str:
    """probe, macro AUC, each class's AUC, the best partial share (class, share, precision), flagged, reason."""
    classes = list(dict.fromkeys(c for r in results for c in r.per_class))
    rows = []
    for r in results:
        aucs = [_number(r.per_class[c].auc) if c in r.per_class else "-" for c in classes]
        partials = [(f.partial, c, f) for c, f in r.per_class.items() if f.precision is not None and f.partial > 0]
        best = max(partials, key=lambda p: (p[2].precision or 0) * p[0], default=None)
        partial = f"{best[1]} {best[0]:.0%} @{best[2].precision:.2f}" if best else "-"
        flagged = ", ".join(r.flagged_classes) if r.flagged else "no"
        rows.append([r.name, _number(r.auc), *aucs, partial, flagged, r.reason])
    header = ["probe", "macro AUC", *(f"AUC {c}" for c in classes), "partial (precision)", "flagged", "reason"]
    return text_table(header, rows)


def subset_table(rows: Sequence[dict[str, Any]]) -> str:
    """probe, class, subset, scans (of the class), AUC, share identified (precision), the signal per class."""
    body = [
        [
            r["probe"],
            r["class"],
            r["subset"],
            f"{r['n_scans']} ({r['n_class']})",
            _number(r["auc"]),
            f"{_share(r['partial'])} ({_number(r['partial_precision'])})",
            r["summary"],
        ]
        for r in rows
    ]
    return text_table(["probe", "class", "subset", "scans (class)", "AUC", "identified (precision)", "signal"], body)


def model_table(rows: Sequence[dict[str, Any]], probes: Sequence[dict[str, Any]]) -> str:
    """Per checkpoint, probe, class and metric: the value where the signal points to the class and elsewhere, the
    gap, with intervals; then the feature probe's and the evidence AUC."""
    from pathlib import Path

    body = [
        [
            Path(r["checkpoint"]).name,
            r["probe"],
            r["class"],
            r["metric"],
            f"{_ci(r['yes'], r['yes_ci'])} (n={r['n_yes']})",
            f"{_ci(r['no'], r['no_ci'])} (n={r['n_no']})",
            _ci(r["gap"], r["gap_ci"]),
        ]
        for r in rows
    ]
    header = ["checkpoint", "probe", "class", "metric", "signal points to class", "elsewhere", "gap"]
    text = text_table(header, body)
    lines = [
        f"{Path(p['checkpoint']).name} {p['probe']} within {p['class']} ({p['n_scans']} scans, {p['n_yes']} where "
        f"the signal points to it): feature probe "
        + (f"AUC {p['auc']:.2f} ({p['folds']} folds)" if p["auc"] is not None else p["reason"])
        + f"; evidence AUC {_number(p['evidence_auc'])}"
        for p in probes
    ]
    return "\n".join([text, *lines])

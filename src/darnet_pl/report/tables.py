"""Table IV of the paper, from a sweep: mean ± std over folds per variant, plus the fold ensemble, as Markdown,
CSV and LaTeX (booktabs).

The layout is the paper's: two blocks (COVID-19 vs the rest; three classes), columns AUC, accuracy, sensitivity,
specificity and F1, AUC with four decimals and the rest in percent with two. The std is the sample std (ddof=1), as
papers report fold spreads. The numbers come in as rows built elsewhere; this module only summarises and formats.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

# Paper row names of the attention variants (Tables III, IV).
VARIANT_NAMES = {
    "none": "DARNet (w/o DA and CA)",
    "ca": "DARNet (w/o DA)",
    "da": "DARNet (w/o CA)",
    "dual": "DARNet",
}
CLASS_DISPLAY = {"CP": "CP", "NCP": "COVID-19 (NCP)", "Normal": "Normal"}


@dataclass(frozen=True)
class Column:
    name: str  # generic column name (CSV)
    title: str
    percent: bool


COLUMNS = (
    Column("auc", "AUC", False),
    Column("accuracy", "Accuracy (%)", True),
    Column("sensitivity", "Sensitivity (%)", True),
    Column("specificity", "Specificity (%)", True),
    Column("f1", "F1-score (%)", True),
)


@dataclass(frozen=True)
class Block:
    name: str  # "2class" / "3class"
    title: str
    keys: tuple[str, ...]  # PaperMetrics names, in COLUMNS order


def blocks(class_names: Sequence[str], positive_class: str) -> tuple[Block, Block]:
    """The two blocks of Table IV: the positive class vs the rest, then all classes (macro averages)."""
    k = len(class_names)
    others = [c for c in class_names if c != positive_class]
    positive = CLASS_DISPLAY.get(positive_class, positive_class)
    if tuple(class_names) == ("CP", "NCP", "Normal") and positive_class == "NCP":
        titles = ("Two classes: COVID-19 and non-COVID-19 (CP and healthy)", "Three classes: COVID-19, CP and healthy")
    else:
        titles = (
            f"Two classes: {positive} and the rest ({', '.join(others)})",
            f"{k} classes: {', '.join(class_names)}",
        )
    # As the paper prints it: the two-class block's Accuracy is the 3-class accuracy (93.28 in both blocks for
    # DARNet); its AUC, sensitivity, specificity and F1 are COVID-19 one-vs-rest. The one-vs-rest accuracy stays in
    # report.json as 2class/accuracy.
    two = Block(
        "2class",
        titles[0],
        ("2class/auc", f"{k}class/accuracy", "2class/sensitivity", "2class/specificity", "2class/f1"),
    )
    multi = Block(
        f"{k}class",
        titles[1],
        tuple(f"{k}class/{c}" for c in ("auc_macro", "accuracy", "sensitivity_macro", "specificity_macro", "f1_macro")),
    )
    return two, multi


def method_name(variant: str, overrides: Sequence[str] = ()) -> str:
    name = VARIANT_NAMES.get(variant, f"DARNet (attention={variant})")
    return f"{name} [{', '.join(overrides)}]" if overrides else name


@dataclass
class Stat:
    """One metric over folds: values, mean and sample std (NaN for a single value)."""

    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else math.nan

    def as_dict(self) -> dict[str, float | int | list[float]]:
        return {"mean": self.mean, "std": self.std, "n": self.n, "values": list(self.values)}


def summarise(metrics: Sequence[Mapping[str, float]]) -> dict[str, Stat]:
    """Per metric name, the values of every job that has it (in job order)."""
    names = sorted({name for m in metrics for name in m})
    return {name: Stat([float(m[name]) for m in metrics if name in m and math.isfinite(m[name])]) for name in names}


@dataclass
class Row:
    """One line of the table: a variant's fold statistics, its fold ensemble, or a single run."""

    method: str
    variant: str
    overrides: tuple[str, ...]
    kind: str  # "folds" (mean ± std), "ensemble" (value [CI]), "single" (one run: value [CI])
    n: int  # folds averaged, or models in the ensemble
    value: dict[str, float]
    std: dict[str, float] = field(default_factory=dict)
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.method}, fold ensemble" if self.kind == "ensemble" else self.method

    @property
    def n_text(self) -> str:
        if self.kind == "ensemble":
            return f"ens. of {self.n}"
        if self.kind == "single":
            return "1 run"
        return f"{self.n} fold{'s' if self.n != 1 else ''}"


def _scale(column: Column, x: float) -> float:
    return 100.0 * x if column.percent else x


def _fmt(column: Column, x: float) -> str:
    return f"{_scale(column, x):.2f}" if column.percent else f"{x:.4f}"


def cell(row: Row, key: str, column: Column) -> str:
    """``mean±std`` for fold rows, ``value [low, high]`` where a CI exists, the bare value otherwise."""
    value = row.value.get(key, math.nan)
    if not math.isfinite(value):
        return "–"
    text = _fmt(column, value)
    std = row.std.get(key, math.nan)
    if row.kind == "folds" and math.isfinite(std):
        return f"{text}±{_fmt(column, std)}"
    low, high = row.ci.get(key, (math.nan, math.nan))
    if math.isfinite(low) and math.isfinite(high):
        return f"{text} [{_fmt(column, low)}, {_fmt(column, high)}]"
    return text


def to_markdown(rows: Sequence[Row], table_blocks: Sequence[Block], notes: Sequence[str] = ()) -> str:
    header = ["Method", "n", *(c.title for c in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * len(COLUMNS)) + "|"]
    for block in table_blocks:
        lines.append("| " + " | ".join([f"**{block.title}**", *[""] * (len(header) - 1)]) + " |")
        for row in rows:
            cells = [cell(row, key, col) for key, col in zip(block.keys, COLUMNS, strict=True)]
            lines.append("| " + " | ".join([row.label, row.n_text, *cells]) + " |")
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\n" + "\n".join(f"- {note}" for note in notes) + "\n"
    return text


def to_csv(rows: Sequence[Row], table_blocks: Sequence[Block]) -> str:
    """One line per (block, row); numbers in the table's units (AUC as a fraction, the rest in percent)."""
    fields = ["block", "method", "variant", "overrides", "kind", "n", "metric_keys"]
    for col in COLUMNS:
        base = f"{col.name}_pct" if col.percent else col.name
        fields += [base, f"{base}_std", f"{base}_ci_low", f"{base}_ci_high"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(fields)
    for block in table_blocks:
        for row in rows:
            line: list[object] = [block.name, row.label, row.variant, " ".join(row.overrides), row.kind, row.n]
            line.append(" ".join(block.keys))
            for key, col in zip(block.keys, COLUMNS, strict=True):
                low, high = row.ci.get(key, (math.nan, math.nan))
                for x in (row.value.get(key, math.nan), row.std.get(key, math.nan), low, high):
                    line.append("" if not math.isfinite(x) else f"{_scale(col, x):.6g}")
            writer.writerow(line)
    return buffer.getvalue()


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "–": "--",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(rows: Sequence[Row], table_blocks: Sequence[Block], caption: str, label: str = "tab:ablation") -> str:
    """A booktabs table (needs ``\\usepackage{booktabs}``)."""
    ncol = 2 + len(COLUMNS)
    out = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(caption)}}}",
        rf"\label{{{label}}}",
        r"\begin{tabular}{l" + "c" * (ncol - 1) + "}",
        r"\toprule",
        " & ".join(["Method", "$n$", *(latex_escape(c.title) for c in COLUMNS)]) + r" \\",
    ]
    for block in table_blocks:
        out.append(r"\midrule")
        out.append(rf"\multicolumn{{{ncol}}}{{l}}{{\textit{{{latex_escape(block.title)}}}}} \\")
        for row in rows:
            cells = [latex_escape(cell(row, key, col)) for key, col in zip(block.keys, COLUMNS, strict=True)]
            out.append(" & ".join([latex_escape(row.label), latex_escape(row.n_text), *cells]) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"

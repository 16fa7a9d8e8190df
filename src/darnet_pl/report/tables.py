"""Table IV of the paper, from a sweep: mean ± std over folds per variant, plus the fold ensemble, as Markdown,
CSV and LaTeX (booktabs).

The layout is the paper's: two blocks (COVID-19 vs the rest; three classes), columns AUC, accuracy, sensitivity,
specificity and F1, AUC with four decimals and the rest in percent with two. The std is the sample std (ddof=1), as
papers report fold spreads. The numbers come in as rows built elsewhere; this module only summarises and formats.

On CC-CCII the paper's own figures (``report.paper_table_iv``) are rows of kind ``paper`` beside ours, and each of
our fold means carries a mark: ✓ inside the paper's mean ± std, ✗ outside (``Row.within``). Patient-level blocks
(``patient_blocks``: keys ``patient/...``) hold the rows that have such values (the fold ensemble's); a block only
lists the rows that have a value for it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from darnet_pl.data.records import CLASS_TITLES
from darnet_pl.report import paper_table_iv
from darnet_pl.utils.csv_cells import SafeDictWriter, csv_writer

# Paper row names of the attention variants (Tables III, IV).
VARIANT_NAMES = {
    "none": "DARNet (w/o DA and CA)",
    "ca": "DARNet (w/o DA)",
    "da": "DARNet (w/o CA)",
    "dual": "DARNet",
}
CONDITION_NAMES = {"shortcut_control": "shortcut control"}
PATIENT_PREFIX = "patient/"
MARKS = {True: "✓", False: "✗"}
MARK_NOTE = (
    "✓ / ✗: our fold mean lies inside / outside the paper's mean ± std (Table IV), compared at the paper's printed "
    "precision."
)


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
    positive = CLASS_TITLES.get(positive_class, positive_class)
    if paper_table_iv.applies(class_names, positive_class):
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


def patient_blocks(class_names: Sequence[str], positive_class: str) -> tuple[Block, ...]:
    """The two blocks again on patient-level probabilities (keys ``patient/...``)."""
    return tuple(
        Block(
            f"{PATIENT_PREFIX}{b.name}",
            f"Patient level, {b.title[0].lower()}{b.title[1:]}",
            tuple(PATIENT_PREFIX + k for k in b.keys),
        )
        for b in blocks(class_names, positive_class)
    )


def qualify(name: str, word: str) -> str:
    """``DARNet (paper)``, ``DARNet (w/o DA; paper)``: one more word in the name's parenthesis."""
    if name.endswith(")") and " (" in name:
        return f"{name[:-1]}; {word})"
    return f"{name} ({word})"


def method_name(variant: str, overrides: Sequence[str] = (), condition: str = "") -> str:
    name = VARIANT_NAMES.get(variant, f"DARNet (attention={variant})")
    if condition:
        name = qualify(name, CONDITION_NAMES.get(condition, condition))
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
    """One line of the table: a variant's fold statistics, its fold ensemble, a single run, or the paper's figures."""

    method: str
    variant: str
    overrides: tuple[str, ...]
    kind: str  # "folds" (mean ± std), "ensemble" (value [CI]), "single" (one run: value [CI]), "paper" (mean ± std)
    n: int  # folds averaged, or models in the ensemble
    value: dict[str, float]
    std: dict[str, float] = field(default_factory=dict)
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    within: dict[str, bool | None] = field(default_factory=dict)  # inside the paper's mean ± std (folds rows)

    @property
    def label(self) -> str:
        return f"{self.method}, fold ensemble" if self.kind == "ensemble" else self.method

    @property
    def n_text(self) -> str:
        if self.kind == "ensemble":
            return f"ens. of {self.n}"
        if self.kind == "single":
            return "1 run"
        folds = f"{self.n} fold{'s' if self.n != 1 else ''}"
        return f"paper, {folds}" if self.kind == "paper" else folds

    def shows(self, block: Block) -> bool:
        """Whether the row has a line in ``block`` (any of its keys)."""
        return any(key in self.value for key in block.keys)


def paper_row(variant: str) -> Row | None:
    """The paper's Table IV figures of one variant as a row (None for a variant the paper does not have)."""
    refs = paper_table_iv.reference(variant)
    if not refs:
        return None
    return Row(
        method=qualify(VARIANT_NAMES.get(variant, variant), "paper"),
        variant=variant,
        overrides=(),
        kind="paper",
        n=paper_table_iv.PAPER_FOLDS,
        value={key: ref.mean for key, ref in refs.items()},
        std={key: ref.std for key, ref in refs.items()},
    )


def mark_within(row: Row) -> dict[str, bool | None]:
    """Sets and returns ``row.within``: for every figure the paper has for the row's variant, whether our value is
    inside the paper's mean ± std (None where ours is undefined)."""
    refs = paper_table_iv.reference(row.variant)
    row.within = {key: paper_table_iv.within(row.value.get(key, math.nan), ref) for key, ref in refs.items()}
    return row.within


def paper_comparison(rows: Sequence[Row]) -> list[dict[str, object]]:
    """One record per (row with marks, metric): ours, the paper's mean and std, the difference, inside or not."""
    records: list[dict[str, object]] = []
    for row in rows:
        refs = paper_table_iv.reference(row.variant)
        for key, inside in row.within.items():
            ref, ours = refs[key], row.value.get(key, math.nan)
            records.append(
                {
                    "method": row.label,
                    "variant": row.variant,
                    "metric": key,
                    "ours": ours,
                    "ours_std": row.std.get(key, math.nan),
                    "paper_mean": ref.mean,
                    "paper_std": ref.std,
                    "difference": ours - ref.mean,
                    "within_paper": inside,
                }
            )
    return records


def comparison_csv(records: Sequence[Mapping[str, object]]) -> str:
    """``paper_comparison``'s records as CSV, numbers in the table's units (AUC a fraction, the rest percent)."""
    buffer = io.StringIO()
    writer = csv_writer(buffer, lineterminator="\n")
    names = ("ours", "ours_std", "paper_mean", "paper_std", "difference")
    writer.writerow(["method", "variant", "metric", "unit", *names, "within_paper"])
    for record in records:
        metric = str(record["metric"])
        percent = not metric.endswith(("auc", "auc_macro"))
        scale = 100.0 if percent else 1.0
        numbers = [float(record[n]) for n in names]  # type: ignore[arg-type]
        cells = ["" if not math.isfinite(x) else f"{scale * x:.6g}" for x in numbers]
        inside = record["within_paper"]
        writer.writerow(
            [record["method"], record["variant"], metric, "%" if percent else "fraction", *cells, _in_out(inside)]
        )
    return buffer.getvalue()


def _in_out(inside: object) -> str:
    return "" if inside is None else ("in" if inside else "out")


def _scale(column: Column, x: float) -> float:
    return 100.0 * x if column.percent else x


def _fmt(column: Column, x: float) -> str:
    return f"{_scale(column, x):.2f}" if column.percent else f"{x:.4f}"


def cell(row: Row, key: str, column: Column) -> str:
    """``mean±std`` for fold and paper rows, ``value [low, high]`` where a CI exists, the bare value otherwise;
    then the mark of ``row.within`` (✓ / ✗) where the row has one."""
    value = row.value.get(key, math.nan)
    if not math.isfinite(value):
        return "–"
    text = _fmt(column, value)
    std = row.std.get(key, math.nan)
    low, high = row.ci.get(key, (math.nan, math.nan))
    if row.kind in ("folds", "paper") and math.isfinite(std):
        text = f"{text}±{_fmt(column, std)}"
    elif math.isfinite(low) and math.isfinite(high):
        text = f"{text} [{_fmt(column, low)}, {_fmt(column, high)}]"
    mark = MARKS.get(row.within.get(key))  # type: ignore[arg-type]
    return f"{text} {mark}" if mark else text


def to_markdown(rows: Sequence[Row], table_blocks: Sequence[Block], notes: Sequence[str] = ()) -> str:
    header = ["Method", "n", *(c.title for c in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * len(COLUMNS)) + "|"]
    for block in table_blocks:
        lines.append("| " + " | ".join([f"**{block.title}**", *[""] * (len(header) - 1)]) + " |")
        for row in (r for r in rows if r.shows(block)):
            cells = [cell(row, key, col) for key, col in zip(block.keys, COLUMNS, strict=True)]
            lines.append("| " + " | ".join([row.label, row.n_text, *cells]) + " |")
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\n" + "\n".join(f"- {note}" for note in notes) + "\n"
    return text


def to_csv(rows: Sequence[Row], table_blocks: Sequence[Block]) -> str:
    """One line per (block, row); numbers in the table's units (AUC as a fraction, the rest in percent);
    ``<metric>_within_paper``: ``in`` / ``out`` of the paper's mean ± std where the row is compared, else empty."""
    fields = ["block", "method", "variant", "overrides", "kind", "n", "metric_keys"]
    for col in COLUMNS:
        base = f"{col.name}_pct" if col.percent else col.name
        fields += [base, f"{base}_std", f"{base}_ci_low", f"{base}_ci_high", f"{base}_within_paper"]
    buffer = io.StringIO()
    writer = csv_writer(buffer, lineterminator="\n")
    writer.writerow(fields)
    for block in table_blocks:
        for row in (r for r in rows if r.shows(block)):
            line: list[object] = [block.name, row.label, row.variant, " ".join(row.overrides), row.kind, row.n]
            line.append(" ".join(block.keys))
            for key, col in zip(block.keys, COLUMNS, strict=True):
                low, high = row.ci.get(key, (math.nan, math.nan))
                for x in (row.value.get(key, math.nan), row.std.get(key, math.nan), low, high):
                    line.append("" if not math.isfinite(x) else f"{_scale(col, x):.6g}")
                line.append(_in_out(row.within.get(key)))
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
    "✓": r"$\surd$",  # plain LaTeX (no amssymb needed)
    "✗": r"$\times$",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(rows: Sequence[Row], table_blocks: Sequence[Block], caption: str, label: str = "tab:ablation") -> str:
    """A booktabs table (needs ``\\usepackage{booktabs}``; the marks are plain LaTeX: ``$\\surd$``, ``$\\times$``)."""
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
        for row in (r for r in rows if r.shows(block)):
            cells = [latex_escape(cell(row, key, col)) for key, col in zip(block.keys, COLUMNS, strict=True)]
            out.append(" & ".join([latex_escape(row.label), latex_escape(row.n_text), *cells]) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------- variants compared

COMPARISON_FIELDS = (
    "a", "b", "variant_a", "variant_b", "condition", "dataset", "overrides", "metric", "unit", "a_value", "b_value",
    "difference", "ci_low", "ci_high", "ci_valid_resamples", "delong_z", "delong_p", "n_scans", "n_patients",
)  # fmt: skip


def _compared_metric(key: str, positive_class: str) -> tuple[str, bool]:
    """The name of a compared metric in the comparisons table, and whether it is shown in percent."""
    block, _, name = key.partition("/")
    if key == "2class/auc":
        return f"AUC, {CLASS_TITLES.get(positive_class, positive_class)} vs rest", False
    if name == "auc_macro":
        return f"AUC, {block.removesuffix('class')}-class macro", False
    if name == "accuracy":
        return "Accuracy (%)", True
    return key, not name.endswith("auc")


def _number(x: object, scale: float = 1.0) -> float:
    """A JSON number (None: undefined) as a float in the table's unit, NaN where undefined."""
    return math.nan if x is None else scale * float(x)  # type: ignore[arg-type]


def _compared_numbers(record: Mapping[str, Any], key: str, percent: bool) -> dict[str, float]:
    """One metric of one pair in the table's unit: the values, A - B, its CI; DeLong's z and p (NaN where none)."""
    metric, scale = record["metrics"][key], 100.0 if percent else 1.0
    test = record["delong"].get(key) or {}
    return {
        "a_value": _number(metric["a"], scale),
        "b_value": _number(metric["b"], scale),
        "difference": _number(metric["difference"], scale),
        "ci_low": _number(metric["ci"][0], scale),
        "ci_high": _number(metric["ci"][1], scale),
        "delong_z": _number(test.get("z")),
        "delong_p": _number(test.get("p")),
    }


def _plain(x: float, digits: int) -> str:
    return f"{x:.{digits}f}" if math.isfinite(x) else "–"


def _signed(x: float, digits: int) -> str:
    return f"{x:+.{digits}f}" if math.isfinite(x) else "–"


def _p_value(p: float) -> str:
    if not math.isfinite(p):
        return "–"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def comparisons_markdown(records: Sequence[Mapping[str, Any]], positive_class: str, notes: Sequence[str] = ()) -> str:
    """One line per (pair, compared metric): both values, A − B [paired bootstrap CI] and DeLong's p."""
    lines = ["| A | B | Metric | A | B | A − B [CI] | DeLong p |", "|---|---|---|---:|---:|---:|---:|"]
    for record in records:
        for i, key in enumerate(record["metrics"]):
            name, percent = _compared_metric(key, positive_class)
            n = _compared_numbers(record, key, percent)
            digits = 2 if percent else 4
            delta = _signed(n["difference"], digits)
            if math.isfinite(n["ci_low"]) and math.isfinite(n["ci_high"]):
                delta += f" [{_signed(n['ci_low'], digits)}, {_signed(n['ci_high'], digits)}]"
            values = [_plain(n["a_value"], digits), _plain(n["b_value"], digits)]
            pair = [record["a"], record["b"]] if i == 0 else ["", ""]
            cells = [*pair, name, *values, delta, _p_value(n["delong_p"])]
            lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\n" + "\n".join(f"- {note}" for note in notes) + "\n"
    return text


def comparisons_notes(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """What the comparisons table's numbers are, for its notes."""
    if not records:
        return []
    boot = records[0]["bootstrap"]
    ci = (
        f"{100 * boot['level']:g}% paired patient-level bootstrap percentile CI ({boot['resamples']} resamples, seed "
        f"{boot['seed']}: each resample draws one set of patients, with all their scans, and scores both models on it)"
        if boot["resamples"]
        else "none (no bootstrap)"
    )
    return [
        "A − B: the first fold ensemble's value minus the second's, on the test scans both were tested on; accuracy "
        f"in percentage points. CI: {ci}.",
        "DeLong p: two-sided DeLong's test (Sun & Xu's fast algorithm) of the AUC difference, its variance clustered "
        "by patient (Obuchowski 1997); the K-class macro AUC has the bootstrap CI only, each class's one-vs-rest "
        "AUC has its own DeLong test in report.json (comparisons[].delong). p-values are not adjusted for multiple "
        "comparisons.",
    ]


def comparisons_csv(records: Sequence[Mapping[str, Any]], positive_class: str) -> str:
    """One line per (pair, compared metric), numbers in the table's units (AUC a fraction, accuracy in percent)."""
    buffer = io.StringIO()
    writer = SafeDictWriter(buffer, COMPARISON_FIELDS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        for key, metric in record["metrics"].items():
            _name, percent = _compared_metric(key, positive_class)
            numbers = _compared_numbers(record, key, percent)
            row: dict[str, object] = {name: record.get(name) for name in COMPARISON_FIELDS if name in record}
            row |= {"condition": record["condition"] or "", "overrides": " ".join(record["overrides"])}
            row |= {"metric": key, "unit": "%" if percent else "fraction"}
            row |= {name: "" if not math.isfinite(x) else f"{x:.6g}" for name, x in numbers.items()}
            row["ci_valid_resamples"] = metric["ci_valid_resamples"]
            writer.writerow(row)
    return buffer.getvalue()

"""The paper's Table IV (DARNet, ablation on CC-CCII's independent test set): the one place its numbers live.

Transcribed from the paper as printed: mean ± std over the five fold models, AUC as a fraction, the rest in
percent. As printed, the two-class block's Accuracy is the 3-class accuracy (the same value in both blocks), so
one number per variant serves both (``3class/accuracy``, as ``report.tables.blocks`` lays the table out).

``reference(variant)`` gives them under the metric keys of ``darnet_pl.metrics`` in the report's units (fractions),
``within(value, ref)`` says whether one of our figures lies inside the paper's mean ± std.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from darnet_pl.data.records import CLASS_NAMES

SOURCE = "Table IV of the DARNet paper (ablation study on the independent test set; mean ± std over 5 fold models)"
PAPER_FOLDS = 5
PAPER_CLASSES = CLASS_NAMES  # the label order of the authors' code, which the package keeps
PAPER_POSITIVE = "NCP"

# block, variant, then AUC, Accuracy (%), Sensitivity (%), Specificity (%), F1-score (%) as the paper prints them.
_TABLE = """
2class  none  0.9938±0.0024  91.32±1.87  95.52±1.07  97.15±1.28  94.86±1.21
2class  ca    0.9926±0.0024  92.13±1.90  94.65±1.86  97.88±1.28  95.04±0.49
2class  da    0.9923±0.0024  92.55±0.51  95.25±0.73  97.72±1.15  95.20±0.89
2class  dual  0.9950±0.0020  93.28±0.85  96.86±0.81  97.19±1.08  95.49±1.15
3class  none  0.9850±0.0041  91.32±1.87  90.34±3.85  95.32±1.88  90.74±2.44
3class  ca    0.9854±0.0047  92.13±1.90  91.70±3.58  95.95±1.95  91.63±2.44
3class  da    0.9832±0.0041  92.55±0.51  91.96±1.55  96.14±1.00  92.05±0.81
3class  dual  0.9879±0.0028  93.28±0.85  93.03±1.85  96.56±0.99  92.92±1.09
"""

# The metric keys of each printed column, per block (the layout of report.tables.blocks for the paper's classes).
_KEYS = {
    "2class": ("2class/auc", "3class/accuracy", "2class/sensitivity", "2class/specificity", "2class/f1"),
    "3class": (
        "3class/auc_macro",
        "3class/accuracy",
        "3class/sensitivity_macro",
        "3class/specificity_macro",
        "3class/f1_macro",
    ),
}
_PERCENT = (False, True, True, True, True)
_DECIMALS = (4, 2, 2, 2, 2)


@dataclass(frozen=True)
class Reference:
    """One printed figure of the paper, in the report's units (fractions), and the decimals it was printed with
    (in the table's units: AUC as a fraction, the rest in percent)."""

    mean: float
    std: float
    percent: bool
    decimals: int

    @property
    def low(self) -> float:
        return self.mean - self.std

    @property
    def high(self) -> float:
        return self.mean + self.std


def _parse() -> dict[str, dict[str, Reference]]:
    table: dict[str, dict[str, Reference]] = {}
    for line in _TABLE.strip().splitlines():
        block, variant, *cells = line.split()
        refs = table.setdefault(variant, {})
        for key, cell, percent, decimals in zip(_KEYS[block], cells, _PERCENT, _DECIMALS, strict=True):
            mean, std = (float(x) / (100.0 if percent else 1.0) for x in cell.split("±"))
            ref = Reference(mean, std, percent, decimals)
            if refs.setdefault(key, ref) != ref:  # the accuracy printed twice must be the same number
                raise ValueError(f"paper Table IV: {variant} {key} printed as two different values")
    return table


TABLE_IV: dict[str, dict[str, Reference]] = _parse()
"""variant (none, ca, da, dual) -> metric key -> the paper's mean ± std."""


def reference(variant: str) -> dict[str, Reference]:
    """The paper's figures of one attention variant ({} for a variant the paper has no row for)."""
    return dict(TABLE_IV.get(variant, {}))


def applies(class_names: tuple[str, ...] | list[str], positive_class: str) -> bool:
    """The paper's table compares only with the paper's classes and positive class."""
    return tuple(class_names) == PAPER_CLASSES and positive_class == PAPER_POSITIVE


def within(value: float, ref: Reference) -> bool | None:
    """Whether ``value`` (a fraction) lies in the paper's mean ± std, bounds included, compared at the precision
    the paper prints (so the mark agrees with the rounded figures in the table); None for an undefined value."""
    if not math.isfinite(value):
        return None
    scale = 100.0 if ref.percent else 1.0
    shown = round(value * scale, ref.decimals)
    low, high = round(ref.low * scale, ref.decimals), round(ref.high * scale, ref.decimals)
    return low <= shown <= high

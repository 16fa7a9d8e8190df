"""The paper's metrics, with the averaging spelled out in every name.

Label order CP=0, NCP (COVID-19)=1, Normal=2. Decisions are the argmax of the 3-class softmax, as in the authors'
code (scikit-learn's classification report over argmax predictions).

- ``2class/*``: COVID-19 vs the rest, one-vs-rest for the positive class: AUC from p(NCP); accuracy, sensitivity,
  specificity and F1 of the decision "argmax == NCP".
- ``3class/*``: ``auc_macro`` (one-vs-rest AUC averaged over classes), ``accuracy`` (fraction of scans whose argmax
  is right; the value the paper's Table IV reports in both blocks), ``accuracy_ovr_macro`` (one-vs-rest accuracy
  averaged over classes, as Table IV's caption words it), ``sensitivity_macro``, ``specificity_macro``,
  ``f1_macro``; and per class ``3class/<CLASS>/{auc,sensitivity,specificity,f1}``.

State lives in torchmetrics objects (a confusion matrix and the AUROC score buffers), so values are reduced
correctly across DDP processes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchmetrics.classification import BinaryAUROC, MulticlassAUROC, MulticlassConfusionMatrix


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """Elementwise division that gives 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    return torch.where(den > 0, num / den.clamp(min=1e-12), torch.zeros_like(num))


def rates_from_confusion(confusion: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-class one-vs-rest counts and rates from a (true x predicted) confusion matrix."""
    confusion = confusion.double()
    total = confusion.sum()
    tp = confusion.diag()
    fn = confusion.sum(dim=1) - tp
    fp = confusion.sum(dim=0) - tp
    tn = total - tp - fn - fp
    sensitivity = _safe_div(tp, tp + fn)
    precision = _safe_div(tp, tp + fp)
    return {
        "sensitivity": sensitivity,
        "specificity": _safe_div(tn, tn + fp),
        "f1": _safe_div(2 * precision * sensitivity, precision + sensitivity),
        "accuracy_ovr": _safe_div(tp + tn, total.expand_as(tp)),
        "accuracy": _safe_div(tp.sum(), total),
    }


class PaperMetrics(nn.Module):
    """Accumulates logits and labels over an epoch and computes the paper's two- and three-class metrics."""

    def __init__(self, class_names: Sequence[str], positive_class: str = "NCP") -> None:
        super().__init__()
        self.class_names = tuple(class_names)
        if positive_class not in self.class_names:
            raise ValueError(f"positive class {positive_class!r} is not one of {self.class_names}")
        self.positive_index = self.class_names.index(positive_class)
        n = len(self.class_names)
        self.confusion = MulticlassConfusionMatrix(num_classes=n)
        self.auroc_per_class = MulticlassAUROC(num_classes=n, average=None, thresholds=None)
        self.auroc_positive = BinaryAUROC(thresholds=None)

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        probs = logits.detach().float().softmax(dim=1)
        target = target.long()
        self.confusion.update(probs.argmax(dim=1), target)
        self.auroc_per_class.update(probs, target)
        self.auroc_positive.update(probs[:, self.positive_index], (target == self.positive_index).long())

    def compute(self) -> dict[str, float]:
        rates = rates_from_confusion(self.confusion.compute())
        auc = self.auroc_per_class.compute().double()
        p = self.positive_index
        block = f"{len(self.class_names)}class"
        out = {
            "2class/auc": self.auroc_positive.compute(),
            "2class/accuracy": rates["accuracy_ovr"][p],
            "2class/sensitivity": rates["sensitivity"][p],
            "2class/specificity": rates["specificity"][p],
            "2class/f1": rates["f1"][p],
            f"{block}/auc_macro": auc.mean(),
            f"{block}/accuracy": rates["accuracy"],
            f"{block}/accuracy_ovr_macro": rates["accuracy_ovr"].mean(),
            f"{block}/sensitivity_macro": rates["sensitivity"].mean(),
            f"{block}/specificity_macro": rates["specificity"].mean(),
            f"{block}/f1_macro": rates["f1"].mean(),
        }
        for i, name in enumerate(self.class_names):
            out[f"{block}/{name}/auc"] = auc[i]
            out[f"{block}/{name}/sensitivity"] = rates["sensitivity"][i]
            out[f"{block}/{name}/specificity"] = rates["specificity"][i]
            out[f"{block}/{name}/f1"] = rates["f1"][i]
        return {key: float(value) for key, value in out.items()}

    def reset(self) -> None:
        self.confusion.reset()
        self.auroc_per_class.reset()
        self.auroc_positive.reset()

"""Sweep reports: the paper's Table IV (mean ± std over folds), fold ensembles with patient-level bootstrap CIs,
ROC curves and confusion matrices, from the files training jobs write.

``write_report(sweep_dir)`` from Python (e.g. a Hydra callback at the end of a multirun); ``darnet-report DIR``
from a shell (``darnet_pl.report.cli:main``). The names below are imported lazily, so importing one submodule (or
running ``python -m darnet_pl.report.cli``) does not pull in the rest.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NothingToReport", "ReportResult", "main", "write_report"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from darnet_pl.report import cli

        return getattr(cli, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Sweep reports: the paper's Table IV (mean ± std over folds), fold ensembles with patient-level bootstrap CIs,
patient-level metrics and calibration (Brier, ECE, reliability diagrams), the variants of an experiment compared on
the same test scans (``report.comparisons``: paired bootstrap CIs, DeLong's test), ROC curves and confusion
matrices, from the files training jobs write (``darnet_pl.runs``), with the statistics of ``darnet_pl.stats``. On
CC-CCII the paper's own Table IV (``report.paper_table_iv``) stands beside our rows, each fold mean marked inside /
outside its mean ± std; the shortcut control's sweep can be reported together with the raw one.

``write_report(sweep_dir)`` (``report.writer``) from Python, e.g. the Hydra callback at the end of a multirun;
``darnet-report DIR [DIR ...]`` (``darnet_pl.cli.report``) from a shell.
"""

"""Sweep reports: the paper's Table IV (mean ± std over folds), fold ensembles with patient-level bootstrap CIs,
ROC curves and confusion matrices, from the files training jobs write (``darnet_pl.runs``).

``write_report(sweep_dir)`` (``report.writer``) from Python, e.g. the Hydra callback at the end of a multirun;
``darnet-report DIR`` (``darnet_pl.cli.report``) from a shell.
"""

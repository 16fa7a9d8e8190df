"""A job's test results in Weights & Biases, and the close of its run.

``log_test_results``: the tested (selected) checkpoint's test metrics in the run's summary - every figure of
``test_metrics.json``, the patient-level and calibration ones too - with the confusion matrix and ROC curves. Only
called with a WandbLogger on rank 0; works offline (stored in the offline run, on the dashboard after ``wandb
sync``). ROC points come from scikit-learn, so W&B's pandas-based helper is not needed.

``finish_wandb_runs``: closes the job's run and prints its one line (``utils.wandb_session.closing_line``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from darnet_pl.runs.predictions import probabilities_of
from darnet_pl.utils.wandb_session import finish

log = logging.getLogger(__name__)


def roc_table_rows(labels: np.ndarray, probs: np.ndarray, class_names: Sequence[str]) -> list[list[Any]]:
    """(class, fpr, tpr) rows of the one-vs-rest ROC curve of every class present in ``labels``."""
    from sklearn.metrics import roc_curve

    rows: list[list[Any]] = []
    for index, name in enumerate(class_names):
        positives = labels == index
        if positives.all() or not positives.any():
            continue
        fpr, tpr, _ = roc_curve(positives, probs[:, index])
        rows.extend([name, float(f), float(t)] for f, t in zip(fpr, tpr, strict=True))
    return rows


def log_test_results(
    logger: Any, predictions: Sequence[dict[str, Any]], class_names: Sequence[str], metrics: Mapping[str, float]
) -> None:
    """Put the test ``metrics`` into the run's summary, then log the confusion matrix and one-vs-rest ROC curves of
    the per-scan test predictions (never fails a run)."""
    import wandb

    logger.experiment.summary.update({k: float(v) for k, v in metrics.items() if k.startswith("test/")})
    if not predictions:
        return
    labels = np.array([int(row["label"]) for row in predictions])
    probs = probabilities_of(predictions, class_names)
    try:
        roc = wandb.Table(columns=["class", "fpr", "tpr"], data=roc_table_rows(labels, probs, class_names))
        logger.experiment.log(
            {
                "test/confusion_matrix": wandb.plot.confusion_matrix(
                    y_true=labels.tolist(), preds=probs.argmax(1).tolist(), class_names=list(class_names)
                ),
                "test/roc": wandb.plot_table(
                    "wandb/area-under-curve/v0",
                    roc,
                    {"x": "fpr", "y": "tpr", "class": "class"},
                    {
                        "title": "ROC (one vs rest)",
                        "x-axis-title": "False positive rate",
                        "y-axis-title": "True positive rate",
                    },
                ),
            }
        )
    except Exception as error:  # a dashboard plot is not worth a failed job
        log.warning("could not log the test plots to W&B: %s", error)


def finish_wandb_runs(loggers: Sequence[Any], exit_code: int | None = None) -> None:
    """Close this job's W&B run, so that the next job of a sweep starts a new one, and a job stopped by SIGTERM
    (``exit_code`` 143) releases its run id for the resumed job; log the run's one line (where it is, how to upload
    it). A no-op off rank 0 and where no run was started."""
    from pytorch_lightning.loggers import WandbLogger

    if any(isinstance(lg, WandbLogger) for lg in loggers):
        import wandb

        if wandb.run is not None:
            log.info("%s", finish(wandb.run, exit_code=exit_code))

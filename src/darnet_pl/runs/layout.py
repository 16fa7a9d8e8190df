"""The run folder's contract: the name of every file a training job writes and the report, predict and resume read.

A job folder (one run, or one sweep job) holds::

    config_resolved.yaml   the composed config, resolved (the report reads the experiment from it)
    .hydra/                Hydra's config and overrides
    checkpoints/           best-on-validation checkpoint(s) and last.ckpt (resume)
    test_metrics.json      the paper's metrics on the test set
    predictions.csv        per-scan test probabilities (format: darnet_pl.runs.predictions)
    wandb_run_id.txt       the W&B run a resumed job continues
    failed.json            why a sweep job failed (removed when it later succeeds)

A report folder (``<sweep>/report/`` by default) holds the report's files (``report.json`` lists them) and, where
the sweep's jobs logged to W&B, ``wandb_report_run_id.txt`` (the one W&B run of its report, continued by every
later report) and that run's ``wandb/`` folder.
"""

from __future__ import annotations

from pathlib import Path

CONFIG_FILE = "config_resolved.yaml"
HYDRA_CONFIG = Path(".hydra") / "config.yaml"
HYDRA_OVERRIDES = Path(".hydra") / "overrides.yaml"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
BEST_CHECKPOINT_GLOB = "*.ckpt"
METRICS_FILE = "test_metrics.json"
PREDICTIONS_FILE = "predictions.csv"
WANDB_RUN_ID_FILE = "wandb_run_id.txt"
FAILED_FILE = "failed.json"
WANDB_REPORT_RUN_ID_FILE = "wandb_report_run_id.txt"
REPORT_JSON = "report.json"
"""What ``darnet-report`` writes beside its tables (and the end-of-sweep report)."""
SWEEP_REPORT_DIR = "report"
"""The sub-folder of a sweep folder that its end-of-sweep report (and ``darnet-report <sweep>``) writes into."""


AUDIT_JSON = "audit.json"
"""What ``darnet-audit`` writes; the report shows it when a sweep folder holds one."""


def last_checkpoint(job_dir: str | Path) -> Path:
    """Where a job keeps the checkpoint it resumes from."""
    return Path(job_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT

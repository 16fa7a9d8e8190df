"""A CSV logger that keeps the earlier epochs of a resumed run in ``csv/metrics.csv``.

Lightning's CSVLogger deletes an existing ``metrics.csv`` when it starts, so a job resumed after SIGTERM or
``kill -9`` kept only the epochs trained after the resume. Here a resumed run keeps the earlier rows, minus any
row logged at or after the step it resumes from (those steps are trained again and logged anew), so the file is
one history without gaps or duplicates. A run that is not a resume (a new job, ``redo=true``) starts afresh.
"""

from __future__ import annotations

import csv
from typing import Any

from lightning_fabric.loggers.logger import rank_zero_experiment
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter

from darnet_pl.utils.io import atomic_path


class _HistoryWriter(ExperimentWriter):
    def __init__(self, log_dir: str, keep_history: bool) -> None:
        self.keep_history = keep_history  # read by _check_log_dir_exists, which the base __init__ calls
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        self._earlier: list[dict[str, str]] = []
        if not self.keep_history or not self._fs.isfile(self.metrics_file_path):
            super()._check_log_dir_exists()
            return
        with open(self.metrics_file_path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            self._earlier = list(reader)
            self.metrics_keys = sorted(reader.fieldnames or [])

    def log_metrics(self, metrics_dict: dict[str, float], step: int | None = None) -> None:
        if self._earlier and step is not None:
            self._keep_rows_before(step)
        super().log_metrics(metrics_dict, step)

    def _keep_rows_before(self, step: int) -> None:
        """Rewrite the file with the earlier rows logged before ``step`` (once, at the first new row)."""
        kept = [row for row in self._earlier if _step(row) < step]
        self._earlier = []
        with atomic_path(self.metrics_file_path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(kept)


def _step(row: dict[str, str]) -> float:
    try:
        return float(row.get("step") or "inf")
    except ValueError:
        return float("inf")


class HistoryCSVLogger(CSVLogger):
    """``CSVLogger`` that continues a resumed run's ``metrics.csv`` (set ``keep_history`` before logging)."""

    def __init__(self, *args: Any, keep_history: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keep_history = keep_history

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is not None:
            return self._experiment
        self._fs.makedirs(self.root_dir, exist_ok=True)
        self._experiment = _HistoryWriter(log_dir=self.log_dir, keep_history=self.keep_history)
        return self._experiment

"""``test_metrics.json``: strict JSON (an undefined metric is ``null``, never a bare ``NaN``), read back as NaN."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

from darnet_pl.utils.io import write_json_atomic


def write_metrics_file(path: str | Path, metrics: Mapping[str, float]) -> Path:
    """The metrics, atomically; NaN/inf become null so any JSON reader accepts the file."""
    return write_json_atomic(path, {k: float(v) if math.isfinite(float(v)) else None for k, v in metrics.items()})


def read_metrics_file(path: str | Path) -> dict[str, float]:
    """The metrics as written, with null back as NaN."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    return {str(k): math.nan if v is None else float(v) for k, v in raw.items()}

"""``python -m darnet_pl.bench.record OUT.json MODULE [ARGS...]``: run one benchmark and keep its JSON as a record.

The docs quote benchmark figures; each quote names the record it comes from, and a record says what produced
it: the command, the date, the commit (``+changes`` when ``src/`` or ``conf/`` had uncommitted changes), the
machine (CPU, cores, torch, Python, the load average before and after: a busy machine slows absolute rates, ratios
of interleaved repeats hold) and the benchmark's own JSON, unchanged. ``MODULE`` is a ``darnet_pl.bench`` module
name (``memory``, ``model``, ``ingest``, ``loader``, ``data_wait``, ``volumes`` or ``run`` for all of them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from darnet_pl.utils.io import write_json_atomic
from darnet_pl.utils.provenance import source_commit
from darnet_pl.utils.worker_pool import available_cpus

MODULES = ("memory", "model", "ingest", "loader", "data_wait", "volumes", "run")


def run_and_record(out: Path, module: str, args: Sequence[str], note: str | None = None) -> dict[str, Any]:
    """Run ``python -m darnet_pl.bench.<module> <args>`` (its stderr passes through) and write the record."""
    if module not in MODULES:
        raise SystemExit(f"error: {module}: not a benchmark (one of {', '.join(MODULES)})")
    command = [sys.executable, "-m", f"darnet_pl.bench.{module}", *args]
    commit = source_commit(short=True) or "unknown"  # the code as it was when the run began
    load_before = _load_average()
    finished = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if finished.returncode != 0:
        raise SystemExit(f"error: darnet_pl.bench.{module} exited {finished.returncode}; no record written")
    try:
        result = json.loads(finished.stdout)
    except json.JSONDecodeError as error:
        raise SystemExit(f"error: darnet_pl.bench.{module} printed no JSON ({error}); no record written") from None
    record = {
        "command": shlex.join(["python", "-m", f"darnet_pl.bench.{module}", *args]),
        "date": datetime.now(timezone.utc).date().isoformat(),
        "commit": commit,
        "machine": {**_machine(), "load_average_before": load_before, "load_average_after": _load_average()},
        **({"note": note} if note else {}),
        "result": result,
    }
    write_json_atomic(out, record)
    return record


def _machine() -> dict[str, Any]:
    import torch

    return {
        "cpu": _cpu_model(),
        "cores": available_cpus(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _load_average() -> list[float] | None:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("out", type=Path, help="the record to write, e.g. experiments/benchmarks/<name>.json")
    parser.add_argument("module", help=f"the benchmark: {', '.join(MODULES)}")
    parser.add_argument(
        "--note", help="what the record should say about the conditions (e.g. other load); before OUT and MODULE"
    )
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the benchmark's own options")
    options = parser.parse_args(argv)
    record = run_and_record(options.out, options.module, options.args, options.note)
    print(f"{options.out}: {record['command']} at {record['commit']}")


if __name__ == "__main__":
    main()

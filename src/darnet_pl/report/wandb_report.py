"""A sweep's report as one W&B run of job type ``report``, beside the runs of its jobs.

``log_report(result)`` runs after the report's files are written (``darnet-report`` and the end of every sweep). It
logs to W&B only where the sweep's jobs did (their ``config_resolved.yaml`` has ``logger.wandb``; ``when="on"`` /
``"off"`` forces or skips it), with the jobs' project and offline setting, in the group of the sweep's recipe
(``task_name``, e.g. ``smoke_ablation``; the jobs' groups are its experiments, ``smoke_ablation/dual/...``):

- ``table_iv``: Table IV as a ``wandb.Table``, the rows of ``table_iv.csv`` (with the paper's rows on CC-CCII);
  ``paper_comparison``, ``comparisons`` (paired comparisons between variants) and ``audit`` (the shortcut audit's
  probes) as tables where the report has them;
- every figure the report wrote (fold-ensemble ROC, confusion and reliability plots; audit figures) as an image;
- ``report.json`` and the tables as an artifact of type ``report``.

One report folder, one W&B run: its id is kept in ``<report>/wandb_report_run_id.txt`` and every later report of
the same folder resumes that run (its tables and images replaced, a new version of the artifact). The offline run
lies in ``<report>/wandb/``; one line says where and how to upload it.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from darnet_pl.report.writer import ReportResult
from darnet_pl.runs.layout import CONFIG_FILE, WANDB_REPORT_RUN_ID_FILE
from darnet_pl.utils.text import safe_name
from darnet_pl.utils.wandb_session import (
    close_leftover_run,
    fallback_line,
    finish,
    kept_run_id,
    no_stub_runs,
    online_or_why_not,
    quiet_process,
    quiet_settings,
)

WHEN = ("auto", "on", "off")
DEFAULT_PROJECT = "darnet-pl"  # conf/logger/wandb.yaml's, for `--wandb on` over jobs that logged no W&B
JOB_TYPE = "report"
_TABLE_FILES = {"table_iv": "table_iv.csv", "paper_comparison": "paper_comparison.csv"}
_ARTIFACT_SUFFIXES = (".json", ".csv", ".md", ".tex")


@dataclass(frozen=True)
class Target:
    """Where the report run goes: the W&B settings of the sweep's jobs."""

    project: str
    entity: str | None
    offline: bool
    tags: tuple[str, ...]


def _wandb_config(job_dir: Path) -> dict[str, Any] | None:
    """``logger.wandb`` of a job's resolved config (None: the job logged no W&B, or its config is unreadable)."""
    try:
        config = OmegaConf.to_container(OmegaConf.load(job_dir / CONFIG_FILE), resolve=False)
    except Exception:  # missing, torn or hand-edited: this job says nothing
        return None
    loggers = config.get("logger") if isinstance(config, dict) else None
    settings = loggers.get("wandb") if isinstance(loggers, dict) else None
    return settings if isinstance(settings, dict) else None


def target_of(report: Mapping[str, Any], when: str = "auto") -> Target | None:
    """The report run's W&B settings: those of the first job that logged to W&B. None where no job did (``auto``)
    or ``when="off"``; ``when="on"`` logs even then (project darnet-pl, offline)."""
    if when not in WHEN:
        raise ValueError(f"--wandb {when}: must be one of {', '.join(WHEN)}")
    if when == "off":
        return None
    found = [c for job in report.get("jobs", []) if (c := _wandb_config(Path(str(job["path"])))) is not None]
    if not found and when != "on":
        return None
    first = found[0] if found else {}
    tags = [str(t) for c in found for t in (c.get("tags") or ()) if isinstance(c.get("tags"), list)]
    entity = first.get("entity")
    return Target(
        project=str(first.get("project") or DEFAULT_PROJECT),
        entity=str(entity) if entity else None,
        offline=bool(first.get("offline", True)),
        tags=tuple(dict.fromkeys([JOB_TYPE, *tags])),
    )


def group_of(report: Mapping[str, Any], out_dir: Path) -> str:
    """The sweep's recipe (``task_name``; several joined by ``+``), else the name of the folder reported."""
    recipes = sorted({str(job["task_name"]) for job in report.get("jobs", []) if job.get("task_name")})
    return "+".join(recipes) if recipes else (out_dir.resolve().parent.name or "report")


def _cell(text: str) -> Any:
    """A CSV cell as a W&B table cell: a number where it is one, None where empty, else the text."""
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def csv_table(text: str) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of a CSV the report wrote."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return [], []
    return rows[0], [[_cell(cell) for cell in row] for row in rows[1:]]


def _flat(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """One level of columns: nested mappings as ``a/b``, lists as JSON text."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out |= _flat(value, f"{name}/")
        elif isinstance(value, list | tuple):
            out[name] = json.dumps(value, default=str)
        else:
            out[name] = value
    return out


def records_table(records: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Columns (in first-seen order) and rows of a list of records (``comparisons``, the audit's probes)."""
    flat = [_flat(r) for r in records]
    columns = list(dict.fromkeys(k for r in flat for k in r))
    return columns, [[r.get(c) for c in columns] for r in flat]


def _image_key(path: Path) -> str:
    """``roc_dual.png`` -> ``roc/dual``: one panel section per kind of figure."""
    kind, _, rest = path.stem.partition("_")
    return f"{kind}/{rest}" if rest else kind


def _tables(result: ReportResult) -> dict[str, tuple[list[str], list[list[Any]]]]:
    tables: dict[str, tuple[list[str], list[list[Any]]]] = {}
    for key, name in _TABLE_FILES.items():
        path = result.out_dir / name
        if path in result.files and path.is_file():
            tables[key] = csv_table(path.read_text(encoding="utf-8"))
    comparisons = result.report.get("comparisons")
    if isinstance(comparisons, list) and comparisons and all(isinstance(c, Mapping) for c in comparisons):
        tables["comparisons"] = records_table(comparisons)
    probes = [
        {"audit": audit.get("path"), **probe}
        for audit in result.report.get("audit") or ()
        for probe in audit.get("probes", ())
        if isinstance(probe, Mapping)
    ]
    if probes:
        tables["audit"] = records_table(probes)
    # the audit's findings per class, per row of the split, and the model-level checks (#21), as the report shows them
    audit_rows: dict[str, list[dict[str, Any]]] = {}
    for audit in result.report.get("audit") or ():
        parts = {key: audit.get(key) for key in ("per_class", "subsets")}
        checks = audit.get("model_checks")
        if isinstance(checks, Mapping):
            parts.update({f"model_{key}": rows for key, rows in checks.items() if isinstance(rows, list)})
        for key, rows in parts.items():
            found = [{"audit": audit.get("path"), **r} for r in rows or () if isinstance(r, Mapping)]
            audit_rows.setdefault(f"audit_{key}", []).extend(found)
    tables.update({key: records_table(rows) for key, rows in audit_rows.items() if rows})
    return tables


def log_report(result: ReportResult, when: str = "auto") -> list[str]:
    """Log the report ``result`` as the report folder's one W&B run; the lines to show (none when not logged)."""
    target = target_of(result.report, when)
    if target is None:
        return []
    import wandb

    lines = [line for line in [close_leftover_run()] if line]
    offline = target.offline
    if not offline and (why := online_or_why_not()) is not None:
        lines.append(fallback_line(why))
        offline = True
    out = result.out_dir
    group = group_of(result.report, out)
    config = {k: result.report.get(k) for k in ("sweep_dirs", "class_names", "positive_class", "bootstrap")}
    config["jobs"] = len(result.report.get("jobs", []))
    quiet_process()
    with no_stub_runs(out):
        run = wandb.init(
            project=target.project,
            entity=target.entity,
            group=group,
            job_type=JOB_TYPE,
            name=f"{group}/{JOB_TYPE}",
            tags=list(target.tags),
            id=kept_run_id(out / WANDB_REPORT_RUN_ID_FILE),
            resume="allow",
            dir=str(out),
            mode="offline" if offline else "online",
            config=config,
            settings=quiet_settings(online=not offline),
        )
    try:
        logged: dict[str, Any] = {
            key: wandb.Table(columns=columns, data=rows, allow_mixed_types=True)  # a column may hold None and text
            for key, (columns, rows) in _tables(result).items()
        }
        for path in sorted(p for p in result.files if p.suffix == ".png"):
            logged[_image_key(path)] = wandb.Image(str(path), caption=path.name)
        run.log(logged)
        artifact = wandb.Artifact(safe_name(f"report-{group}", keep="-_.") or JOB_TYPE, type=JOB_TYPE)
        for path in sorted(p for p in result.files if p.suffix in _ARTIFACT_SUFFIXES and p.is_file()):
            artifact.add_file(str(path), name=path.name)
        run.log_artifact(artifact)
    except BaseException:
        finish(run, exit_code=1)
        raise
    lines.append(finish(run))
    return lines


def report_to_wandb(result: ReportResult, when: str = "auto") -> list[str]:
    """``log_report``'s lines, or one line saying why the run was not logged: the report's files are written
    either way, so a W&B failure does not fail the report (``DARNET_FULL_ERROR=1``: the traceback)."""
    try:
        return log_report(result, when)
    except Exception as error:
        if os.environ.get("DARNET_FULL_ERROR"):
            raise
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return [f"warning: the report was not logged to W&B: {type(error).__name__}: {first}"]

"""``darnet-report DIR``: the Table IV report of a sweep (or of one run), and ``write_report`` for Python callers.

``write_report`` ties the pieces together: collect the jobs, summarise folds, build each row's fold ensemble and
its patient-level bootstrap, then write tables, plots and ``report.json`` into ``<DIR>/report/``. Job folders are
only read. Every file is computed in memory first and then all are written together (``publish_files``: all of
them or, on a full disk or an interrupt, none), while the folder is locked against a second ``darnet-report``. A
re-run replaces the previous report's files (the summary says so) and removes those of its files that the new
report no longer has, e.g. the plots of a row that disappeared.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from darnet_pl.report import plots
from darnet_pl.report.collect import Collection, Group, collect, is_job_dir, missing_jobs
from darnet_pl.report.ensemble import Bootstrap, FoldEnsemble, fold_ensemble, paper_metrics, patient_bootstrap
from darnet_pl.report.tables import Row, blocks, method_name, summarise, to_csv, to_latex, to_markdown
from darnet_pl.runs.layout import METRICS_FILE, REPORT_JSON
from darnet_pl.utils.io import output_folder, publish_files

TABLE_STEM = "table_iv"


class NothingToReport(Exception):
    """No job under the folder has finished (no ``test_metrics.json``)."""


@dataclass
class GroupResult:
    """Everything computed for one row group."""

    group: Group
    method: str
    fold_stats: dict[str, Any]
    ensemble: FoldEnsemble | None = None
    ensemble_metrics: dict[str, float] | None = None
    bootstrap: Bootstrap | None = None
    rows: list[Row] = field(default_factory=list)


@dataclass
class ReportResult:
    out_dir: Path
    files: list[Path]
    report: dict[str, Any]
    summary: str


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN: undefined numbers (a std of one fold, an AUC without positives) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(v) for v in value]
    return value


def _analyse(
    group: Group, class_names: Sequence[str], positive: str, n_bootstrap: int, seed: int, level: float
) -> GroupResult:
    stats = summarise([job.metrics or {} for job in group.jobs])
    result = GroupResult(group, method_name(group.variant, group.shown_overrides), stats)
    with_predictions = [job for job in group.jobs if job.predictions is not None]
    if with_predictions:
        ens = fold_ensemble([job.predictions for job in with_predictions], [job.fold for job in with_predictions])
        result.ensemble = ens
        absent = [name for c, name in enumerate(class_names) if not (ens.labels == c).any()]
        if absent:
            ens.notes.append(
                f"no test scan of class {', '.join(absent)}: its AUC and sensitivity are undefined (NaN: – in the "
                "tables, null in report.json), its F1 too where it is never predicted; macro averages use the "
                "classes present"
            )
        result.ensemble_metrics = paper_metrics(ens.probs, ens.labels, class_names, positive)
        if n_bootstrap > 0:
            result.bootstrap = patient_bootstrap(
                ens.probs, ens.labels, ens.patient_ids, class_names, positive, n_bootstrap, seed, level
            )
    ci = result.bootstrap.intervals if result.bootstrap else {}
    common = {"method": result.method, "variant": group.variant, "overrides": group.shown_overrides}
    if len(group.jobs) == 1:
        result.rows.append(Row(**common, kind="single", n=1, value=dict(group.jobs[0].metrics or {}), ci=ci))
    else:
        means = {name: s.mean for name, s in stats.items()}
        stds = {name: s.std for name, s in stats.items()}
        result.rows.append(Row(**common, kind="folds", n=len(group.jobs), value=means, std=stds))
        if result.ensemble_metrics is not None:
            n_models = len(with_predictions)
            result.rows.append(Row(**common, kind="ensemble", n=n_models, value=result.ensemble_metrics, ci=ci))
    return result


def _unique_slugs(groups: Sequence[Group]) -> list[str]:
    seen: dict[str, int] = {}
    slugs = []
    for group in groups:
        slug = group.slug
        seen[slug] = seen.get(slug, 0) + 1
        slugs.append(slug if seen[slug] == 1 else f"{slug}-{seen[slug]}")
    return slugs


def _png(draw: Any, *args: Any, **kwargs: Any) -> bytes:
    """A plot rendered into memory: the report writes all its files together once everything is computed."""
    buffer = io.BytesIO()
    draw(buffer, *args, **kwargs)
    return buffer.getvalue()


def _plot_group(result: GroupResult, slug: str, class_names: Sequence[str], positive: str) -> dict[str, bytes]:
    ens = result.ensemble
    if ens is None:
        return {}
    k = len(class_names)
    jobs = [job for job in result.group.jobs if job.predictions is not None]
    single = len(result.group.jobs) == 1
    title = f"{result.method} (single run)" if single else f"{result.method} ({len(jobs)} folds)"
    folds = [] if single else [plots.Curves(f"fold {j.fold}", j.predictions.probs, j.predictions.labels) for j in jobs]
    main_curve = plots.Curves(f"run (fold {jobs[0].fold})" if single else "fold ensemble", ens.probs, ens.labels)
    roc = _png(plots.plot_roc, title, folds, main_curve, class_names, positive)
    summed = None
    if not single:
        summed = sum(plots.confusion_matrix(j.predictions.labels, j.predictions.probs, k) for j in jobs)
    confusion = _png(
        plots.plot_confusion,
        title,
        class_names,
        plots.confusion_matrix(ens.labels, ens.probs, k),
        summed,
        len(jobs),
        ensemble_name=main_curve.name,
    )
    return {f"roc_{slug}.png": roc, f"confusion_{slug}.png": confusion}


def _group_json(result: GroupResult, slug: str) -> dict[str, Any]:
    group = result.group
    payload: dict[str, Any] = {
        "method": result.method,
        "variant": group.variant,
        "overrides": list(group.overrides),
        "shown_overrides": list(group.shown_overrides),
        "slug": slug,
        "n_folds": len(group.jobs),
        "folds": group.folds,
        "jobs": [str(job.path) for job in group.jobs],
        "incomplete_jobs": [str(job.path) for job in group.incomplete],
        "fold_metrics": {name: stat.as_dict() for name, stat in result.fold_stats.items()},
        "ensemble": None,
    }
    if result.ensemble is not None:
        ens, boot = result.ensemble, result.bootstrap
        payload["ensemble"] = {
            "n_models": len(ens.folds),
            "folds": ens.folds,
            "n_scans": ens.n_scans,
            "n_patients": ens.n_patients,
            "same_test_set": ens.same_test_set,
            "notes": ens.notes,
            "metrics": result.ensemble_metrics,
            "ci": {k: list(v) for k, v in boot.intervals.items()} if boot else None,
            "ci_valid_resamples": boot.n_valid if boot else None,
        }
    return payload


def _notes(results: Sequence[GroupResult], n_bootstrap: int, seed: int, level: float) -> list[str]:
    notes = [
        "Fold rows: mean ± sample standard deviation (ddof=1) over the folds' test metrics.",
        "Accuracy is the fraction of test scans classified right (all classes) in both blocks, as in the paper's "
        "Table IV; the COVID-19 vs rest accuracy is 2class/accuracy in report.json.",
    ]
    if any(r.ensemble is not None for r in results):
        ci = (
            f"[{100 * level:g}% patient-level bootstrap percentile CI, {n_bootstrap} resamples, seed {seed}]"
            if n_bootstrap > 0
            else "(no bootstrap)"
        )
        notes.append(f"Ensemble and single-run rows: value on the test set {ci}.")
        notes.append(
            "Fold ensemble: mean softmax of the fold models, metrics by PaperMetrics on the averaged probabilities."
        )
    for result in results:
        if result.ensemble is not None:
            for note in result.ensemble.notes:
                notes.append(f"{result.method}: {note}.")
    return notes


def _stale_files(out: Path, written: Sequence[str]) -> list[Path]:
    """Files the previous report listed that this one does not write: removed (once the new report is in place),
    so the folder never mixes runs."""
    previous = out / REPORT_JSON
    if not previous.is_file():
        return []
    try:
        listed = json.loads(previous.read_text(encoding="utf-8")).get("files", [])
    except (ValueError, OSError):
        return []
    keep = set(written)
    paths = [out / Path(str(name)).name for name in listed]  # only plain names inside the report folder
    return [path for path in paths if path.name not in keep and path.is_file()]


def _remove(paths: Sequence[Path]) -> list[str]:
    for path in paths:
        path.unlink(missing_ok=True)
    return [path.name for path in paths]


def write_report(
    sweep_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    expected_folds: int | None = None,
    level: float = 0.95,
    make_plots: bool = True,
) -> ReportResult:
    """Write the report of every job under ``sweep_dir`` into ``out_dir`` (default ``<sweep_dir>/report``).

    Raises FileNotFoundError for a missing folder, ValueError for an output folder that is a job folder, and
    NothingToReport when no job has finished.
    """
    sweep = Path(sweep_dir)
    if not sweep.is_dir():
        raise FileNotFoundError(f"{sweep}: no such directory")
    out = Path(out_dir) if out_dir is not None else sweep / "report"
    if out.is_dir() and is_job_dir(out):
        raise ValueError(f"{out}: is a training job's folder; choose another --out")
    collection: Collection = collect(sweep, skip=[out])
    missing = missing_jobs(collection, expected_folds)
    groups = [g for g in collection.groups if g.jobs]
    if not groups:
        detail = (
            f"{len(collection.jobs)} job folder(s), none with {METRICS_FILE} yet"
            if collection.jobs
            else f"no folder under it holds {METRICS_FILE}"
        )
        raise NothingToReport(f"{sweep}: no finished run or sweep job found ({detail})")

    class_names, positive = collection.class_names, collection.positive_class
    problems = list(collection.problems)
    for job in collection.jobs:
        if job.complete and (job.class_names != class_names or job.positive_class != positive):
            problems.append(f"{job.path}: classes {job.class_names}/{job.positive_class} differ from {class_names}")
    results = [_analyse(g, class_names, positive, n_bootstrap, seed, level) for g in groups]
    rows = [row for r in results for row in r.rows]
    slugs = _unique_slugs(groups)
    table_blocks = blocks(class_names, positive)
    notes = _notes(results, n_bootstrap, seed, level)
    caption = (f"Ablation study on the independent test set ({sweep.resolve().name}). " + " ".join(notes[:2])).strip()

    contents = {
        f"{TABLE_STEM}.md": to_markdown(rows, table_blocks, notes + [f"Missing: {m}" for m in missing]).encode(),
        f"{TABLE_STEM}.csv": to_csv(rows, table_blocks).encode(),
        f"{TABLE_STEM}.tex": to_latex(rows, table_blocks, caption).encode(),
    }
    if make_plots:
        for result, slug in zip(results, slugs, strict=True):
            contents.update(_plot_group(result, slug, class_names, positive))
        curves = [
            plots.Curves(
                r.method + (", fold ensemble" if len(r.group.jobs) > 1 else ""), r.ensemble.probs, r.ensemble.labels
            )
            for r in results
            if r.ensemble is not None
        ]
        if len(curves) > 1:
            contents["roc_covid_vs_rest.png"] = _png(plots.plot_roc_comparison, curves, class_names, positive)

    report = {
        "sweep_dir": str(sweep.resolve()),
        "out_dir": str(out.resolve()),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "class_names": list(class_names),
        "positive_class": positive,
        "bootstrap": {
            "resamples": n_bootstrap,
            "seed": seed,
            "level": level,
            "unit": "patient",
            "method": "percentile",
        },
        "expected_folds": expected_folds,
        "table": {
            "columns": ["auc", "accuracy", "sensitivity", "specificity", "f1"],
            "blocks": [{"name": b.name, "title": b.title, "keys": list(b.keys)} for b in table_blocks],
            "rows": [
                {"label": r.label, "kind": r.kind, "n": r.n, "variant": r.variant, "value": r.value, "std": r.std}
                | {"ci": {k: list(v) for k, v in r.ci.items()}}
                for r in rows
            ],
        },
        "groups": [_group_json(r, s) for r, s in zip(results, slugs, strict=True)],
        "jobs": [
            {
                "path": str(job.path),
                "variant": job.variant,
                "fold": job.fold,
                "overrides": list(job.overrides),
                "finished": job.complete,
                "has_predictions": job.predictions is not None,
            }
            for job in collection.jobs
        ],
        "missing": missing,
        "problems": problems,
    }
    report["files"] = [*contents, REPORT_JSON]
    text = json.dumps(_finite_or_none(report), indent=2, sort_keys=True, default=str) + "\n"
    contents[REPORT_JSON] = text.encode()
    with output_folder(out, "darnet-report"):  # nothing is written before this point
        replacing = (out / REPORT_JSON).is_file()
        stale = _stale_files(out, list(contents))
        files = publish_files(out, contents, "the report")
        removed = _remove(stale)

    done = sum(len(g.jobs) for g in groups)
    plural = "s" if done != 1 else ""
    lines = [f"darnet-report: {done} finished job{plural} in {len(groups)} row(s) under {sweep} -> {out}"]
    if replacing:
        lines.append(f"replaced the previous report in {out}" + (f" (removed {', '.join(removed)})" if removed else ""))
    lines += ["", to_markdown(rows, table_blocks).rstrip()]
    lines += [f"missing: {m}" for m in missing]
    lines += [f"note: {p}" for p in problems]
    lines += [f"note: {n}" for r in results if r.ensemble is not None for n in r.ensemble.notes]
    return ReportResult(out_dir=out, files=files, report=report, summary="\n".join(lines))

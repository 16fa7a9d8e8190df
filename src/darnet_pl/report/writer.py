"""``darnet-report DIR...``: the Table IV report of a sweep (or of one run, or of several sweeps together), and
``write_report`` for Python callers.

``write_report`` ties the pieces together: collect the jobs, summarise folds, build each row's fold ensemble and
its patient-level bootstrap, then write tables, plots and ``report.json`` into ``<DIR>/report/`` (several folders:
``<their common parent>/report/``). Job folders are only read.

On CC-CCII (``collect``: ``Group.dataset``), the paper's Table IV figures are rows of their own beside each variant's
rows, every fold mean is marked inside / outside the paper's mean ± std, and ``paper_comparison.csv`` lists the
comparison metric by metric. The shortcut control's rows (``Group.condition``) follow the raw rows of their variant,
and the notes count the patients per class left in its test set. Each fold ensemble also gets patient-level blocks
(``patient/...``: ``darnet_pl.metrics.patient_level``), a Brier score and an ECE (scans and patients) and a
reliability diagram. The variants of one experiment are compared on the same test scans (``report.comparisons``).

Every file is computed in memory first and then all are written together (``publish_files``: all of them or, on a
full disk or an interrupt, none), while the folder is locked against a second ``darnet-report``. A re-run replaces
the previous report's files (the summary says so) and removes those of its files that the new report no longer
has, e.g. the plots of a row that disappeared.
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

from darnet_pl.report import paper_table_iv, plots
from darnet_pl.report.audit_figures import audit_lines, find_audits
from darnet_pl.report.collect import Collection, Group, as_roots, collect, common_root, missing_jobs
from darnet_pl.report.comparisons import Contender, compare_variants
from darnet_pl.report.ensemble import FoldEnsemble, fold_ensemble
from darnet_pl.report.tables import (
    MARK_NOTE,
    Row,
    blocks,
    comparison_csv,
    mark_within,
    method_name,
    paper_comparison,
    paper_row,
    patient_blocks,
    summarise,
    to_csv,
    to_latex,
    to_markdown,
)
from darnet_pl.runs.jobs import is_job_dir
from darnet_pl.runs.layout import METRICS_FILE, REPORT_JSON, SWEEP_REPORT_DIR
from darnet_pl.stats import (
    ECE_BINS,
    Bootstrap,
    Calibration,
    PatientResults,
    calibration,
    paper_metrics,
    patient_bootstrap,
    patient_results,
)
from darnet_pl.utils.io import output_folder, publish_files

TABLE_STEM = "table_iv"
COMPARISON_FILE = "paper_comparison.csv"


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
    patients: PatientResults | None = None
    calibration: dict[str, Calibration] = field(default_factory=dict)  # "scans", "patients"
    test_set: dict[str, dict[str, int]] | None = None  # "patients"/"scans" -> class -> count, over every fold
    compared: bool = False  # beside the paper's figures (CC-CCII, the paper's classes)
    rows: list[Row] = field(default_factory=list)

    @property
    def fold_row(self) -> Row | None:
        return next((row for row in self.rows if row.kind == "folds"), None)


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


def _test_set(group: Group, class_names: Sequence[str]) -> dict[str, dict[str, int]] | None:
    """Patients and scans per class in the group's predictions (the test rows of every fold, joined)."""
    scans: set[tuple[str, str, int]] = set()
    for job in group.jobs:
        if job.predictions is not None:
            pred = job.predictions
            scans.update(zip(pred.patient_ids.tolist(), pred.scan_ids.tolist(), pred.labels.tolist(), strict=True))
    if not scans:
        return None
    patients = {(pid, label) for pid, _scan, label in scans}
    return {
        "patients": {name: sum(1 for _p, lab in patients if lab == c) for c, name in enumerate(class_names)},
        "scans": {name: sum(1 for *_k, lab in scans if lab == c) for c, name in enumerate(class_names)},
    }


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items())


def _analyse(
    group: Group,
    class_names: Sequence[str],
    positive: str,
    n_bootstrap: int,
    seed: int,
    level: float,
    compared: bool = False,
) -> GroupResult:
    stats = summarise([job.metrics or {} for job in group.jobs])
    method = method_name(group.variant, group.shown_overrides, group.condition)
    result = GroupResult(group, method, stats, compared=compared)
    result.test_set = _test_set(group, class_names)
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
        result.calibration["scans"] = calibration(ens.probs, ens.labels)
        try:
            result.patients = patient_results(
                ens.patient_ids, ens.labels, ens.probs, class_names, positive, n_bootstrap, seed, level
            )
        except ValueError as error:  # a patient whose scans carry two labels: no patient level, the rest stands
            ens.notes.append(f"no patient-level metrics: {error}")
        else:
            result.calibration["patients"] = calibration(result.patients.probs, result.patients.labels)
    ci = dict(result.bootstrap.intervals) if result.bootstrap else {}
    patient_values: dict[str, float] = {}
    if result.patients is not None:
        patient_values = result.patients.metrics
        if result.patients.bootstrap is not None:
            ci.update(result.patients.bootstrap.intervals)
    common = {"method": result.method, "variant": group.variant, "overrides": group.shown_overrides}
    if len(group.jobs) == 1:
        value = dict(group.jobs[0].metrics or {}) | patient_values
        result.rows.append(Row(**common, kind="single", n=1, value=value, ci=ci))
    else:
        means = {name: s.mean for name, s in stats.items()}
        stds = {name: s.std for name, s in stats.items()}
        folds = Row(**common, kind="folds", n=len(group.jobs), value=means, std=stds)
        if compared:
            mark_within(folds)
        result.rows.append(folds)
        if result.ensemble_metrics is not None:
            n_models = len(with_predictions)
            value = result.ensemble_metrics | patient_values
            result.rows.append(Row(**common, kind="ensemble", n=n_models, value=value, ci=ci))
    return result


def _table_rows(results: Sequence[GroupResult]) -> list[Row]:
    """Every group's rows, in the groups' order, with the paper's row of a variant before the first group of that
    variant compared with it."""
    rows: list[Row] = []
    shown: set[str] = set()
    for result in results:
        if result.compared and result.group.variant not in shown:
            shown.add(result.group.variant)
            reference = paper_row(result.group.variant)
            if reference is not None:
                rows.append(reference)
        rows.extend(result.rows)
    return rows


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
    files = {f"roc_{slug}.png": roc}
    per_fold = []  # the folds share one test set: each fold on its own (a sum counts every scan once per fold)
    for job in [] if single else jobs:
        per_fold.append((f"fold {job.fold}", plots.confusion_matrix(job.predictions.labels, job.predictions.probs, k)))
    confusion = _png(
        plots.plot_confusion,
        title,
        class_names,
        plots.confusion_matrix(ens.labels, ens.probs, k),
        per_fold,
        ensemble_name=main_curve.name,
    )
    files[f"confusion_{slug}.png"] = confusion
    samples = {"scans": (ens.probs, ens.labels)}
    if result.patients is not None:
        samples["patients"] = (result.patients.probs, result.patients.labels)
    panels = []
    for which, (probs, labels) in samples.items():
        numbers = result.calibration[which]
        panels.append(plots.Reliability(f"{main_curve.name}, {which}", probs, labels, numbers.ece, numbers.brier))
    files[f"reliability_{slug}.png"] = _png(plots.plot_reliability, title, panels, ECE_BINS)
    return files


def _group_json(result: GroupResult, slug: str) -> dict[str, Any]:
    group = result.group
    payload: dict[str, Any] = {
        "method": result.method,
        "variant": group.variant,
        "condition": group.condition or None,
        "dataset": group.dataset,
        "overrides": list(group.overrides),
        "shown_overrides": list(group.shown_overrides),
        "slug": slug,
        "n_folds": len(group.jobs),
        "folds": group.folds,
        "jobs": [str(job.path) for job in group.jobs],
        "incomplete_jobs": [str(job.path) for job in group.incomplete],
        "fold_metrics": {name: stat.as_dict() for name, stat in result.fold_stats.items()},
        "test_set": result.test_set,
        "paper": None,
        "ensemble": None,
        "patient_level": None,
        "calibration": {k: v.as_dict() for k, v in result.calibration.items()} or None,
    }
    fold_row = result.fold_row
    if result.compared and fold_row is not None:
        payload["paper"] = {
            "source": paper_table_iv.SOURCE,
            "comparison": {r["metric"]: r for r in paper_comparison([fold_row])},
        }
    if result.patients is not None:
        patients, pboot = result.patients, result.patients.bootstrap
        payload["patient_level"] = {
            "aggregation": "mean of the patient's scans' ensemble probabilities",
            "n_patients": patients.n_patients,
            "metrics": patients.metrics,
            "ci": {k: list(v) for k, v in pboot.intervals.items()} if pboot else None,
            "ci_valid_resamples": pboot.n_valid if pboot else None,
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


def _control_notes(results: Sequence[GroupResult]) -> list[str]:
    """How many patients of each class the shortcut control's test set keeps, beside the raw test set's."""
    notes = []
    for result in results:
        if not result.group.is_control or result.test_set is None:
            continue
        counts = result.test_set
        text = (
            f"{result.method}: control test set: {_counts(counts['patients'])} patients "
            f"({_counts(counts['scans'])} scans)"
        )
        raw = next(
            (
                r
                for r in results
                if not r.group.is_control
                and r.group.variant == result.group.variant
                and r.group.compared == result.group.compared
                and r.test_set is not None
            ),
            None,
        )
        if raw is not None and raw.test_set is not None:
            text += f"; raw test set: {_counts(raw.test_set['patients'])} patients"
        notes.append(text)
    return notes


def _calibration_lines(results: Sequence[GroupResult]) -> list[str]:
    lines = []
    for result in results:
        if result.calibration:
            parts = [
                f"Brier {c.brier:.4f}, ECE {c.ece:.4f} ({which}, n={c.n})" for which, c in result.calibration.items()
            ]
            lines.append(f"{result.method}: calibration of the fold ensemble: {'; '.join(parts)}")
    return lines


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
        if any(r.patients is not None for r in results):
            notes.append(
                "Patient level: each patient's probabilities are the mean of their scans' (fold ensemble); the same "
                "metrics on one decision per patient, CIs from a bootstrap over patients. Calibration: Brier score "
                f"(summed squared error, mean over samples) and ECE ({ECE_BINS} equal-width top-label confidence "
                "bins), in report.json and reliability_*.png."
            )
    if any(r.compared for r in results):
        notes.append(f"Rows marked paper: {paper_table_iv.SOURCE}. {MARK_NOTE}")
    notes += [f"{note}." for note in _control_notes(results)]
    notes += [f"{line}." for line in _calibration_lines(results)]
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
    sweep_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    expected_folds: int | None = None,
    level: float = 0.95,
    make_plots: bool = True,
    all_pairs: bool = False,
) -> ReportResult:
    """Write the report of every job under ``sweep_dir`` (a folder, or several read together) into ``out_dir``
    (default ``<sweep_dir>/report``; for several folders ``<their common parent>/report``). ``all_pairs``: compare
    every pair of variants of an experiment, not only each against the full DARNet.

    Raises FileNotFoundError for a missing folder, ValueError for an output folder that is a job folder (or several
    folders with no common parent but the file system's root and no ``out_dir``), and NothingToReport when no job
    has finished.
    """
    roots = as_roots(sweep_dir)
    for folder in roots:
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such directory")
    sweep = common_root(roots)
    where = str(roots[0]) if len(roots) == 1 else ", ".join(str(r) for r in roots)
    if out_dir is None and len(roots) > 1 and sweep.parent == sweep:
        raise ValueError(f"{where}: no common folder to write the report into; give --out")
    out = Path(out_dir) if out_dir is not None else sweep / SWEEP_REPORT_DIR
    if out.is_dir() and is_job_dir(out):
        raise ValueError(f"{out}: is a training job's folder; choose another --out")
    collection: Collection = collect(roots, skip=[out])
    missing = missing_jobs(collection, expected_folds)
    groups = [g for g in collection.groups if g.jobs]
    if not groups:
        detail = (
            f"{len(collection.jobs)} job folder(s), none finished: "
            + "; ".join(f"{job.path}: {job.reason or 'unfinished'}" for job in collection.jobs[:3])
            + ("; ..." if len(collection.jobs) > 3 else "")
            if collection.jobs
            else f"no folder under it holds {METRICS_FILE}"
        )
        raise NothingToReport(f"{where}: no finished run or sweep job found ({detail})")

    class_names, positive = collection.class_names, collection.positive_class
    problems = list(collection.problems)
    for job in collection.jobs:
        if job.complete and (job.class_names != class_names or job.positive_class != positive):
            problems.append(f"{job.path}: classes {job.class_names}/{job.positive_class} differ from {class_names}")
    paper = paper_table_iv.applies(class_names, positive)
    results = [
        _analyse(g, class_names, positive, n_bootstrap, seed, level, compared=paper and g.dataset == "ccii")
        for g in groups
    ]
    rows = _table_rows(results)
    contenders = [Contender(r.method, r.group, r.ensemble) for r in results if r.ensemble is not None]
    compared = compare_variants(contenders, class_names, positive, n_bootstrap, seed, level, all_pairs)
    slugs = _unique_slugs(groups)
    table_blocks = blocks(class_names, positive)
    if any(r.patients is not None for r in results):
        table_blocks = (*table_blocks, *patient_blocks(class_names, positive))
    notes = _notes(results, n_bootstrap, seed, level)
    names = ", ".join(r.resolve().name for r in roots)
    caption = (f"Ablation study on the independent test set ({names}). " + " ".join(notes[:2])).strip()
    comparison = paper_comparison([row for row in rows if row.within])
    audits = find_audits(roots)
    notes += audit_lines(audits)

    contents = {
        f"{TABLE_STEM}.md": to_markdown(rows, table_blocks, notes + [f"Missing: {m}" for m in missing]).encode(),
        f"{TABLE_STEM}.csv": to_csv(rows, table_blocks).encode(),
        f"{TABLE_STEM}.tex": to_latex(rows, table_blocks, caption).encode(),
    }
    if comparison:
        contents[COMPARISON_FILE] = comparison_csv(comparison).encode()
    contents.update(compared.files(positive))
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
        "sweep_dirs": [str(r.resolve()) for r in roots],
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
                | {"ci": {k: list(v) for k, v in r.ci.items()}, "within_paper": r.within or None}
                for r in rows
            ],
        },
        "paper": {
            "source": paper_table_iv.SOURCE,
            "compared": [r.method for r in results if r.compared],
            "comparison": comparison,
        }
        if comparison or any(r.compared for r in results)
        else None,
        "groups": [_group_json(r, s) for r, s in zip(results, slugs, strict=True)],
        "comparisons": compared.records,
        "comparisons_notes": compared.notes,
        "jobs": [
            {
                "path": str(job.path),
                "variant": job.variant,
                "condition": job.condition or None,
                "dataset": job.dataset,
                "task_name": job.task_name,
                "fold": job.fold,
                "overrides": list(job.overrides),
                "finished": job.complete,
                "status": job.status,
                "reason": job.reason or None,
                "has_predictions": job.predictions is not None,
            }
            for job in collection.jobs
        ],
        "missing": missing,
        "problems": problems,
        "audit": audits or None,
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
    lines = [f"darnet-report: {done} finished job{plural} in {len(groups)} row(s) under {where} -> {out}"]
    if replacing:
        lines.append(f"replaced the previous report in {out}" + (f" (removed {', '.join(removed)})" if removed else ""))
    lines += ["", to_markdown(rows, table_blocks).rstrip()]
    if comparison:
        inside = sum(1 for r in comparison if r["within_paper"])
        defined = sum(1 for r in comparison if r["within_paper"] is not None)
        lines.append(f"paper: {inside} of {defined} fold means inside the paper's mean ± std (✓ inside, ✗ outside)")
    lines += compared.summary_lines(positive)
    lines += [f"control: {n}" for n in _control_notes(results)]
    lines += [f"calibration: {n}" for n in _calibration_lines(results)]
    lines += audit_lines(audits)
    lines += [f"missing: {m}" for m in missing]
    lines += [f"note: {p}" for p in problems]
    lines += [f"note: {n}" for r in results if r.ensemble is not None for n in r.ensemble.notes]
    return ReportResult(out_dir=out, files=files, report=report, summary="\n".join(lines))

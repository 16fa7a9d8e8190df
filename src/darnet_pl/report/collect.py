"""Find the training jobs under a sweep (or one run) folder and read what each one wrote.

A job folder is recognised by the files training writes (``darnet_pl.runs.jobs.is_job_dir``), at any depth, so
a Hydra multirun (``<sweep>/<job.num>/``), a hand-made layout (``<sweep>/<variant>/fold<k>/``) and a single run
folder are all read the same way. Only finished jobs count (``runs.jobs.job_state``); the others - still running,
failed, interrupted - are listed with why. Jobs are grouped into table rows
by their attention variant plus any other override that differs between jobs (everything but the fold), so a sweep
over, say, ``data.split_seed`` never averages different experiments together.

Several folders (or their common parent) are read as one collection: the shortcut control
(``+experiment=shortcut_control``, ``data.source.exclude_segmented=true``) is its own sweep, and its jobs form rows
of their own, the ``condition`` ``shortcut_control``, compared with the paper's recipe (``+experiment=darnet``) as
if it were the same experiment on other data: so the raw and the control rows of a variant differ only in their
condition and sit side by side. Each job also says which data it was trained on (``dataset``: ``ccii`` for
CC-CCII), which decides whether the paper's own figures belong beside it.

Only reads: nothing under the sweep is written or moved here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from darnet_pl.data.records import CLASS_NAMES
from darnet_pl.runs.jobs import FINISHED, find_job_dirs, job_state
from darnet_pl.runs.layout import (
    CONFIG_FILE,
    HYDRA_CONFIG,
    HYDRA_OVERRIDES,
    METRICS_FILE,
    PREDICTIONS_FILE,
)
from darnet_pl.runs.metrics_file import read_metrics_file
from darnet_pl.runs.naming import experiment_overrides, override_key
from darnet_pl.runs.predictions import InvalidPredictions, Predictions, read_predictions
from darnet_pl.utils.text import safe_name

DEFAULT_POSITIVE = "NCP"
CCII_SOURCE = "darnet_pl.data.sources.ccii.CCIISource"
# Experiments (task names) of the paper's recipe on CC-CCII: the fallback when a config names no data source.
CCII_TASKS = frozenset({"darnet", "ablation", "shortcut_control"})
CONTROL = "shortcut_control"
# A control experiment and the experiment it is the control of (conf/experiment/shortcut_control.yaml: darnet's
# recipe without the pre-segmented scans), for grouping: the control's rows line up with the recipe's.
CONTROL_OF = {CONTROL: "darnet"}
_CONTROL_KEYS = frozenset({"data.source.exclude_segmented"})
# The paper's order of the ablation rows (Tables III, IV); unknown variants follow alphabetically.
VARIANT_ORDER = ("none", "ca", "da", "dual")


@dataclass
class Job:
    """One training job folder and what it holds."""

    path: Path
    variant: str
    fold: int | None
    overrides: tuple[str, ...]
    class_names: tuple[str, ...]
    positive_class: str
    task_name: str | None = None
    dataset: str = "unknown"  # "ccii" (CC-CCII), else the data source's class name, or "unknown"
    condition: str = ""  # "" (the data as the recipe reads it) or "shortcut_control" (pre-segmented scans left out)
    metrics: dict[str, float] | None = None
    predictions: Predictions | None = None
    problems: list[str] = field(default_factory=list)
    status: str = FINISHED  # runs.jobs: finished, running, failed, interrupted or untested
    reason: str = ""  # why it is not finished, for people

    @property
    def complete(self) -> bool:
        """Tested, and not running or failed since: a job whose metrics the report may use."""
        return self.metrics is not None and self.status == FINISHED


@dataclass
class Group:
    """The jobs of one table row: same variant, condition and experiment overrides, different folds."""

    variant: str
    overrides: tuple[str, ...]  # the experiment-defining overrides (fold and variant removed), of its first job
    condition: str = ""  # as Job.condition
    compared: tuple[str, ...] = ()  # the overrides it is grouped and compared by (control_overrides)
    shown_overrides: tuple[str, ...] = ()  # those of ``compared`` that differ between groups, for the row's label
    dataset: str = "unknown"
    jobs: list[Job] = field(default_factory=list)  # completed jobs, by fold
    incomplete: list[Job] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, tuple[str, ...]]:
        return (self.variant, self.condition, self.compared)

    @property
    def is_control(self) -> bool:
        return self.condition == CONTROL

    @property
    def folds(self) -> list[int | None]:
        return [job.fold for job in self.jobs]

    @property
    def task_names(self) -> tuple[str, ...]:
        """The experiments (Hydra task names) its jobs say they belong to; one, normally."""
        return tuple(sorted({job.task_name or "" for job in self.jobs + self.incomplete}))

    @property
    def experiment(self) -> tuple[object, ...]:
        """What the group's experiment is, apart from its attention variant: the task name, the condition, the
        other experiment-defining overrides and the data set. Groups with the same ``experiment`` are variants of
        one experiment (the ablation), compared with each other on the same test scans."""
        return (self.task_names, self.condition, self.compared, self.dataset)

    @property
    def slug(self) -> str:
        """A file-name-safe name of the group: the variant, its condition if any, then the differing overrides."""
        text = "__".join((self.variant, *([self.condition] if self.condition else []), *self.shown_overrides))
        return safe_name(text, keep="_.=-") or "run"


@dataclass
class Collection:
    root: Path  # the folder given, or the common parent of several
    groups: list[Group]
    jobs: list[Job]
    problems: list[str]
    roots: list[Path] = field(default_factory=list)  # every folder given

    @property
    def class_names(self) -> tuple[str, ...]:
        done = [job for job in self.jobs if job.complete] or self.jobs
        return done[0].class_names if done else CLASS_NAMES

    @property
    def positive_class(self) -> str:
        done = [job for job in self.jobs if job.complete] or self.jobs
        return done[0].positive_class if done else DEFAULT_POSITIVE


def _load_yaml(path: Path) -> Any:
    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception:  # a torn or hand-edited file: the job is reported, not the whole report lost
        return None


def _select(config: Any, dotted: str) -> Any:
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def dataset_of(source_target: Any, task_name: Any) -> str:
    """``ccii`` for CC-CCII jobs (by the data source's class; by the experiment when the config names no source),
    else the source's class name, or ``unknown``."""
    if isinstance(source_target, str) and source_target:
        return "ccii" if source_target == CCII_SOURCE else source_target.rsplit(".", 1)[-1]
    return "ccii" if task_name in CCII_TASKS else "unknown"


def control_overrides(overrides: Iterable[str], condition: str, task_name: str | None = None) -> tuple[str, ...]:
    """What a job is grouped by besides its variant: its recipe (``experiment=<task_name>``) and defining overrides.

    Those switching the control on are left out (``condition`` carries it), and a control experiment counts as the
    experiment it controls, so raw and control rows line up."""
    kept = [item for item in overrides if override_key(item) not in _CONTROL_KEYS]
    if task_name:
        kept.append(f"experiment={CONTROL_OF.get(task_name, task_name) if condition else task_name}")
    return tuple(sorted(kept))


def read_metrics(path: Path) -> dict[str, float]:
    """``test_metrics.json`` with the ``test/`` prefix dropped: keys as PaperMetrics names them."""
    return {k.removeprefix("test/"): v for k, v in read_metrics_file(path).items()}


def read_job(path: Path) -> Job:
    """What one job folder says about itself; unreadable parts become ``problems``, never exceptions - except
    impossible values in ``predictions.csv`` (``InvalidPredictions``, see there)."""
    problems: list[str] = []
    config = None
    for candidate in (path / CONFIG_FILE, path / HYDRA_CONFIG):
        if candidate.is_file():
            config = _load_yaml(candidate)
            if config is None:
                problems.append(f"{candidate}: unreadable YAML")
            else:
                break
    variant = _select(config, "model.attention")
    fold = _select(config, "fold")
    class_names = _select(config, "data.class_names")
    positive = _select(config, "model.positive_class")
    task_name = _select(config, "task_name")
    task_name = str(task_name) if isinstance(task_name, str) else None
    excluded = _select(config, "data.source.exclude_segmented")  # the switch decides; the task name where absent
    control = excluded if isinstance(excluded, bool) else task_name == CONTROL
    overrides_raw = _load_yaml(path / HYDRA_OVERRIDES) if (path / HYDRA_OVERRIDES).is_file() else []
    overrides = experiment_overrides(overrides_raw if isinstance(overrides_raw, list) else [])

    job = Job(
        path=path,
        variant=str(variant) if isinstance(variant, str) else "unknown",
        fold=int(fold) if isinstance(fold, int) else None,
        overrides=overrides,
        class_names=tuple(class_names) if isinstance(class_names, list) else CLASS_NAMES,
        positive_class=str(positive) if isinstance(positive, str) else DEFAULT_POSITIVE,
        task_name=task_name,
        dataset=dataset_of(_select(config, "data.source._target_"), task_name),
        condition=CONTROL if control else "",
        problems=problems,
        **vars(job_state(path)),
    )
    if config is None and not problems:
        problems.append(f"{path}: no {CONFIG_FILE}; variant and fold unknown")
    if (path / METRICS_FILE).is_file():
        try:
            job.metrics = read_metrics(path / METRICS_FILE)
        except (ValueError, OSError) as error:
            problems.append(f"{path / METRICS_FILE}: unreadable ({error})")
    if (path / PREDICTIONS_FILE).is_file():
        try:
            job.predictions = read_predictions(path / PREDICTIONS_FILE, job.class_names)
        except InvalidPredictions:
            raise
        except (ValueError, OSError, KeyError) as error:
            text = str(error)  # read_predictions' own messages start with the file
            problems.append(text if text.startswith(str(path)) else f"{path / PREDICTIONS_FILE}: unreadable ({text})")
    elif job.metrics is not None:
        problems.append(f"{path}: {METRICS_FILE} but no {PREDICTIONS_FILE}; left out of the ensemble and the plots")
    return job


def variant_rank(variant: str) -> tuple[int, str]:
    return (VARIANT_ORDER.index(variant), "") if variant in VARIANT_ORDER else (len(VARIANT_ORDER), variant)


def _dedupe(jobs: list[Job], problems: list[str]) -> list[Job]:
    """One job per fold: a fold run twice keeps its newest result, and the report says so."""
    by_fold: dict[int | None, list[Job]] = {}
    for job in jobs:
        by_fold.setdefault(job.fold, []).append(job)
    kept = []
    for fold, same in by_fold.items():
        if fold is None or len(same) == 1:
            kept.extend(same)
            continue
        same.sort(key=lambda j: (j.path / METRICS_FILE).stat().st_mtime)
        kept.append(same[-1])
        dropped = ", ".join(str(j.path) for j in same[:-1])
        problems.append(
            f"fold {fold} of {same[-1].variant} finished more than once: using {same[-1].path}, not {dropped}"
        )
    return sorted(kept, key=lambda j: (j.fold is None, j.fold or 0, str(j.path)))


def as_roots(roots: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    """One folder or several, as paths (a str or path is one folder)."""
    if isinstance(roots, str | os.PathLike):
        return [Path(roots)]
    paths = [Path(r) for r in roots]
    if not paths:
        raise ValueError("no folder given")
    return paths


def common_root(roots: Sequence[Path]) -> Path:
    """The folder itself, or the deepest folder holding all of several."""
    if len(roots) == 1:
        return roots[0]
    return Path(os.path.commonpath([str(r.resolve()) for r in roots]))


def collect(root: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], skip: Iterable[Path] = ()) -> Collection:
    """Read every job under ``root`` (one folder, or several read as one) and group them into table rows."""
    roots = as_roots(root)
    for folder in roots:
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such directory")
    skip = list(skip)
    seen: set[Path] = set()
    job_dirs = []
    for folder in roots:  # a folder given twice, or one inside another, is read once
        for path in find_job_dirs(folder, skip):
            if path.resolve() not in seen:
                seen.add(path.resolve())
                job_dirs.append(path)
    jobs = [read_job(path) for path in job_dirs]
    problems = [p for job in jobs for p in job.problems]

    groups: dict[tuple[str, str, tuple[str, ...]], Group] = {}
    for job in jobs:
        compared = control_overrides(job.overrides, job.condition, job.task_name)
        key = (job.variant, job.condition, compared)
        group = groups.setdefault(
            key, Group(job.variant, job.overrides, condition=job.condition, compared=compared, dataset=job.dataset)
        )
        (group.jobs if job.complete else group.incomplete).append(job)
    all_overrides = [set(g.compared) for g in groups.values()]
    common = set.intersection(*all_overrides) if all_overrides else set()
    for group in groups.values():
        group.shown_overrides = tuple(o for o in group.compared if o not in common)
        group.jobs = _dedupe(group.jobs, problems)
        datasets = {job.dataset for job in group.jobs + group.incomplete}
        group.dataset = datasets.pop() if len(datasets) == 1 else "mixed"
    ordered = sorted(groups.values(), key=lambda g: (variant_rank(g.variant), g.shown_overrides, g.condition))
    return Collection(root=common_root(roots), groups=ordered, jobs=jobs, problems=problems, roots=roots)


def missing_jobs(collection: Collection, expected_folds: int | None = None) -> list[str]:
    """Human-readable lines for every job that should be there and has no result.

    Expected folds are ``0 .. expected_folds-1`` when given; otherwise every fold seen in any group (a variant with
    fewer folds than the others is incomplete).
    """
    lines: list[str] = []
    seen = {job.fold for group in collection.groups for job in group.jobs + group.incomplete if job.fold is not None}
    expected = set(range(expected_folds)) if expected_folds else seen
    for group in collection.groups:
        label = group.slug
        for job in group.incomplete:
            lines.append(f"{label} fold {job.fold}: {job.path}: {job.reason or 'unfinished'}")
        have = {job.fold for job in group.jobs + group.incomplete}
        for fold in sorted(expected - have):
            lines.append(f"{label} fold {fold}: no job folder")
        done = len(group.jobs)
        want = len(expected) if expected else done
        if done < want:
            lines.append(f"{label}: {done} of {want} folds finished")
    return lines

"""Which trained models a folder hands over: the finished jobs of one experiment, and why the others are left out.

``--ckpt <folder>`` (predict, evaluate, export) and ``darnet-report`` read run and sweep folders in any state. A job
folder is one training job (a single run, or one fold of a sweep) and is in one of these states (``job_state``):

- ``finished``: tested - ``test_metrics.json`` is there, no process is running the job, its last attempt did not fail;
- ``running``: a process holds its ``.job.lock`` (``runs.job_guard``); its checkpoints may still change;
- ``failed``: its last attempt wrote ``failed.json`` (the reason is shown);
- ``interrupted``: ``last.ckpt`` and no ``test_metrics.json``: the same command again resumes it;
- ``untested``: neither (stopped before its first epoch ended, or trained with ``test=false``).

Only finished jobs are used by default: their best checkpoint is the one the test scored. ``best_so_far=True``
(``--best-so-far``) also takes the best checkpoint the other jobs have so far. Every job left out is listed with
its state, so an output never looks complete when it is not.

Ensembles never mix experiments: the jobs a folder holds are grouped by ``runs.naming.job_experiment`` (recipe,
variant, defining overrides; ``Experiment.key``). A folder of several experiments (an ablation's variants, a sweep
over the learning rate) is refused with one line listing them and how to pick one (``--experiment <key>``, or a
sub-folder), unless one model set per experiment is asked for (``per_experiment``). Checkpoint files named one by one
are the user's own choice and are never refused for that.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from darnet_pl.runs.job_guard import LOCK_FILE, failure_reason, lock_holder
from darnet_pl.runs.layout import (
    BEST_CHECKPOINT_GLOB,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    FAILED_FILE,
    HYDRA_CONFIG,
    LAST_CHECKPOINT,
    METRICS_FILE,
    SWEEP_REPORT_DIR,
    last_checkpoint,
)
from darnet_pl.runs.naming import Experiment, job_experiment
from darnet_pl.utils.file_kinds import not_regular

FINISHED, RUNNING, FAILED, INTERRUPTED, UNTESTED = "finished", "running", "failed", "interrupted", "untested"
UNKNOWN_EXPERIMENT = "unknown"
"""The key of jobs whose folder does not say which experiment they belong to (no readable config)."""

# Folders that never hold a job: not searched (speed), never mistaken for jobs.
_NOT_JOBS = {".hydra", CHECKPOINT_DIR, "csv", "wandb", "tensorboard", "__pycache__", ".git", SWEEP_REPORT_DIR}


class JobSelectionError(ValueError):
    """A folder that hands over no usable model, or models that must not be averaged; one line."""


# ---------------------------------------------------------------------------------------------- job folders


def is_job_dir(path: Path) -> bool:
    """A training job's folder: it holds what training writes (config, metrics, checkpoints, lock, failure record)."""
    if any((path / name).is_file() for name in (CONFIG_FILE, METRICS_FILE, HYDRA_CONFIG, FAILED_FILE, LOCK_FILE)):
        return True
    return any((path / CHECKPOINT_DIR).glob(BEST_CHECKPOINT_GLOB))


def find_job_dirs(root: Path, skip: Iterable[Path] = ()) -> list[Path]:
    """Every job folder in or below ``root``, sorted; a job folder's own sub-folders are not searched."""
    skipped = {Path(p).resolve() for p in skip}
    found: list[Path] = []
    for current, dirs, _files in os.walk(root):
        here = Path(current)
        if here.resolve() in skipped:
            dirs[:] = []
            continue
        if is_job_dir(here):
            found.append(here)
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if d not in _NOT_JOBS and not d.startswith("."))
    return sorted(found)


def job_of_checkpoint(checkpoint: Path) -> Path | None:
    """The job folder a checkpoint file sits in (``<job>/checkpoints/x.ckpt``), None for a file elsewhere."""
    return checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINT_DIR else None


@dataclass(frozen=True)
class JobState:
    status: str  # FINISHED, RUNNING, FAILED, INTERRUPTED or UNTESTED
    reason: str  # for people, one line ("" when finished)


def job_state(job: Path) -> JobState:
    """What a job folder's files say about its job (see the module docstring)."""
    holder = lock_holder(job)
    if holder is not None:
        return JobState(RUNNING, f"still running ({LOCK_FILE} held by {holder})")
    failure = failure_reason(job)
    if failure is not None:
        return JobState(FAILED, f"failed ({FAILED_FILE}: {failure})")
    if (job / METRICS_FILE).is_file():
        return JobState(FINISHED, "")
    if last_checkpoint(job).is_file():
        return JobState(
            INTERRUPTED, f"interrupted ({LAST_CHECKPOINT} and no {METRICS_FILE}: running its sweep again finishes it)"
        )
    return JobState(UNTESTED, f"not tested (no {METRICS_FILE})")


def best_checkpoint(folder: Path) -> Path:
    """The best checkpoint of one job's ``checkpoints/`` folder: its only .ckpt other than last.ckpt."""
    candidates = sorted(p for p in folder.glob(BEST_CHECKPOINT_GLOB) if p.is_file() and p.name != LAST_CHECKPOINT)
    if not candidates:
        has_last = (folder / LAST_CHECKPOINT).is_file()
        hint = " (only last.ckpt: pass it explicitly to use it)" if has_last else ""
        raise JobSelectionError(f"{folder}: no best checkpoint (a .ckpt other than last.ckpt){hint}")
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates[:4])
        raise JobSelectionError(f"{folder}: {len(candidates)} candidate best checkpoints ({names}): pass one file")
    return candidates[0]


# ---------------------------------------------------------------------------------------------- selection


def _key(experiment: Experiment | None) -> str:
    return experiment.key if experiment is not None else UNKNOWN_EXPERIMENT


@dataclass(frozen=True)
class Member:
    """One model of a model set: its checkpoint, the job and experiment it belongs to, and why it is used."""

    checkpoint: Path
    job: Path | None  # None: a file outside a job folder
    experiment: Experiment | None
    given: Path  # the --ckpt entry it came from
    use: str  # "finished", "given" (a file named on the command line) or "best so far (<state>)"

    @property
    def key(self) -> str:
        return _key(self.experiment)

    def as_dict(self) -> dict[str, object]:
        return {
            "checkpoint": str(self.checkpoint),
            "job": None if self.job is None else str(self.job),
            "experiment": self.key,
            "used": self.use,
        }


_USES = {
    "finished": "finished job(s)",
    "given": "checkpoint file(s) as given",
    "best so far": "unfinished job(s), best so far",
}


@dataclass(frozen=True)
class Skipped:
    """A job left out, and why."""

    job: Path
    status: str
    reason: str
    key: str

    def as_dict(self) -> dict[str, str]:
        return {"job": str(self.job), "status": self.status, "reason": self.reason, "experiment": self.key}

    def line(self) -> str:
        return f"left out {self.job}: {self.reason}"


@dataclass
class ModelSet:
    """The checkpoints of one ensemble (one experiment, unless the user named files of several) and the jobs left
    out of it."""

    members: list[Member]
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        return [member.checkpoint for member in self.members]

    @property
    def keys(self) -> list[str]:
        return list(dict.fromkeys(member.key for member in self.members))

    @property
    def experiment(self) -> str:
        """The experiment's key, or the keys of several joined by ' + ' (files named one by one)."""
        return " + ".join(self.keys)

    @property
    def folder_name(self) -> str:
        """A file-name-safe name of the experiment, for its outputs beside the other experiments'."""
        return self.experiment.replace("/", "__").replace(" + ", "+")

    def summary(self) -> str:
        """One line: ``smoke_ablation/dual: 2 model(s): 2 finished job(s); 1 job(s) left out (see the notes)``."""
        uses: dict[str, int] = {}
        for member in self.members:
            use = _USES[member.use.split(" (")[0]]
            uses[use] = uses.get(use, 0) + 1
        parts = ", ".join(f"{n} {use}" for use, n in uses.items())
        left = f"; {len(self.skipped)} job(s) left out (see the notes)" if self.skipped else ""
        which = "" if self.experiment == UNKNOWN_EXPERIMENT else f"{self.experiment}: "
        return f"{which}{len(self.members)} model(s): {parts}{left}"

    def provenance(self) -> dict[str, object]:
        """What the outputs record: the experiment, the jobs used and those left out with why."""
        return {
            "experiment": self.experiment,
            "jobs": [member.as_dict() for member in self.members],
            "left_out": [skipped.as_dict() for skipped in self.skipped],
        }


def _members_of_folder(folder: Path, best_so_far: bool) -> tuple[list[Member], list[Skipped]]:
    jobs = find_job_dirs(folder)
    if folder.name == CHECKPOINT_DIR and not jobs and any(folder.glob(BEST_CHECKPOINT_GLOB)):
        jobs = [folder.parent]  # a job's checkpoints/ folder given itself
    if not jobs:
        raise JobSelectionError(f"{folder}: no checkpoints/ folder with .ckpt files in or below this folder")
    members, skipped = [], []
    for job in jobs:
        experiment = job_experiment(job)
        state = job_state(job)
        if state.status != FINISHED and not best_so_far:
            skipped.append(Skipped(job, state.status, state.reason, _key(experiment)))
            continue
        try:
            best = best_checkpoint(job / CHECKPOINT_DIR)
        except JobSelectionError as error:
            reason = str(error).removeprefix(f"{job / CHECKPOINT_DIR}: ")
            reason = f"{state.reason}; {reason}" if state.reason else reason
            skipped.append(Skipped(job, state.status, reason, _key(experiment)))
            continue
        use = "finished" if state.status == FINISHED else f"best so far ({state.reason})"
        members.append(Member(best, job, experiment, folder, use))
    return members, skipped


def _shown(items: Sequence[str], limit: int = 3) -> str:
    more = f"; and {len(items) - limit} more" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


def collect_members(entries: Iterable[str | os.PathLike[str]], best_so_far: bool = False) -> ModelSet:
    """Every model the ``--ckpt`` entries hand over (files as given; folders: each job's best checkpoint), and the
    jobs left out. A folder that hands over nothing is one line giving each job's state."""
    members: list[Member] = []
    skipped: list[Skipped] = []
    for entry in entries:
        path = Path(entry)
        if path.is_file():
            job = job_of_checkpoint(path)
            members.append(Member(path, job, job_experiment(job) if job else None, path, "given"))
            continue
        if not path.exists():
            raise FileNotFoundError(f"{path}: checkpoint not found")
        if not path.is_dir():
            raise JobSelectionError(f"{path}: {not_regular(path) or 'not a file or folder'}, not a checkpoint")
        found, left_out = _members_of_folder(path, best_so_far)
        if not found:
            states = [f"{s.job}: {s.reason}" for s in left_out]
            unfinished = any(s.status != FINISHED for s in left_out) and not best_so_far
            hint = "; --best-so-far takes the best checkpoint an unfinished job has so far" if unfinished else ""
            raise JobSelectionError(f"{path}: no finished job to use ({_shown(states)}){hint}")
        members += found
        skipped += left_out
    unique: dict[Path, Member] = {}
    for member in members:
        unique.setdefault(member.checkpoint.resolve(), member)
    return ModelSet(list(unique.values()), skipped)


def _mixed(folder: Path, members: Sequence[Member], how: str) -> JobSelectionError:
    by_key: dict[str, list[Member]] = {}
    for member in members:
        by_key.setdefault(member.key, []).append(member)
    listed = ", ".join(f"{key} ({len(ms)} job{'s' if len(ms) != 1 else ''})" for key, ms in by_key.items())
    first, jobs = next(iter(by_key.items()))
    own = _own_folder(folder, jobs, members)
    example = {
        "key": first,
        "folder_hint": f" (or give its folder, --ckpt {own})" if own is not None else "",
        "job": jobs[0].job or jobs[0].checkpoint,
        "folder": own if own is not None else (jobs[0].job or jobs[0].checkpoint),
    }
    return JobSelectionError(f"{folder}: holds {len(by_key)} experiments ({listed}); " + how.format(**example))


def _own_folder(folder: Path, jobs: Sequence[Member], members: Sequence[Member]) -> Path | None:
    """The deepest folder below ``folder`` holding all of ``jobs`` and no other member (None if there is none): a
    ``--ckpt`` that gives exactly this experiment. (Jobs of an experiment with more overrides sit inside the
    variant's folder, so that folder is no answer for the variant's own experiment.)"""
    paths = [m.job for m in jobs if m.job is not None]
    if len(paths) != len(jobs):
        return None
    common = Path(os.path.commonpath([str(p) for p in paths])) if len(paths) > 1 else paths[0].parent
    inside = [m for m in members if m.job is not None and m.job.is_relative_to(common)]
    return common if common != folder and len(inside) == len(jobs) else None


PICK_EXPERIMENT = (
    "an ensemble averages the folds of one experiment: pick one with --experiment {key}{folder_hint}, or pass "
    "--per-experiment for one ensemble each"
)
"""How predict and evaluate say to pick an experiment (``{key}``: the first experiment, ``{folder_hint}``: its own
folder where it has one, ``{job}``: its first job's folder)."""
ONE_MODEL = "an export is one model: give one job's folder or checkpoint (e.g. --ckpt {job})"


def model_sets(
    entries: Iterable[str | os.PathLike[str]],
    *,
    experiment: str | None = None,
    per_experiment: bool = False,
    best_so_far: bool = False,
    how: str = PICK_EXPERIMENT,
) -> list[ModelSet]:
    """The model set(s) the ``--ckpt`` entries give: one (refusing a folder of several experiments, with ``how`` to
    pick one), or one per experiment with ``per_experiment``. ``experiment`` keeps the jobs of that key only."""
    collected = collect_members(entries, best_so_far)
    members, skipped = collected.members, collected.skipped
    if experiment is not None:
        keys = list(dict.fromkeys(m.key for m in members))
        members = [m for m in members if m.key == experiment]
        skipped = [s for s in skipped if s.key == experiment]
        if not members:
            raise JobSelectionError(
                f"--experiment {experiment}: no such experiment here (there are: {', '.join(keys)})"
            )
    if per_experiment:
        keys = list(dict.fromkeys(m.key for m in members))
        return [ModelSet([m for m in members if m.key == key], [s for s in skipped if s.key == key]) for key in keys]
    for given in dict.fromkeys(m.given for m in members):
        from_folder = [m for m in members if m.given == given and m.use != "given"]
        if len({m.key for m in from_folder}) > 1:
            raise _mixed(given, from_folder, how)
    return [ModelSet(members, skipped)]


def resolve_checkpoints(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The checkpoint files of ``paths`` (files, job folders, sweep folders): each folder's finished jobs' best
    checkpoints, of one experiment per folder (``model_sets``)."""
    return model_sets(paths)[0].files


def single_model(source: str | os.PathLike[str], best_so_far: bool = False) -> tuple[Member, ModelSet]:
    """The one model a ``--ckpt`` entry gives (a file, a run folder, a sweep of one finished job), for an export."""
    (chosen,) = model_sets([source], best_so_far=best_so_far, how=ONE_MODEL)
    if len(chosen.members) > 1:
        jobs = [str(member.job or member.checkpoint) for member in chosen.members]
        raise JobSelectionError(
            f"{source}: holds {len(jobs)} jobs of {chosen.experiment} ({_shown(jobs).replace('; ', ', ')}); "
            + ONE_MODEL.format(job=jobs[0])
        )
    return chosen.members[0], chosen

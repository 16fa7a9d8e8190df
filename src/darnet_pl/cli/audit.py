"""`darnet-audit`: can the label be predicted from signals that are not the disease? (a shortcut audit)

    darnet-audit data=ccii data.root=<CC-CCII folder> [audit.threshold=0.8] [audit.out=<dir>]
    darnet-audit data=folder data.scan_list=<CSV> [audit.subset=train] [audit.workers=0]
    darnet-audit --ckpt <checkpoint | run folder | sweep folder> data=ccii data.root=<...>   # does a model use them?

It takes the data options of `darnet-prepare` (conf/audit.yaml composes conf/prepare.yaml), lists the scans as
prepare does (data=synthetic: the phantoms, with their planted shortcut if any), reads cheap per-scan signals
(slice count, in-plane size, file type, the pre-segmented flag where known, border/background, intensity
histogram) and prints, per signal group, the patient-grouped cross-validated one-vs-rest AUC of a simple classifier
for every class (and the macro AUC), and the share of each class the signal alone identifies at precision
``audit.precision``. A probe is flagged for a class whose AUC reaches ``audit.threshold`` or whose identified share
reaches ``audit.partial_threshold``; each flagged signal is then shown per subset of the split (train, fold1..,
test). With ``--ckpt`` (repeatable; a run or sweep folder gives the best checkpoint of every job in it) the
model-level checks follow on the scans of ``audit.model_subset`` (darnet_pl.audit.model_checks): the model's
metrics where the signal points to the class and elsewhere, with bootstrap intervals, and a linear probe of the
signal on the model's features. ``audit.json`` in ``audit.out`` holds every table as rows of plain values. A
flagged probe is a finding, not a failure: the exit code is 0; a user mistake gives one line ``error: ...`` and exit
code 2. Nothing is converted and no cache is written.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from darnet_pl.data.records import ScanRecord
from darnet_pl.runs.layout import AUDIT_JSON

CONFIG_NAME = "audit"
AUDIT_VERSION = 2
"""``audit.json``'s layout: 2 is an object of tables (1 was the list of probes)."""


def load_config(overrides: Sequence[str]) -> DictConfig:
    """conf/audit.yaml with the command-line overrides, through Hydra's compose API (no run folder, no logging)."""
    from hydra import compose, initialize_config_dir

    from darnet_pl.cli.prepare import CONFIG_DIR
    from darnet_pl.config.resolvers import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3", job_name="audit"):
        return compose(config_name=CONFIG_NAME, overrides=list(overrides))


def _settings(audit: DictConfig) -> dict[str, Any]:
    """The ``audit.*`` values, checked: a wrong one is a ``ValueError`` naming the key."""
    for key, what in (
        ("threshold", "an AUC between 0 and 1, e.g. 0.75"),
        ("partial_threshold", "a share of a class between 0 and 1, e.g. 0.1"),
        ("precision", "a precision between 0 and 1, e.g. 0.95"),
        ("level", "a confidence level between 0 and 1, e.g. 0.95"),
    ):
        value = audit[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
            raise ValueError(f"audit.{key}={value}: expected {what}")
    for key in ("bins", "seed", "workers", "bootstrap", "batch_size"):
        if isinstance(audit[key], bool) or not isinstance(audit[key], int):
            raise ValueError(f"audit.{key}={audit[key]}: expected an integer")
    if not 2 <= audit.bins <= 256:
        raise ValueError(f"audit.bins={audit.bins}: expected 2 to 256 bins")
    if audit.bootstrap < 0 or audit.batch_size < 1:
        key = "bootstrap" if audit.bootstrap < 0 else "batch_size"
        raise ValueError(f"audit.{key}={audit[key]}: expected {'0 or more' if key == 'bootstrap' else '1 or more'}")
    size = OmegaConf.to_container(audit.size) if OmegaConf.is_config(audit.size) else audit.size
    if not isinstance(size, list) or len(size) != 3 or not all(isinstance(s, int) and s > 1 for s in size):
        raise ValueError(f"audit.size={size}: expected three integers above 1, [depth,height,width]")
    settings = OmegaConf.to_container(audit)
    return {**settings, "size": size, "out": str(audit.out), "subset": str(audit.subset)}


def list_records(cfg: DictConfig) -> tuple[Any, list[ScanRecord], dict[str, list[ScanRecord]], list[str]]:
    """(source, records, split rows, notes): the scans as ``darnet-prepare`` lists them, and its split's rows
    (``fold1``.., ``test``, ``train``: all folds, ``all``). A source without files (synthetic) lists its records."""
    from darnet_pl.cli.prepare import build_source, split_chunks, with_pooled_training_set

    data = cfg.data
    source = build_source(data)
    notes = []
    excluded: dict[str, str] = {}
    if hasattr(source, "plan"):
        plan = source.plan()
        if plan.problems:
            notes.append(f"{len(plan.problems)} scan(s) cannot be used as found, e.g. {plan.problems[0].cause}")
        if plan.excluded:
            notes.append(f"{len(plan.excluded)} scan(s) left out on purpose, e.g. {next(iter(plan.excluded.values()))}")
        records, excluded = list(plan.records), plan.excluded
    elif hasattr(source, "volume_loader"):
        records = list(source.records())
    else:
        raise ValueError(f"data source {source.describe().get('source')}: no scans to audit")
    subsets, split_notes = split_chunks(data, records, excluded)
    notes += split_notes
    return source, records, with_pooled_training_set(subsets), notes


def pick_rows(rows: dict[str, list[ScanRecord]], name: str, key: str, notes: Sequence[str]) -> list[ScanRecord]:
    """One row of the split, by the name ``audit.<key>`` gives; ValueError naming the rows there are."""
    if name not in rows:
        hint = "; ".join(n for n in notes if n.startswith(("no stratified", "split="))) or f"rows: {', '.join(rows)}"
        raise ValueError(f"audit.{key}={name}: no such row in the split ({hint})")
    if not rows[name]:
        raise ValueError(f"audit.{key}={name}: no scan in that row of the split")
    return rows[name]


def write_audit(folder: str | os.PathLike[str], contents: dict[str, Any]) -> Path:
    """``<folder>/audit.json``, atomically (a temporary file in the same folder, then ``os.replace``)."""
    from darnet_pl.utils.io import storage_guard, write_json_atomic

    path = Path(folder).expanduser() / AUDIT_JSON
    with storage_guard(path, "the audit"):
        return write_json_atomic(path, contents)


@dataclass
class Models:
    """The checkpoints of ``--ckpt``, loaded, and how their models see a scan of the audited source."""

    loaded: list[tuple[Any, Any]]
    load: Any
    device: Any
    records: list[ScanRecord]


def load_models(cfg: DictConfig, settings: dict[str, Any], checkpoints: Sequence[str], source: Any,
                records: list[ScanRecord]) -> Models:  # fmt: skip
    """Every checkpoint loaded and checked against the data, before any scan is read (a mistake costs seconds)."""
    from darnet_pl.audit import checkpoints as models

    device = models.pick_device(settings["device"])
    loaded = models.load_models(checkpoints, list(cfg.data.class_names), device)
    return Models(loaded, models.input_loader(source, loaded[0][1]), device, records)


def model_level(settings: dict[str, Any], models: Models, results: Sequence[Any], notes: list[str]) -> dict[str, Any]:
    """The model-level checks of the loaded checkpoints on their scans (``audit.json`` ``model_checks``)."""
    from darnet_pl.audit.model_checks import model_checks, model_outputs

    names = [str(meta.path) for _, meta in models.loaded]
    records = models.records
    print(f"model checks: {len(names)} checkpoint(s) on {len(records)} scan(s) of {settings['model_subset']}")
    if not any(r.flagged for r in results):
        notes.append("no probe flagged: no model-level check to run")
        return {"checkpoints": names, "subset": settings["model_subset"], "stratified": [], "feature_probes": []}
    progress = sys.stderr.isatty()
    run = model_outputs(models.loaded, records, models.load, settings["batch_size"], models.device, progress)
    if run.problems:
        notes.append(f"{len(run.problems)} scan(s) unreadable for the models, e.g. {run.problems[0]}")
    stratified, probes = model_checks(
        run.outputs, results, records, settings["bootstrap"], settings["seed"], settings["level"]
    )
    return {
        "checkpoints": names,
        "subset": settings["model_subset"],
        "bootstrap": {"resamples": settings["bootstrap"], "level": settings["level"], "unit": "patient"},
        "stratified": stratified,
        "feature_probes": probes,
    }


def audit(cfg: DictConfig, checkpoints: Sequence[str] = ()) -> int:
    """List, read and probe the scans, print the tables, write ``audit.json``; returns the exit code."""
    from darnet_pl.audit.probes import Thresholds, run_probes
    from darnet_pl.audit.signals import audit_preprocessing, collect_signals, known_signals
    from darnet_pl.audit.subsets import subset_rows
    from darnet_pl.audit.tables import model_table, per_class_rows, probe_table, subset_table
    from darnet_pl.utils.io import check_writable

    settings = _settings(cfg.audit)
    source, listed, rows, notes = list_records(cfg)
    records = listed if settings["subset"] == "all" else pick_rows(rows, settings["subset"], "subset", notes)
    models = None
    if checkpoints:  # a wrong row or checkpoint is a mistake to name before any scan is read
        audited = {r.key for r in records}
        chosen = pick_rows(rows, str(settings["model_subset"]), "model_subset", notes)
        model_records = [r for r in chosen if r.key in audited]
        if not model_records:
            raise ValueError(f"audit.model_subset={settings['model_subset']}: none of its scans is audited")
        models = load_models(cfg, settings, checkpoints, source, model_records)
    classes = Counter(r.class_name for r in records)
    patients = len({r.patient_id for r in records})
    mix = ", ".join(f"{c} {n}" for c, n in sorted(classes.items()))
    print(f"audit: {len(records)} scan(s) of {patients} patient(s) ({mix}), subset {settings['subset']}")
    prep = audit_preprocessing(getattr(source, "prep", None), settings["size"])
    check_writable(Path(settings["out"]).expanduser())  # before reading any scan, not after
    loader = None if hasattr(source, "plan") else source.volume_loader()
    scans = collect_signals(
        records, prep, known_signals(source, records), settings["bins"], settings["workers"],
        progress=sys.stderr.isatty(), loader=loader,
    )  # fmt: skip
    unreadable = [s for s in scans if s.problem]
    if unreadable:
        notes.append(f"{len(unreadable)} scan(s) unreadable, left out of some probes, e.g. {unreadable[0].problem}")
        if len(unreadable) == len(scans):
            raise ValueError(f"no scan could be read, e.g. {unreadable[0].problem}")
    limits = Thresholds(settings["threshold"], settings["partial_threshold"], settings["precision"])
    results = run_probes(scans, limits, settings["seed"], settings["bins"])
    split = {name: [r.key for r in rs] for name, rs in rows.items() if name != "all"}
    by_subset = subset_rows(results, split, limits.precision)
    checks = model_level(settings, models, results, notes) if models else None
    for note in notes:
        print(f"note: {note}")
    print(probe_table(results))
    flagged = [f"{r.name} ({', '.join(r.flagged_classes)})" for r in results if r.flagged]
    verdict = f"{len(flagged)} probe(s) flagged" if flagged else "no probe flagged"
    print(
        f"{verdict} (a class's AUC >= {limits.auc:.2f}, or >= {limits.partial:.0%} of a class identified at "
        f"precision >= {limits.precision:.2f})" + (f": {', '.join(flagged)}" if flagged else "")
    )
    if by_subset:
        print("flagged signals per subset of the split:")
        print(subset_table(by_subset))
    if checks and checks["stratified"]:
        print(f"model checks on {settings['model_subset']} (signal points to the class vs elsewhere, "
              f"{settings['level']:.0%} patient bootstrap intervals):")  # fmt: skip
        print(model_table(checks["stratified"], checks["feature_probes"]))
    contents = {
        "version": AUDIT_VERSION,
        "subset": settings["subset"],
        "n_scans": len(records),
        "n_patients": patients,
        "thresholds": {"auc": limits.auc, "partial": limits.partial, "precision": limits.precision},
        "probes": [r.to_dict() for r in results],
        "per_class": per_class_rows(results),
        "subsets": by_subset,
        "model_checks": checks,
    }
    print(f"written: {write_audit(settings['out'], contents)}")
    return 0


def _user_error(error: BaseException) -> BaseException | None:
    """The mistake a user can fix behind ``error``: a bad override, a missing file, an unreadable scan list."""
    from hydra.errors import ConfigCompositionException, OverrideParseException

    from darnet_pl.data.readers.scans import ScanError
    from darnet_pl.utils.errors import user_error_of

    if isinstance(error, ConfigCompositionException | OverrideParseException | ScanError):
        return error
    return user_error_of(error)


def _hydra_line(error: BaseException) -> str | None:
    """Hydra's composition errors in one line, with the hint of their second line (the options of a group)."""
    from hydra.errors import ConfigCompositionException

    if not isinstance(error, ConfigCompositionException):
        return None
    lines = str(error).split("Config search path")[0].splitlines()
    options = [line.strip() for line in lines[1:] if line.startswith("\t")]
    hint = [line.strip() for line in lines[1:2] if line.startswith("To append")]
    if options:
        hint = [f"(options: {', '.join(options)})"]
    return " ".join([lines[0].strip(), *hint]) if lines else None


def split_checkpoints(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """(``--ckpt`` values, the Hydra overrides): ``--ckpt PATH`` and ``--ckpt=PATH``, repeatable."""
    checkpoints, overrides = [], []
    items = iter(args)
    for arg in items:
        if arg == "--ckpt":
            value = next(items, None)
            if value is None or value.startswith("--"):
                raise ValueError("--ckpt needs a checkpoint, run folder or sweep folder")
            checkpoints.append(value)
        elif arg.startswith("--ckpt="):
            checkpoints.append(arg.split("=", 1)[1])
        elif arg.startswith("--"):
            raise ValueError(f"{arg}: unknown option (darnet-audit takes --ckpt and Hydra overrides key=value)")
        else:
            overrides.append(arg)
    return checkpoints, overrides


def main(argv: Sequence[str] | None = None) -> int:
    """Run the audit with Hydra overrides ``argv`` (default: the command line); returns the exit code."""
    from darnet_pl.config.checks import check_data_root
    from darnet_pl.utils.console import Terminated, sigterm_raises
    from darnet_pl.utils.errors import one_line
    from darnet_pl.utils.exit_codes import EXIT_SIGINT, EXIT_SIGTERM, EXIT_USER_ERROR

    args = list(sys.argv[1:] if argv is None else argv)
    if any(arg in ("-h", "--help") for arg in args):
        print(__doc__)
        return 0
    try:
        with sigterm_raises():  # the reader processes are stopped with it (utils.worker_pool)
            checkpoints, overrides = split_checkpoints(args)
            cfg = load_config(overrides)
            check_data_root(cfg)
            return audit(cfg, checkpoints)
    except (KeyboardInterrupt, Terminated) as stop:
        by = "SIGTERM" if isinstance(stop, Terminated) else "Ctrl-C"
        print(f"stopped by {by}: nothing written (audit.json comes at the end); run the command again", file=sys.stderr)
        return EXIT_SIGTERM if isinstance(stop, Terminated) else EXIT_SIGINT
    except Exception as error:
        cause = _user_error(error)
        if cause is None or os.environ.get("DARNET_FULL_ERROR"):
            raise
        print(f"error: {_hydra_line(cause) or one_line(cause)}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())

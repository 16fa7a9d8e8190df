"""`darnet-audit`: can the label be predicted from signals that are not the disease? (a shortcut audit)

    darnet-audit data=ccii data.root=<CC-CCII folder> [audit.threshold=0.8] [audit.out=<dir>]
    darnet-audit data=folder data.scan_list=<CSV> [audit.subset=train] [audit.workers=0]

It takes the data options of `darnet-prepare` (conf/audit.yaml composes conf/prepare.yaml), lists the scans as
prepare does, reads cheap per-scan signals (slice count, in-plane size, file type, the pre-segmented flag where
known, border/background, intensity histogram) and prints, per signal group, the patient-grouped cross-validated
AUC of a simple classifier, flagging any at or above ``audit.threshold``. ``audit.json`` in ``audit.out`` lists
the probes. A flagged probe is a finding, not a failure: the exit code is 0; a user mistake gives one line
``error: ...`` and exit code 2. Nothing is converted and no cache is written.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from darnet_pl.data.records import ScanRecord
from darnet_pl.runs.layout import AUDIT_JSON

CONFIG_NAME = "audit"


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
    threshold = audit.threshold
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 < threshold <= 1:
        raise ValueError(f"audit.threshold={threshold}: expected an AUC between 0 and 1, e.g. 0.8")
    for key in ("bins", "seed", "workers"):
        if isinstance(audit[key], bool) or not isinstance(audit[key], int):
            raise ValueError(f"audit.{key}={audit[key]}: expected an integer")
    if not 2 <= audit.bins <= 256:
        raise ValueError(f"audit.bins={audit.bins}: expected 2 to 256 bins")
    size = OmegaConf.to_container(audit.size) if OmegaConf.is_config(audit.size) else audit.size
    if not isinstance(size, list) or len(size) != 3 or not all(isinstance(s, int) and s > 1 for s in size):
        raise ValueError(f"audit.size={size}: expected three integers above 1, [depth,height,width]")
    settings = OmegaConf.to_container(audit)
    return {**settings, "size": size, "threshold": float(threshold), "out": str(audit.out), "subset": str(audit.subset)}


def list_records(cfg: DictConfig, subset: str = "all") -> tuple[Any, list[ScanRecord], list[str]]:
    """(source, records, notes): the scans as ``darnet-prepare`` lists them, optionally one row of its split."""
    from darnet_pl.cli.prepare import build_source, split_chunks, with_pooled_training_set

    data = cfg.data
    source = build_source(data)
    if not hasattr(source, "plan"):
        raise ValueError(f"data source {source.describe().get('source')}: no scan files to audit (data=folder or ccii)")
    plan = source.plan()
    notes = []
    if plan.problems:
        notes.append(f"{len(plan.problems)} scan(s) cannot be used as found, e.g. {plan.problems[0].cause}")
    if plan.excluded:
        notes.append(f"{len(plan.excluded)} scan(s) left out on purpose, e.g. {next(iter(plan.excluded.values()))}")
    records = list(plan.records)
    if subset != "all":
        subsets, split_notes = split_chunks(data, records, plan.excluded)
        rows = with_pooled_training_set(subsets)
        if subset not in rows:
            hint = "; ".join(split_notes) or f"rows are {', '.join(rows)}"
            raise ValueError(f"audit.subset={subset}: no such row in the split ({hint})")
        records = rows[subset]
    if not records:
        raise ValueError(f"no scan to audit in {subset}: {source.describe()}")
    return source, records, notes


def write_audit(folder: str | os.PathLike[str], results: Sequence[Any]) -> Path:
    """``<folder>/audit.json``, atomically (a temporary file in the same folder, then ``os.replace``)."""
    from darnet_pl.utils.io import storage_guard, write_json_atomic

    path = Path(folder).expanduser() / AUDIT_JSON
    with storage_guard(path, "the audit"):
        return write_json_atomic(path, [r.to_dict() for r in results])


def audit(cfg: DictConfig) -> int:
    """List, read and probe the scans, print the table, write ``audit.json``; returns the exit code."""
    from darnet_pl.audit.probes import format_table, run_probes
    from darnet_pl.audit.signals import audit_preprocessing, collect_signals, segmented_flags
    from darnet_pl.utils.io import check_writable

    settings = _settings(cfg.audit)
    source, records, notes = list_records(cfg, str(settings["subset"]))
    classes = Counter(r.class_name for r in records)
    patients = len({r.patient_id for r in records})
    mix = ", ".join(f"{c} {n}" for c, n in sorted(classes.items()))
    print(f"audit: {len(records)} scan(s) of {patients} patient(s) ({mix}), subset {settings['subset']}")
    prep = audit_preprocessing(getattr(source, "prep", None), settings["size"])
    check_writable(Path(settings["out"]).expanduser())  # before reading any scan, not after
    segmented = segmented_flags(source, records)
    scans = collect_signals(
        records, prep, segmented, settings["bins"], settings["workers"], progress=sys.stderr.isatty()
    )
    unreadable = [s for s in scans if s.problem]
    if unreadable:
        notes.append(f"{len(unreadable)} scan(s) unreadable, left out of some probes, e.g. {unreadable[0].problem}")
        if len(unreadable) == len(scans):
            raise ValueError(f"no scan could be read, e.g. {unreadable[0].problem}")
    results = run_probes(scans, settings["threshold"], settings["seed"], settings["bins"])
    for note in notes:
        print(f"note: {note}")
    print(format_table(results))
    flagged = [r.name for r in results if r.flagged]
    verdict = f"{len(flagged)} probe(s) at or above" if flagged else "no probe reaches"
    print(f"{verdict} AUC {settings['threshold']:.2f}" + (f": {', '.join(flagged)}" if flagged else ""))
    print(f"written: {write_audit(settings['out'], results)}")
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
            cfg = load_config(args)
            check_data_root(cfg)
            return audit(cfg)
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

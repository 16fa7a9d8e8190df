"""``--help`` of the Hydra apps (``python -m darnet_pl``, ``darnet-prepare``), generated from ``conf/``.

Hydra's default help dumps the whole composed config and every config group of the search path, including groups
an app never reads. These texts say what the app does, list what it reads with one line each, and point to the
docs; ``--cfg job`` still prints the full config. The experiments and group options are read from the files in
``conf/`` (an experiment's ``# description:`` line), so the help cannot drift from what is installed.
"""

from __future__ import annotations

from pathlib import Path

from darnet_pl.utils.package_files import CONF_DIR, PACKAGE_DIR

DESCRIPTION_TAG = "# description:"


def experiment_descriptions(conf_dir: Path = CONF_DIR) -> dict[str, str]:
    """name -> one line, from each ``conf/experiment/<name>.yaml``: its ``# description:`` line, else the first
    line of its header comment."""
    described = {}
    for path in sorted((conf_dir / "experiment").glob("*.yaml")):
        comments = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.startswith("#"):
                break
            comments.append(line)
        tagged = [c[len(DESCRIPTION_TAG) :].strip() for c in comments if c.startswith(DESCRIPTION_TAG)]
        plain = [c.lstrip("# ").strip() for c in comments if "@package" not in c and c.lstrip("# ").strip()]
        described[path.stem] = (tagged or plain or [""])[0]
    return described


def group_options(group: str, conf_dir: Path = CONF_DIR) -> list[str]:
    """The options of config group ``group`` (``data`` -> ``ccii, folder, synthetic``)."""
    return sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))


def docs_location() -> str:
    readme = PACKAGE_DIR.parents[1] / "README.md"  # a source checkout (editable install)
    if readme.is_file():
        return f"{readme} and {readme.parent / 'docs'}/"
    return "README.md and docs/ of the darnet-pl repository"


def _rows(rows: list[tuple[str, str]], indent: int = 2) -> list[str]:
    width = max(len(left) for left, _ in rows) + 2
    return [" " * indent + f"{left:<{width}}{right}".rstrip() for left, right in rows]


def _choices(group: str) -> str:
    return " | ".join(group_options(group))


def train_help() -> str:
    experiments = experiment_descriptions()
    keys = [
        ("fold=K", "the cross-validation fold (0-based); fold=0..4 -m runs one job per fold"),
        ("model.attention=...", "none | ca | da | dual (the ablation's variants)"),
        ("data=...", f"{_choices('data')}; data.root=<CC-CCII folder>, data.scan_list=<your CSV>"),
        ("trainer=...", f"{_choices('trainer')}; trainer.max_epochs=N"),
        ("debug=...", "fdr: one batch through everything | tiny: a seconds-long real training"),
        ("logger=...", f"{_choices('logger')} (wandb runs offline)"),
        ("model.optimizer.lr=X", "and other optimiser/scheduler settings (model.optimizer.*, model.scheduler.*)"),
        ("seed=N, deterministic=true", "the training seed; bit-identical reruns on CPU"),
        ("paths.log_dir=<folder>", "where runs and sweeps go (default ./outputs, or DARNET_LOG_DIR)"),
        ("redo=true, ckpt_path=<file>", "run a finished sweep job again; resume or start from a checkpoint"),
        ("verbose=true", "every library's messages on the console (the run's log file always has them)"),
        ("hydra/launcher=...", "local_parallel | slurm: a sweep's jobs on several GPUs or a SLURM cluster"),
    ]
    lines = [
        "darnet-pl: DARNet, the dual-attention 3D ResNet-18 of Shi et al., tells COVID-19 from common pneumonia (CP)",
        "and healthy lungs in 3D chest CT. A run trains, keeps the checkpoint best on validation and tests it on the",
        "independent test set; a sweep (-m) runs folds and variants and ends with a Table IV report.",
        "",
        "usage: python -m darnet_pl experiment=NAME [KEY=VALUE ...] [-m]",
        "",
        "experiments (experiment=NAME, or +experiment=NAME):",
        *_rows([(name, text) for name, text in experiments.items()]),
        "",
        "keys you change most:",
        *_rows(keys),
        "",
        "--cfg job prints the composed config (every key; add overrides to see their effect), --info Hydra's",
        "search path and defaults, --hydra-help Hydra's own options. Errors: one 'error:' line, exit code 2.",
        f"docs: {docs_location()}",
    ]
    return "\n".join(lines)


def prepare_help() -> str:
    keys = [
        ("data=...", f"{_choices('data')} (default ccii)"),
        ("data.root=<folder>", "data=ccii: the CC-CCII download (or DARNET_CCII_ROOT)"),
        ("data.scan_list=<CSV>", "data=folder: your scans, path,label,patient_id[,scan_id]"),
        ("data.cache_dir=<folder>", "where volumes go (default <data_dir>/cache; data_dir: ./data or DARNET_DATA_DIR)"),
        ("data.size=[D,H,W]", "the volume size (default 64x224x224); depth_interpolation=linear|nearest|antialias"),
        ("data.split=paper|stratified", "the split printed; data.split_manifest=<CSV> for your own"),
        ("data.source.workers=N", "conversion processes (-1: one per core, 0: in this process)"),
        ("data.source.strict=true", "stop at the first unusable scan (default: report it, leave it out)"),
        ("+dry_run=true", "print the split only, from the index files, without reading an image"),
    ]
    lines = [
        "darnet-prepare: convert a dataset (CC-CCII, or your own scans) into the volume cache training reads, once",
        "and up front; prints the split (scans and patients per chunk and class) before converting anything.",
        "",
        "usage: darnet-prepare data=ccii|folder [KEY=VALUE ...]",
        "",
        "what it reads:",
        *_rows(keys),
        "",
        "--cfg job prints every data setting it would use. Errors: one 'error:' line, exit code 2.",
        f"docs: {docs_location()} (how-to/ccii.md, how-to/own-scans.md)",
    ]
    return "\n".join(lines)


HELP = {"train": train_help, "prepare": prepare_help}


def help_text(app: str) -> str:
    """The help of ``app`` for Hydra's ``hydra.help.template`` (a string.Template: a literal ``$`` is ``$$``)."""
    return HELP[app]().replace("$", "$$")

"""The model card of a trained DARNet (a bundle's ``docs/README.md``), rendered from plain data only.

``render_model_card(members, report=None, test_metrics=(), commands=())`` takes what a caller has already read -
each member checkpoint's metadata (``CheckpointMetadata.to_dict()``), optionally the ``report.json`` of
``darnet-report`` and the members' ``test_metrics.json`` dictionaries and training commands - and returns Markdown.
``render_recipe_card(report)`` makes the card of a recipe from its ``report.json`` alone (``darnet-model-card``:
the records of ``experiments/`` keep no checkpoints). Neither opens a file or imports torch; both share the
sections, in the order of a MONAI bundle's ``docs/README.md``.

The card says what the model is for (research on the paper's task, not diagnosis), what it was trained on and the
known shortcut of that data (CC-CCII's Normal class is mostly supplied already lung-segmented, so a model can
separate Normal by that alone: ``+experiment=shortcut_control`` is the control), its metrics as measured, its
limitations and how it was made.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

HEADLINE = (
    ("3class/auc_macro", "AUC (3 classes, macro)"),
    ("3class/accuracy", "accuracy (3 classes)"),
    ("2class/auc", "AUC (COVID-19 vs rest)"),
    ("2class/sensitivity", "sensitivity (COVID-19 vs rest)"),
    ("2class/specificity", "specificity (COVID-19 vs rest)"),
)

SHORTCUT = (
    "CC-CCII supplies 766 scans already lung-segmented (`is_seg` in He et al.'s cleaned list), among them 606 Normal "
    "patients (ids 1796-2666, one scan each): most of the Normal class. Segmented and unsegmented scans look very "
    "different, and here that difference lines up with the label, so a 3D model can learn it instead of the "
    "disease. A model trained on raw CC-CCII may call any lung-segmented scan Normal and any unsegmented one "
    "not Normal. `+experiment=shortcut_control` (`data.source.exclude_segmented=true`) trains without them; read "
    "its Normal figures with its small Normal test set in mind (49 patients)."
)


def _number(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.4f}"


def _describe_data(source: Mapping[str, Any]) -> list[str]:
    kind = str(source.get("source") or "unknown")
    if kind == "synthetic":
        return [
            "Synthetic chest CT phantoms rendered by this package (`data=synthetic`): bilateral peripheral "
            "ground-glass opacities for COVID-19, dense mostly unilateral consolidation for CP, none for Normal. "
            "No patient data. A model trained on them has learned the phantoms, not real CT: it is a test "
            "artefact and says nothing about real scans."
        ]
    if kind == "ccii":
        cleaning = "with" if source.get("apply_cleaning") else "without"
        segmented = "left out" if source.get("exclude_segmented") else "kept (the paper's protocol)"
        return [
            "CC-CCII (China Consortium of Chest CT Image Investigation, http://ncov-ai.big.ac.cn/download): 8-bit "
            "slice images already windowed, three classes CP, NCP (COVID-19) and Normal, the DARNet paper's "
            f"patient-level split; {cleaning} He et al.'s cleaning list; lung-segmented scans {segmented}.",
            f"**Known shortcut.** {SHORTCUT}",
        ]
    return [f"Source `{kind}`: {dict(source)}. Check its provenance and labels before trusting the metrics."]


def _metrics_from_report(report: Mapping[str, Any]) -> list[str]:
    lines = []
    for group in report.get("groups") or []:
        folds = group.get("fold_metrics") or {}
        name = f"{group.get('method', 'DARNet')} ({group.get('n_folds', '?')} fold(s), {group.get('dataset', '?')})"
        lines.append(f"- {name}, test set, mean ± std over folds:")
        for key, label in HEADLINE:
            stat = folds.get(key) or {}
            if stat.get("mean") is not None:
                lines.append(f"  - {label}: {_number(stat['mean'])} ± {_number(stat.get('std'))}")
        ensemble = group.get("ensemble") or {}
        if ensemble.get("metrics"):
            ci = ensemble.get("ci") or {}
            lines.append(f"  - fold ensemble ({ensemble.get('n_models', '?')} models, mean softmax):")
            for key, label in HEADLINE:
                value = ensemble["metrics"].get(key)
                if value is not None:
                    interval = ci.get(key)
                    bounds = f" [{_number(interval[0])}, {_number(interval[1])}]" if interval else ""
                    lines.append(f"    - {label}: {_number(value)}{bounds}")
    return lines


def _metrics_from_runs(test_metrics: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = []
    for key, label in HEADLINE:
        values = [m.get(f"test/{key}") for m in test_metrics]
        values = [float(v) for v in values if v is not None]
        if not values:
            continue
        if len(values) == 1:
            lines.append(f"- {label}: {_number(values[0])}")
        else:
            spread = statistics.stdev(values)
            lines.append(f"- {label}: {_number(statistics.mean(values))} ± {_number(spread)} ({len(values)} models)")
    return lines


def _intended_use(classes: Sequence[str]) -> list[str]:
    return [
        "## Intended use",
        "",
        "**Research only - not for clinical diagnosis.** This model reproduces a published method (DARNet, Shi et al., "
        "dual-attention 3D ResNet-18) to study it: how it classifies chest CT into "
        f"{', '.join(classes)} (CP: common pneumonia, NCP: COVID-19, Normal: healthy), how it fails, and what it "
        "attends to. It has not been validated prospectively, on other scanners or hospitals, or against "
        "radiologists; its output is not a diagnosis and must not be used to decide care.",
        "",
    ]


LIMITATIONS = (
    "- Trained and tested on one data set: test metrics say how it does on more scans like those, not on "
    "other hospitals, scanners, protocols or populations. Evaluate it on yours (`darnet-evaluate`) first.",
    "- Three classes only: any other finding (tumour, fibrosis, another infection) is forced into one of them.",
    "- The input is resampled to a fixed grid without regard to voxel spacing, and intensities go through a "
    "fixed window: scans far from the training data's field of view, slice count or reconstruction kernel "
    "may be read differently.",
    "- Class activation maps (`darnet-predict --cam`) show coarse regions (the last stage is D/8 x H/16 x "
    "W/16), not lesion outlines.",
)
# report.json names a job's data by its source (report.collect.dataset_of): CC-CCII as "ccii", others by class
REPORT_SOURCES = {"ccii": "ccii", "SyntheticSource": "synthetic", "FolderSource": "folder"}


def _metrics_section(metric_lines: list[str]) -> list[str]:
    lines = ["## Metrics", ""]
    if metric_lines:
        lines.extend(["Measured on the held-out test set of the training data (never used for selection):", ""])
        lines.extend(metric_lines)
    else:
        lines.append("No test metrics were found beside the checkpoint(s): this model has not been evaluated here.")
    return [*lines, "", "## Limitations", "", *LIMITATIONS, ""]


def _fold_text(folds: Sequence[int]) -> str:
    folds = sorted(set(folds))
    if len(folds) > 1 and folds == list(range(folds[0], folds[-1] + 1)):
        return f"fold={folds[0]}..{folds[-1]} -m"
    return f"fold={','.join(map(str, folds))}" + (" -m" if len(folds) > 1 else "")


def recipe_commands(report: Mapping[str, Any]) -> list[str]:
    """The training commands of a report's jobs, rebuilt from what ``report.json`` records of each: its recipe
    (``task_name``), the overrides that define its experiment (older reports list the recipe among them) and its
    fold. The variants a recipe sweeps itself (the ablation's) are the recipe's, not overrides."""
    folds: dict[tuple[str, ...], list[int]] = {}
    for job in report.get("jobs") or []:
        kept = [o for o in job.get("overrides") or () if o.lstrip("+~").split("=", 1)[0] != "experiment"]
        command = (f"+experiment={job['task_name']}",) if job.get("task_name") else ()
        folds.setdefault((*command, *kept), []).append(int(job.get("fold", 0)))
    return [f"python -m darnet_pl {' '.join(overrides)} {_fold_text(found)}" for overrides, found in folds.items()]


def render_recipe_card(report: Mapping[str, Any], title: str | None = None) -> str:
    """Markdown model card of a recipe's models from its ``report.json`` alone (no checkpoint metadata: the
    architecture and preprocessing of each checkpoint are in a bundle's card, ``darnet-export --format bundle``)."""
    groups = list(report.get("groups") or [])
    if not groups:
        raise ValueError("report.json holds no result (no groups): run darnet-report on finished jobs first")
    jobs = list(report.get("jobs") or [])
    tasks = sorted({str(job.get("task_name")) for job in jobs if job.get("task_name")})
    classes = list(report.get("class_names") or [])
    first = groups[0]
    source = {
        "source": REPORT_SOURCES.get(str(first.get("dataset")), str(first.get("dataset"))),
        "exclude_segmented": first.get("condition") == "shortcut_control",
    }
    lines = [f"# {title or 'DARNet chest CT classifier: recipe ' + ', '.join(tasks or ['unknown'])}", ""]
    lines += _intended_use(classes)
    lines += ["## Model", ""]
    for group in groups:
        test = group.get("test_set") or {}
        scans = sum((test.get("scans") or {}).values())
        patients = sum((test.get("patients") or {}).values())
        lines.append(
            f"- {group.get('method')} (attention `{group.get('variant')}`): {group.get('n_folds')} fold model(s), "
            f"tested on {scans} scans of {patients} patients"
        )
    lines += [
        "",
        f"Classes in output order: {classes} (positive class of the two-class metrics: "
        f"{report.get('positive_class')}). Each checkpoint carries its architecture and preprocessing; a bundle "
        "made with `darnet-export --format bundle` lists them in its own card.",
        "",
        "## Training data",
        "",
        *_describe_data(source),
        "",
    ]
    boot = report.get("bootstrap") or {}
    metric_lines = _metrics_from_report(report)
    if metric_lines and boot:
        metric_lines += [
            "",
            f"Brackets: {boot.get('method')} {float(boot.get('level', 0.95)):.0%} bootstrap intervals over "
            f"{boot.get('unit')}s ({boot.get('resamples')} resamples).",
        ]
    lines += _metrics_section(metric_lines)
    lines += ["## How it was made and how to run it", ""]
    lines += ["Training command(s), from the jobs `report.json` records:", "", "```bash", *recipe_commands(report)]
    lines += ["```", "", f"Report written {report.get('created')} by `darnet-report`."]
    return "\n".join(lines).rstrip() + "\n"


def render_model_card(
    members: Sequence[Mapping[str, Any]],
    report: Mapping[str, Any] | None = None,
    test_metrics: Sequence[Mapping[str, Any]] = (),
    commands: Sequence[str] = (),
    title: str = "DARNet chest CT classifier",
    how_to_run: Sequence[str] = (),
) -> str:
    """Markdown model card of a model made of ``members`` (checkpoint metadata dictionaries, one per model)."""
    if not members:
        raise ValueError("a model card needs the metadata of at least one checkpoint")
    first = members[0]
    classes = list(first.get("class_names") or [])
    prep = dict(first.get("preprocessing") or {})
    variants = sorted({str(m.get("attention")) for m in members})
    temperatures = [float(m.get("temperature", 1.0)) for m in members]
    lines = [
        f"# {title}",
        "",
        *_intended_use(classes),
        "## Model",
        "",
        f"- DARNet, attention {', '.join(variants)}, width {first.get('width')}, input "
        f"{first.get('in_channels', 1)} x {' x '.join(str(s) for s in first.get('input_size', []))} (D x H x W), "
        f"{len(members)} checkpoint(s)" + (" averaged (mean softmax)" if len(members) > 1 else "") + ".",
        f"- Output: class probabilities in the order {classes} (softmax of logits divided by a temperature fitted "
        f"on validation: {', '.join(f'{t:g}' for t in temperatures)}; 1 = none).",
        f"- Preprocessing (stored in the checkpoint, origin `{first.get('preprocessing_origin')}`): {prep}.",
        "",
        "## Training data",
        "",
        *_describe_data(first.get("source") or {}),
        "",
    ]
    metric_lines = _metrics_from_report(report) if report else _metrics_from_runs(test_metrics)
    lines.extend(_metrics_section(metric_lines))
    lines.extend(["## How it was made and how to run it", ""])
    if commands:
        lines.extend(["Training command(s):", "", "```bash", *commands, "```", ""])
    for member in members:
        epoch = member.get("epoch")
        lines.append(f"- checkpoint `{member.get('path')}`" + (f" (epoch {epoch})" if epoch is not None else ""))
    if how_to_run:
        lines.extend(["", *how_to_run])
    return "\n".join(lines).rstrip() + "\n"

"""The report beside the paper: Table IV's own figures as rows and in/out marks on CC-CCII sweeps only, the shortcut
control's rows beside the raw ones (two sweeps, or their common parent) with its test set's patients per class, and
the patient-level block, Brier score and ECE of the fold ensemble.

Expected numbers are worked out here by hand (the paper's figures typed from the paper, joins of the CSVs in plain
Python, scikit-learn), never taken from the report's helpers.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from darnet_pl.cli.report import main
from darnet_pl.report import paper_table_iv
from darnet_pl.report.writer import write_report
from tests.helpers.report_jobs import (
    CCII_SOURCE,
    CLASSES,
    SYNTHETIC_SOURCE,
    cohort,
    model_probs,
    reference_metrics,
    write_job,
)

PAPER_TEXT = Path(__file__).resolve().parents[3] / "shared" / "paper" / "darnet-paper.txt"
# The table's columns in the CSV, and the decimals the paper prints them with (in the CSV's units).
CSV_COLUMNS = {"auc": 4, "accuracy_pct": 2, "sensitivity_pct": 2, "specificity_pct": 2, "f1_pct": 2}
# Planted fold values of DARNet (dual) against the paper's 0.9950±0.0020 AUC, 93.28±0.85 accuracy, 96.86±0.81
# sensitivity (2class), 92.92±1.09 macro F1 (3class).
PLANTED = {
    "2class/auc": ((0.9940, 0.9950, 0.9960), True),  # mean 0.9950: inside
    "3class/accuracy": ((0.9243, 0.9243, 0.9243), True),  # 92.43 = 93.28 - 0.85: on the bound, inside
    "2class/sensitivity": ((0.90, 0.91, 0.92), False),  # 91.00: far below 96.05
    "3class/f1_macro": ((0.9402, 0.9402, 0.9402), False),  # 94.02 > 92.92 + 1.09 = 94.01: just outside
}


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def _ccii_sweep(root: Path, variants=("none", "ca", "da", "dual"), folds: int = 3, **job) -> Path:
    scans = cohort(10, seed=0)
    for v, variant in enumerate(variants):
        for fold in range(folds):
            planted = {k: values[fold] for k, (values, _) in PLANTED.items()} if variant == "dual" else None
            write_job(
                root / variant / f"fold{fold}",
                variant,
                fold,
                model_probs(scans, seed=10 * v + fold, strength=3.0),
                scans,
                seed=fold,
                experiment="ablation",
                metrics=planted,
                **job,
            )
    return root


@pytest.fixture(scope="module")
def ccii(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = _ccii_sweep(tmp_path_factory.mktemp("ccii") / "sweep", source=CCII_SOURCE)
    write_report(root, n_bootstrap=0, make_plots=False)
    return root / "report"


def test_paper_rows_are_the_papers_table_iv_for_each_variant(ccii: Path) -> None:
    markdown = (ccii / "table_iv.md").read_text()
    # as printed in the paper (Table IV), each above our rows of the same variant
    printed = (  # block, name, the paper's cells
        ("2", "DARNet (w/o DA and CA)", "0.9938±0.0024 91.32±1.87 95.52±1.07 97.15±1.28 94.86±1.21"),
        ("2", "DARNet (w/o DA)", "0.9926±0.0024 92.13±1.90 94.65±1.86 97.88±1.28 95.04±0.49"),
        ("2", "DARNet (w/o CA)", "0.9923±0.0024 92.55±0.51 95.25±0.73 97.72±1.15 95.20±0.89"),
        ("2", "DARNet", "0.9950±0.0020 93.28±0.85 96.86±0.81 97.19±1.08 95.49±1.15"),
        ("3", "DARNet (w/o DA and CA)", "0.9850±0.0041 91.32±1.87 90.34±3.85 95.32±1.88 90.74±2.44"),
        ("3", "DARNet", "0.9879±0.0028 93.28±0.85 93.03±1.85 96.56±0.99 92.92±1.09"),
    )
    blocks = markdown.split("**Three classes")
    for block, name, cells in printed:
        label = f"{name[:-1]}; paper)" if name.endswith(")") else f"{name} (paper)"
        line = f"| {label} | paper, 5 folds | " + " | ".join(cells.split()) + " |"
        assert line in blocks[0 if block == "2" else 1], line
    first_block = markdown.split("**Three classes")[0].splitlines()
    two_class = [line.split(" | ")[0].lstrip("| ") for line in first_block if line.startswith("| DARNet")]
    assert two_class.index("DARNet (paper)") == two_class.index("DARNet") - 1
    assert two_class.index("DARNet (w/o DA; paper)") == two_class.index("DARNet (w/o DA)") - 1

    rows = _read_csv(ccii / "table_iv.csv")
    paper = [r for r in rows if r["kind"] == "paper"]
    assert len(paper) == 8 and {r["variant"] for r in paper} == {"none", "ca", "da", "dual"}
    ca = next(r for r in paper if r["variant"] == "ca" and r["block"] == "3class")  # ca: channel attention only
    assert (ca["method"], float(ca["auc"]), float(ca["auc_std"])) == ("DARNet (w/o DA; paper)", 0.9854, 0.0047)
    da = next(r for r in paper if r["variant"] == "da" and r["block"] == "2class")
    assert (da["method"], float(da["f1_pct"]), float(da["f1_pct_std"])) == ("DARNet (w/o CA; paper)", 95.20, 0.89)
    assert all(r["n"] == "5" and r["auc_within_paper"] == "" for r in paper)

    tex = (ccii / "table_iv.tex").read_text()
    assert r"DARNet (w/o DA and CA; paper) & paper, 5 folds & 0.9938$\pm$0.0024 & 91.32$\pm$1.87" in tex
    assert r"$\surd$" in tex and r"$\times$" in tex and "✓" not in tex
    report = json.loads((ccii / "report.json").read_text())
    kinds = [r["kind"] for r in report["table"]["rows"]]
    assert kinds.count("paper") == 4 and report["paper"]["source"].startswith("Table IV")


def test_within_marks_of_planted_fold_means(ccii: Path) -> None:
    report = json.loads((ccii / "report.json").read_text())
    dual = next(g for g in report["groups"] if g["variant"] == "dual")
    comparison = dual["paper"]["comparison"]
    for key, (values, inside) in PLANTED.items():
        assert dual["fold_metrics"][key]["mean"] == pytest.approx(np.mean(values), abs=1e-12)
        assert comparison[key]["within_paper"] is inside, key
    markdown = (ccii / "table_iv.md").read_text()
    std = np.std([0.9940, 0.9950, 0.9960], ddof=1)
    assert f"| DARNet | 3 folds | 0.9950±{std:.4f} ✓ | 92.43±0.00 ✓ | 91.00±1.00 ✗ |" in markdown
    three = next(r for r in _read_csv(ccii / "table_iv.csv") if r["block"] == "3class" and r["method"] == "DARNet")
    assert three["f1_pct_within_paper"] == "out" and three["accuracy_pct_within_paper"] == "in"
    lines = {(r["method"], r["metric"]): r for r in _read_csv(ccii / "paper_comparison.csv")}
    sens = lines[("DARNet", "2class/sensitivity")]
    assert float(sens["ours"]) == pytest.approx(91.0) and float(sens["paper_mean"]) == 96.86
    assert float(sens["difference"]) == pytest.approx(91.0 - 96.86) and sens["within_paper"] == "out"
    assert "✓ / ✗: our fold mean lies inside / outside the paper's mean ± std" in markdown


def test_every_mark_agrees_with_the_papers_row_in_the_same_table(ccii: Path) -> None:
    """In the CSV, each fold row's in/out, recomputed from its own numbers and the paper row beside it."""
    rows = _read_csv(ccii / "table_iv.csv")
    checked = 0
    for row in (r for r in rows if r["kind"] == "folds"):
        same = (row["block"], row["variant"])
        paper = next(r for r in rows if r["kind"] == "paper" and (r["block"], r["variant"]) == same)
        for column, decimals in CSV_COLUMNS.items():
            ours = round(float(row[column]), decimals)
            low = round(float(paper[column]) - float(paper[f"{column}_std"]), decimals)
            high = round(float(paper[column]) + float(paper[f"{column}_std"]), decimals)
            assert row[f"{column}_within_paper"] == ("in" if low <= ours <= high else "out"), (row["method"], column)
            checked += 1
    assert checked == 4 * 2 * 5
    ensemble = [r for r in rows if r["kind"] == "ensemble"]
    assert ensemble and all(r[f"{c}_within_paper"] == "" for r in ensemble for c in CSV_COLUMNS)


def test_a_job_without_a_data_source_is_ccii_by_its_experiment(tmp_path: Path) -> None:
    root = _ccii_sweep(tmp_path / "sweep", variants=("dual",), folds=2)  # task_name ablation, no data.source
    result = write_report(root, n_bootstrap=0, make_plots=False)
    assert [r["kind"] for r in result.report["table"]["rows"]] == ["paper", "folds", "ensemble"]
    assert result.report["groups"][0]["dataset"] == "ccii"
    assert "paper: " in result.summary and "fold means inside the paper's mean ± std" in result.summary


@pytest.mark.parametrize("source", [SYNTHETIC_SOURCE, None], ids=["synthetic", "smoke-no-source"])
def test_a_synthetic_sweep_gets_no_paper_rows_or_marks(tmp_path: Path, source: str | None) -> None:
    scans = cohort(8, seed=2)
    for variant in ("none", "dual"):
        for fold in range(2):
            probs = model_probs(scans, seed=fold)
            # "ablation" as task name but a synthetic source: the source decides
            experiment = "smoke_ablation" if source is None else "ablation"
            write_job(
                tmp_path / variant / f"fold{fold}", variant, fold, probs, scans, experiment=experiment, source=source
            )
    result = write_report(tmp_path, n_bootstrap=0, make_plots=False)
    out = tmp_path / "report"
    assert "paper" not in {r["kind"] for r in result.report["table"]["rows"]}
    assert result.report["paper"] is None and all(g["paper"] is None for g in result.report["groups"])
    assert not (out / "paper_comparison.csv").exists() and "paper_comparison.csv" not in result.report["files"]
    markdown = (out / "table_iv.md").read_text()
    assert "(paper)" not in markdown and "Rows marked paper" not in markdown
    assert "✓" not in markdown and "✗" not in markdown
    assert all(r[f"{c}_within_paper"] == "" for r in _read_csv(out / "table_iv.csv") for c in CSV_COLUMNS)
    assert "paper:" not in result.summary


def test_paper_table_iv_module_is_the_papers_table() -> None:
    """The transcription against the paper's text, where the paper is at hand."""
    if not PAPER_TEXT.is_file():
        pytest.skip(f"{PAPER_TEXT}: the paper's text is not in this checkout")
    text = PAPER_TEXT.read_text(encoding="utf-8")
    table = text[text.index("TABLE IV") :]
    names = {"none": "DARNet (w/o DA and CA)", "ca": "DARNet (w/o DA)", "da": "DARNet (w/o CA)", "dual": "DARNet"}
    lines = re.findall(r"^(DARNet[^\t]*)\t(.+)$", table, flags=re.MULTILINE)[:8]
    macro = ("auc_macro", "accuracy", "sensitivity_macro", "specificity_macro", "f1_macro")
    keys = {
        0: ("2class/auc", "3class/accuracy", "2class/sensitivity", "2class/specificity", "2class/f1"),
        1: tuple(f"3class/{name}" for name in macro),
    }
    for i, (name, cells) in enumerate(lines):
        variant = next(v for v, n in names.items() if n == name.strip())
        refs = paper_table_iv.reference(variant)
        for key, cell, scale in zip(keys[i // 4], cells.split("\t"), (1, 100, 100, 100, 100), strict=True):
            mean, std = (float(x) for x in cell.split("±"))
            assert refs[key].mean * scale == pytest.approx(mean, abs=1e-9), (name, key)
            assert refs[key].std * scale == pytest.approx(std, abs=1e-9), (name, key)


# --- the shortcut control ----------------------------------------------------------------------------------------


def _control_scans(scans):
    """The control drops most Normal patients (pre-segmented in CC-CCII) and keeps the rest."""
    return [s for s in scans if not (s[2] == 2 and int(s[0][-4:]) % 4 != 0)]


@pytest.fixture(scope="module")
def two_sweeps(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list, list]:
    outputs = tmp_path_factory.mktemp("outputs")
    scans = cohort(12, seed=4)
    control = _control_scans(scans)
    raw_root, control_root = outputs / "darnet" / "sweep", outputs / "shortcut_control" / "sweep"
    for fold in range(3):
        # as a Hydra sweep of +experiment=darnet / shortcut_control writes them: the variant is the config's
        write_job(raw_root / "dual" / f"fold{fold}", "dual", fold, model_probs(scans, seed=fold, strength=3.0), scans,
                  seed=fold, experiment="darnet", source=CCII_SOURCE)  # fmt: skip
        write_job(control_root / "dual" / f"fold{fold}", "dual", fold, model_probs(control, seed=fold + 7), control,
                  seed=fold, experiment="shortcut_control", source=CCII_SOURCE, exclude_segmented=True)  # fmt: skip
    return raw_root, control_root, scans, control


def _patients_per_class(scans) -> dict[str, int]:
    patients = {(s[0], s[2]) for s in scans}
    return {name: sum(1 for _p, label in patients if label == c) for c, name in enumerate(CLASSES)}


def test_raw_and_control_sweeps_side_by_side(two_sweeps, capsys: pytest.CaptureFixture[str]) -> None:
    raw_root, control_root, scans, control = two_sweeps
    out = raw_root.parent.parent / "report"
    assert main([str(raw_root), str(control_root), "--bootstrap", "0", "--no-plots"]) == 0
    summary = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    labels = [r["label"] for r in report["table"]["rows"]]
    assert labels == [
        "DARNet (paper)",
        "DARNet",
        "DARNet, fold ensemble",
        "DARNet (shortcut control)",
        "DARNet (shortcut control), fold ensemble",
    ]
    groups = {g["condition"]: g for g in report["groups"]}
    assert set(groups) == {None, "shortcut_control"}
    assert groups[None]["n_folds"] == groups["shortcut_control"]["n_folds"] == 3
    assert groups["shortcut_control"]["slug"] != groups[None]["slug"]
    assert all("shortcut_control" in job for job in groups["shortcut_control"]["jobs"])
    assert groups["shortcut_control"]["ensemble"]["n_scans"] == len(control)

    counts = _patients_per_class(control)
    assert counts["Normal"] < _patients_per_class(scans)["Normal"]
    words = f"control test set: CP {counts['CP']}, NCP {counts['NCP']}, Normal {counts['Normal']} patients"
    assert groups["shortcut_control"]["test_set"]["patients"] == counts
    assert words in summary and words in (out / "table_iv.md").read_text()
    raw = _patients_per_class(scans)
    assert f"raw test set: CP {raw['CP']}, NCP {raw['NCP']}, Normal {raw['Normal']} patients" in summary
    markdown = (out / "table_iv.md").read_text()
    assert "| DARNet (shortcut control) | 3 folds |" in markdown and "| DARNet | 3 folds |" in markdown
    assert sorted(report["sweep_dirs"]) == sorted(str(p.resolve()) for p in (raw_root, control_root))


def test_the_common_parent_gives_the_same_rows(two_sweeps, tmp_path: Path) -> None:
    raw_root, control_root, _scans, _control = two_sweeps
    both = write_report([raw_root, control_root], out_dir=tmp_path / "both", n_bootstrap=0, make_plots=False)
    parent = write_report(raw_root.parent.parent, out_dir=tmp_path / "parent", n_bootstrap=0, make_plots=False)
    assert parent.report["table"]["rows"] == both.report["table"]["rows"]
    assert [g["slug"] for g in parent.report["groups"]] == [g["slug"] for g in both.report["groups"]]
    # the same folder twice is read once
    again = write_report([raw_root, raw_root], out_dir=tmp_path / "twice", n_bootstrap=0, make_plots=False)
    assert again.report["groups"][0]["n_folds"] == 3 and not again.report["problems"]


# --- patient level and calibration -------------------------------------------------------------------------------


def _hand_ensemble(folder: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The fold ensemble joined by hand: (patient per scan, labels, mean probabilities), scans in sorted order."""
    sums: dict[tuple[str, str], np.ndarray] = {}
    labels: dict[tuple[str, str], int] = {}
    files = sorted(folder.glob("*/fold*/predictions.csv"))
    for path in files:
        for row in _read_csv(path):
            key = (row["patient_id"], row["scan_id"])
            sums[key] = sums.get(key, 0) + np.array([float(row[f"prob_{c}"]) for c in CLASSES])
            labels[key] = int(row["label"])
    keys = sorted(sums)
    return [k[0] for k in keys], np.array([labels[k] for k in keys]), np.stack([sums[k] / len(files) for k in keys])


def _hand_patients(patients: list[str], labels: np.ndarray, probs: np.ndarray):
    rows: dict[str, list[int]] = defaultdict(list)
    for i, pid in enumerate(patients):
        rows[pid].append(i)
    ids = sorted(rows)
    return ids, np.array([labels[rows[p][0]] for p in ids]), np.stack([probs[rows[p]].mean(axis=0) for p in ids])


def _hand_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    total = 0.0
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    for b in range(n_bins + 1):  # the last: a confidence of exactly 1
        low = b / n_bins
        inside = (confidence >= low) & (confidence < (b + 1) / n_bins) if b < n_bins else confidence >= 1.0
        if inside.any():
            total += abs(correct[inside].mean() - confidence[inside].mean()) * inside.sum()
    return total / len(labels)


def test_patient_level_block_and_calibration_equal_the_hand_computed(tmp_path: Path) -> None:
    scans = cohort(15, seed=9)  # 1-3 scans per patient
    for fold in range(3):
        write_job(tmp_path / "dual" / f"fold{fold}", "dual", fold, model_probs(scans, seed=fold, strength=1.2), scans,
                  seed=fold)  # fmt: skip
    result = write_report(tmp_path, n_bootstrap=200, seed=3)
    group = result.report["groups"][0]
    patients, labels, probs = _hand_ensemble(tmp_path)
    ids, plabels, pprobs = _hand_patients(patients, labels, probs)
    assert group["patient_level"]["n_patients"] == len(ids) == 45 < len(labels)

    got = group["patient_level"]["metrics"]
    expected = reference_metrics(pprobs, plabels)
    assert set(got) == {f"patient/{k}" for k in expected}
    for key, value in expected.items():  # torchmetrics' AUCs are float32: agreement to 1e-7
        assert got[f"patient/{key}"] == pytest.approx(value, abs=1e-7), key
    pred = pprobs.argmax(axis=1)
    assert got["patient/2class/auc"] == pytest.approx(roc_auc_score(plabels == 1, pprobs[:, 1]), abs=1e-7)
    auc_macro = np.mean([roc_auc_score(plabels == c, pprobs[:, c]) for c in range(3)])
    assert got["patient/3class/auc_macro"] == pytest.approx(auc_macro, abs=1e-7)
    assert got["patient/3class/accuracy"] == pytest.approx(np.mean(pred == plabels), abs=1e-12)
    assert got["patient/3class/f1_macro"] == pytest.approx(f1_score(plabels, pred, average="macro"), abs=1e-12)
    assert got["patient/2class/sensitivity"] == pytest.approx(np.mean(pred[plabels == 1] == 1), abs=1e-12)
    for key in ("patient/2class/auc", "patient/3class/accuracy"):
        low, high = group["patient_level"]["ci"][key]
        assert low <= got[key] <= high

    calibration = group["calibration"]
    onehot = np.eye(3)[labels]
    assert calibration["scans"]["brier"] == pytest.approx(np.mean(((probs - onehot) ** 2).sum(axis=1)), abs=1e-12)
    assert calibration["scans"]["ece"] == pytest.approx(_hand_ece(probs, labels), abs=1e-12)
    assert calibration["patients"]["brier"] == pytest.approx(
        np.mean(((pprobs - np.eye(3)[plabels]) ** 2).sum(axis=1)), abs=1e-12
    )
    assert calibration["patients"]["ece"] == pytest.approx(_hand_ece(pprobs, plabels), abs=1e-12)
    assert (calibration["scans"]["n"], calibration["patients"]["n"]) == (len(labels), len(ids))
    brier = calibration["scans"]["brier"]
    assert f"Brier {brier:.4f}, ECE {calibration['scans']['ece']:.4f} (scans, n={len(labels)})" in result.summary

    out = tmp_path / "report"
    markdown = (out / "table_iv.md").read_text()
    assert "**Patient level, two classes: COVID-19 and non-COVID-19 (CP and healthy)**" in markdown
    patient_block = markdown.split("**Patient level, three classes")[1].split("\n\n")[0]
    row = next(line for line in patient_block.splitlines() if line.startswith("| DARNet, fold ensemble"))
    assert f"| {got['patient/3class/auc_macro']:.4f} [" in row
    assert f"| {100 * got['patient/3class/accuracy']:.2f} [" in row
    assert "| DARNet | 3 folds |" not in patient_block  # fold rows have no patient-level values
    csv_rows = [r for r in _read_csv(out / "table_iv.csv") if r["block"] == "patient/3class"]
    assert [r["kind"] for r in csv_rows] == ["ensemble"]
    assert float(csv_rows[0]["f1_pct"]) == pytest.approx(100 * got["patient/3class/f1_macro"], rel=1e-5)
    png = (out / "reliability_dual.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert "reliability_dual.png" in result.report["files"]
    assert all(math.isfinite(v) for v in got.values())


def test_a_patient_with_two_labels_leaves_out_only_the_patient_level(tmp_path: Path) -> None:
    scans = cohort(6, seed=1)
    scans[1] = (scans[0][0], scans[1][1] + "-moved", 1 - scans[0][2] if scans[0][2] < 2 else 1)  # two labels
    for fold in range(2):
        write_job(tmp_path / "dual" / f"fold{fold}", "dual", fold, model_probs(scans, seed=fold), scans, seed=fold)
    result = write_report(tmp_path, n_bootstrap=20)
    group = result.report["groups"][0]
    assert group["patient_level"] is None and group["ensemble"]["metrics"]
    assert set(group["calibration"]) == {"scans"}
    assert f"no patient-level metrics: patient {scans[0][0]!r} has scans labelled" in result.summary
    assert "reliability_dual.png" in result.report["files"]
    assert "Patient level" not in (tmp_path / "report" / "table_iv.md").read_text()

"""The ablation's variants compared, through ``darnet-report`` as a user types it, on fabricated sweeps whose
files are written as training jobs write them.

Expected numbers are recomputed here from the ``predictions.csv`` files by hand: the fold ensembles averaged
from the CSVs, AUCs by scikit-learn, accuracy by numpy, DeLong's test by the O(n^2) kernel reference of
``tests.helpers.delong_reference`` (clustered by patient), never by the report's own helpers.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from darnet_pl.cli.report import main
from darnet_pl.report.collect import Group
from darnet_pl.report.comparisons import Contender, pairs
from darnet_pl.report.writer import write_report
from tests.helpers.delong_reference import kernel_delong
from tests.helpers.report_jobs import CCII_SOURCE, CLASSES, SYNTHETIC_SOURCE, cohort, model_probs, write_job
from tests.helpers.user import explain, run_args

VARIANTS = ("none", "ca", "da", "dual")
NAMES = {"none": "DARNet (w/o DA and CA)", "ca": "DARNet (w/o DA)", "da": "DARNet (w/o CA)", "dual": "DARNet"}
LR = "model.optimizer.lr=0.01"
RESAMPLES = 200


def ablation(root: Path, scans, experiment: str, source: str, variants=VARIANTS, extra=(), **kwargs) -> None:
    """Two folds per variant; the more attention, the stronger the signal (as in the paper's ablation)."""
    for v, variant in enumerate(variants):
        for fold in range(2):
            probs = model_probs(scans, seed=100 * v + fold + 7 * len(extra), strength=1.6 + 0.4 * v)
            job = root / variant / ("_".join(extra) or "base") / f"fold{fold}"
            write_job(job, variant, fold, probs, scans, extra=extra, seed=fold, experiment=experiment, source=source,
                      **kwargs)  # fmt: skip


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list]:
    """Two sweeps on the same scans, reported together: a synthetic ablation (the four variants, and none and dual
    again at another learning rate) and a CC-CCII one of none and dual with its shortcut control."""
    root = tmp_path_factory.mktemp("comparisons")
    scans = cohort(20, seed=4)
    synthetic, ccii = root / "synthetic", root / "ccii"
    ablation(synthetic, scans, "smoke_ablation", SYNTHETIC_SOURCE)
    ablation(synthetic, scans, "smoke_ablation", SYNTHETIC_SOURCE, variants=("none", "dual"), extra=(LR,))
    ablation(ccii / "raw", scans, "darnet", CCII_SOURCE, variants=("none", "dual"))
    ablation(ccii / "control", scans, "shortcut_control", CCII_SOURCE, ("none", "dual"), exclude_segmented=True)
    return synthetic, ccii, scans


def ensemble(folder: Path) -> tuple[list[tuple[str, str]], np.ndarray, np.ndarray]:
    """The fold ensemble of the job folders under ``folder``, from their predictions.csv, sorted by scan."""
    sums: dict[tuple[str, str], np.ndarray] = {}
    labels: dict[tuple[str, str], int] = {}
    files = sorted(folder.glob("fold*/predictions.csv"))
    for path in files:
        with path.open() as handle:
            for row in csv.DictReader(handle):
                key = (row["patient_id"], row["scan_id"])
                sums[key] = sums.get(key, 0) + np.array([float(row[f"prob_{c}"]) for c in CLASSES])
                labels[key] = int(row["label"])
    keys = sorted(sums)
    return keys, np.stack([sums[k] / len(files) for k in keys]), np.array([labels[k] for k in keys])


def by_hand(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {
        "2class/auc": roc_auc_score(labels == 1, probs[:, 1]),
        "3class/auc_macro": float(np.mean([roc_auc_score(labels == c, probs[:, c]) for c in range(3)])),
        "3class/accuracy": float(np.mean(probs.argmax(axis=1) == labels)),
    }


@pytest.fixture(scope="module")
def default_run(sweeps, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict, Path]:
    synthetic, ccii, _ = sweeps
    cwd = tmp_path_factory.mktemp("user")
    result = run_args(["darnet-report", str(synthetic), str(ccii), "--bootstrap", str(RESAMPLES), "--no-plots"], cwd)
    assert result.returncode == 0, explain(result)
    out = synthetic.parent / "report"
    return result.stdout, json.loads((out / "report.json").read_text()), out


def test_each_variant_is_compared_with_dual_within_its_own_experiment(sweeps, default_run) -> None:
    synthetic, ccii, _ = sweeps
    _stdout, report, _out = default_run
    pairs = [(c["a"], c["b"]) for c in report["comparisons"]]
    smoke, lr, darnet = " [experiment=smoke_ablation]", f" [experiment=smoke_ablation, {LR}]", " [experiment=darnet]"
    assert sorted(pairs) == sorted(
        [
            *((NAMES[v] + smoke, "DARNet" + smoke) for v in ("none", "ca", "da")),
            (NAMES["none"] + lr, "DARNet" + lr),
            (NAMES["none"] + darnet, "DARNet" + darnet),
            ("DARNet (w/o DA and CA; shortcut control)" + darnet, "DARNet (shortcut control)" + darnet),
        ]
    ), "never across settings or conditions, though the scans are the same"
    methods = {r["method"] for r in report["groups"]}
    assert all(a in methods and b in methods for a, b in pairs)

    for record in report["comparisons"]:
        folders = {"SyntheticSource": synthetic, "ccii": ccii / ("control" if record["condition"] else "raw")}
        root = folders[record["dataset"]]
        sub = LR if LR in record["overrides"] else "base"
        keys, probs_a, labels = ensemble(root / record["variant_a"] / sub)
        keys_b, probs_b, labels_b = ensemble(root / record["variant_b"] / sub)
        assert keys == keys_b and (labels == labels_b).all()
        assert record["n_scans"] == len(keys) and record["n_patients"] == len({p for p, _ in keys})
        expected_a, expected_b = by_hand(probs_a, labels), by_hand(probs_b, labels)
        for key, metric in record["metrics"].items():
            assert metric["a"] == pytest.approx(expected_a[key], abs=1e-6), key
            assert metric["b"] == pytest.approx(expected_b[key], abs=1e-6), key
            assert metric["difference"] == pytest.approx(expected_a[key] - expected_b[key], abs=1e-6), key
            low, high = metric["ci"]
            assert low <= metric["difference"] <= high and metric["ci_valid_resamples"] == RESAMPLES, key
        patients = np.array([p for p, _ in keys])
        difference, se = kernel_delong(probs_a[:, 1], probs_b[:, 1], labels == 1, patients)
        test = record["delong"]["2class/auc"]
        assert test["difference"] == pytest.approx(difference, abs=1e-9) and test["se"] == pytest.approx(se, rel=1e-9)
        assert test["p"] == pytest.approx(math.erfc(abs(difference / se) / math.sqrt(2)), rel=1e-6)
        assert test["clustered_by"] == "patient" and test["n_clusters"] == len(set(patients))
        assert set(record["delong"]) == {"2class/auc", *(f"3class/{c}/auc" for c in CLASSES)}
    weakest = report["comparisons"][0]["metrics"]["3class/accuracy"]
    assert weakest["ci"][1] < 0, "the weakest variant is plainly worse than DARNet, and the interval says so"


def test_the_tables_show_the_same_numbers(default_run) -> None:
    stdout, report, out = default_run
    assert sorted(p.name for p in out.iterdir()) == sorted(report["files"])
    assert {"comparisons.md", "comparisons.csv"} <= set(report["files"])
    with (out / "comparisons.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 * len(report["comparisons"])
    markdown = (out / "comparisons.md").read_text()
    for record in report["comparisons"]:
        for key, metric in record["metrics"].items():
            row = next(r for r in rows if (r["a"], r["b"], r["metric"]) == (record["a"], record["b"], key))
            scale = 100.0 if key.endswith("accuracy") else 1.0
            assert row["unit"] == ("%" if scale == 100 else "fraction")
            for name, value in (("difference", metric["difference"]), ("ci_low", metric["ci"][0])):
                assert float(row[name]) == pytest.approx(scale * value, rel=1e-5), (key, name)
            low, high = (scale * x for x in metric["ci"])
            digits = 2 if scale == 100 else 4
            cell = f"{scale * metric['difference']:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"
            assert cell in markdown and cell in stdout, cell
        p = record["delong"]["2class/auc"]["p"]
        row = next(r for r in rows if (r["a"], r["metric"]) == (record["a"], "2class/auc"))
        assert float(row["delong_p"]) == pytest.approx(p, rel=1e-5)
    assert "paired patient-level bootstrap percentile CI (200 resamples, seed 0" in markdown
    assert "clustered by patient" in markdown and "Variants compared (A − B" in stdout


def test_all_pairs_on_request(sweeps, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The command's own parser, in process (the subprocess above is the console script)."""
    synthetic, _, _ = sweeps
    out = tmp_path / "all"
    assert main([str(synthetic), "--all-pairs", "--bootstrap", "0", "--no-plots", "--out", str(out)]) == 0
    assert "Variants compared" in capsys.readouterr().out
    records = json.loads((out / "report.json").read_text())["comparisons"]
    pairs = [(c["variant_a"], c["variant_b"], LR in c["overrides"]) for c in records]
    expected = [(a, b, False) for i, a in enumerate(VARIANTS) for b in VARIANTS[i + 1 :]] + [("none", "dual", True)]
    assert sorted(pairs) == sorted(expected)
    assert all(math.isnan(m["ci"][0] if m["ci"][0] is not None else math.nan) for c in records
               for m in c["metrics"].values())  # fmt: skip
    table = (out / "comparisons.md").read_text()
    assert "CI: none (no bootstrap)" in table and not re.search(r"\d \[[+-]\d", table)


def test_scans_not_shared_and_a_missing_dual_are_said(tmp_path: Path) -> None:
    scans = cohort(10, seed=2)
    for v, variant in enumerate(("none", "dual")):
        for fold in range(2):
            use = scans[:-3] if (variant == "dual" and fold == 1) else scans
            write_job(tmp_path / "a" / variant / f"fold{fold}", variant, fold, model_probs(use, seed=v + fold), use)
    for fold in range(2):
        probs = model_probs(scans, seed=fold)
        write_job(tmp_path / "b" / f"fold{fold}", "ca", fold, probs, scans, extra=["data.split_seed=3"])
        write_job(tmp_path / "b2" / f"fold{fold}", "da", fold, probs, scans, extra=["data.split_seed=3"])
    result = write_report(tmp_path, n_bootstrap=50, make_plots=False)
    records = result.report["comparisons"]
    assert [(r["variant_a"], r["variant_b"]) for r in records] == [("none", "dual")]
    n = len(scans)
    assert records[0]["n_scans"] == n - 3
    assert records[0]["notes"] == [f"compared on the {n - 3} test scans both ensembles have (A has {n}, B {n - 3})"]
    assert "no DARNet (dual) row of the same experiment" in result.summary and "--all-pairs" in result.summary
    assert result.report["comparisons_notes"] == [line.removeprefix("note: ") for line in result.summary.splitlines()
                                                  if "no DARNet (dual) row" in line]  # fmt: skip
    text = (tmp_path / "report" / "comparisons.md").read_text()
    assert "DARNet (w/o DA) [data.split_seed=3], DARNet (w/o CA) [data.split_seed=3]: no DARNet (dual)" in text
    single = write_report(tmp_path / "a" / "dual" / "fold0", n_bootstrap=0, make_plots=False)
    assert single.report["comparisons"] == [] and "comparisons.md" not in single.report["files"]
    assert io.StringIO(single.summary).read().count("Variants compared") == 0


def test_pairs_never_cross_data_sets() -> None:
    """Groups that differ only in their data set are two experiments (the report's grouping keeps them apart when
    their overrides differ; ``Group.experiment`` keeps them apart in any case)."""
    groups = [
        Group(variant, ("+experiment=ablation",), compared=("+experiment=ablation",), dataset=dataset)
        for dataset in ("ccii", "MosMedSource")
        for variant in ("none", "dual")
    ]
    contenders = [Contender(f"{g.variant} on {g.dataset}", g, None) for g in groups]  # type: ignore[arg-type]
    for all_pairs in (False, True):
        found, notes = pairs(contenders, all_pairs=all_pairs)
        assert [(a.method, b.method) for a, b in found] == [
            ("none on ccii", "dual on ccii"),
            ("none on MosMedSource", "dual on MosMedSource"),
        ]
        assert notes == []

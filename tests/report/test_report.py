"""darnet-report on a fake sweep whose files are built exactly as training jobs write them.

Expected numbers are recomputed here independently (numpy mean/std, hand-joined CSVs, PaperMetrics), never taken
from the report's own helpers.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from darnet_pl.cli.report import main
from darnet_pl.report.writer import NothingToReport, write_report
from tests.helpers.report_jobs import CLASSES, cohort, model_probs, reference_metrics, write_job

TABLE_KEYS = (
    "2class/auc",
    "2class/accuracy",
    "2class/sensitivity",
    "2class/specificity",
    "2class/f1",
    "3class/auc_macro",
    "3class/accuracy",
    "3class/sensitivity_macro",
    "3class/specificity_macro",
    "3class/f1_macro",
)
PERCENT = {key: not key.endswith(("auc", "auc_macro")) for key in TABLE_KEYS}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 variants x 3 folds; dual/fold2 has a config but never finished."""
    root = tmp_path_factory.mktemp("sweep")
    scans = cohort(40, seed=0)
    for v, variant in enumerate(("none", "dual")):
        for fold in range(3):
            done = not (variant == "dual" and fold == 2)
            probs = model_probs(scans, seed=10 * v + fold, strength=2.0 + v) if done else None
            write_job(root / variant / f"fold{fold}", variant, fold, probs, scans, seed=fold)
    return root


@pytest.fixture(scope="module")
def report(sweep: Path) -> dict:
    write_report(sweep, n_bootstrap=300, seed=0)
    return json.loads((sweep / "report" / "report.json").read_text())


def _group(report: dict, variant: str) -> dict:
    return next(g for g in report["groups"] if g["variant"] == variant)


def _job_metrics(sweep: Path, variant: str) -> list[dict[str, float]]:
    paths = sorted((sweep / variant).glob("fold*/test_metrics.json"))
    return [json.loads(p.read_text()) for p in paths]


def _fmt(key: str, x: float) -> str:
    return f"{100 * x:.2f}" if PERCENT[key] else f"{x:.4f}"


def test_table_is_mean_and_sample_std_over_folds(sweep: Path, report: dict) -> None:
    markdown = (sweep / "report" / "table_iv.md").read_text()
    with (sweep / "report" / "table_iv.csv").open() as handle:
        csv_rows = list(csv.DictReader(handle))
    for variant, name, n in (("none", "DARNet (w/o DA and CA)", 3), ("dual", "DARNet", 2)):
        jobs = _job_metrics(sweep, variant)
        assert len(jobs) == n and _group(report, variant)["n_folds"] == n
        for key in TABLE_KEYS:
            values = np.array([m[f"test/{key}"] for m in jobs])
            mean, std = values.mean(), values.std(ddof=1)
            stat = _group(report, variant)["fold_metrics"][key]
            assert stat["mean"] == pytest.approx(mean, abs=1e-12)
            assert stat["std"] == pytest.approx(std, abs=1e-12)
            if key != "2class/accuracy":  # in report.json; the table's two-class block shows the 3-class one
                assert f"{_fmt(key, mean)}±{_fmt(key, std)}" in markdown
        two = next(r for r in csv_rows if r["method"] == name and r["block"] == "2class" and r["kind"] == "folds")
        accuracy = np.array([m["test/3class/accuracy"] for m in jobs])
        assert float(two["accuracy_pct"]) == pytest.approx(100 * accuracy.mean(), rel=1e-5)  # as the paper prints it
        line = next(r for r in csv_rows if r["method"] == name and r["block"] == "3class" and r["kind"] == "folds")
        f1 = np.array([m["test/3class/f1_macro"] for m in jobs])
        assert float(line["f1_pct"]) == pytest.approx(100 * f1.mean(), rel=1e-5)
        assert float(line["f1_pct_std"]) == pytest.approx(100 * f1.std(ddof=1), rel=1e-5)
        assert line["n"] == str(n)
    assert "| DARNet (w/o DA and CA) | 3 folds |" in markdown and "| DARNet | 2 folds |" in markdown


def test_ensemble_row_is_paper_metrics_of_hand_averaged_probabilities(sweep: Path, report: dict) -> None:
    for variant in ("none", "dual"):
        sums: dict[tuple[str, str], np.ndarray] = {}
        labels: dict[tuple[str, str], int] = {}
        files = sorted((sweep / variant).glob("fold*/predictions.csv"))
        for path in files:
            with path.open() as handle:
                for row in csv.DictReader(handle):
                    key = (row["patient_id"], row["scan_id"])
                    probs = np.array([float(row[f"prob_{c}"]) for c in CLASSES])
                    sums[key] = sums.get(key, 0) + probs
                    labels[key] = int(row["label"])
        keys = sorted(sums)
        averaged = np.stack([sums[k] / len(files) for k in keys])
        expected = reference_metrics(averaged, np.array([labels[k] for k in keys]))
        ensemble = _group(report, variant)["ensemble"]
        assert ensemble["n_models"] == len(files) and ensemble["same_test_set"] is True
        assert ensemble["n_scans"] == len(keys)
        for key, value in expected.items():
            assert ensemble["metrics"][key] == pytest.approx(value, abs=1e-9), key
        row = next(r for r in report["table"]["rows"] if r["variant"] == variant and r["kind"] == "ensemble")
        assert row["value"]["3class/accuracy"] == pytest.approx(expected["3class/accuracy"], abs=1e-9)


def test_missing_jobs_are_reported(sweep: Path, report: dict, capsys: pytest.CaptureFixture[str]) -> None:
    missing = "\n".join(report["missing"])
    assert "dual fold 2" in missing and str(sweep / "dual" / "fold2") in missing
    assert "dual: 2 of 3 folds finished" in missing
    assert "none" not in missing
    assert "dual fold 2" in (sweep / "report" / "table_iv.md").read_text()
    out = tmp = sweep.parent / f"{sweep.name}-expected4"
    assert main([str(sweep), "--out", str(tmp), "--bootstrap", "0", "--no-plots", "--expected-folds", "4"]) == 0
    lines = json.loads((out / "report.json").read_text())["missing"]
    assert "none fold 3: no job folder" in lines and "dual fold 3: no job folder" in lines
    assert "missing: none fold 3: no job folder" in capsys.readouterr().out


def test_output_files_are_written_and_readable(sweep: Path, report: dict) -> None:
    out = sweep / "report"
    expected = ["table_iv.md", "table_iv.csv", "table_iv.tex", "report.json", "roc_covid_vs_rest.png"]
    expected += ["comparisons.md", "comparisons.csv"]  # none against dual
    expected += [f"{kind}_{v}.png" for kind in ("roc", "confusion", "reliability") for v in ("none", "dual")]
    assert sorted(report["files"]) == sorted(expected)
    for name in expected:
        assert (out / name).stat().st_size > 500, name
    for name in (n for n in expected if n.endswith(".png")):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, name
    tex = (out / "table_iv.tex").read_text()
    assert all(s in tex for s in (r"\toprule", r"\midrule", r"\bottomrule", r"$\pm$", "DARNet (w/o DA and CA)"))
    assert "±" not in tex and "%" not in tex.replace(r"\%", "")
    markdown = (out / "table_iv.md").read_text()
    assert "Two classes: COVID-19 and non-COVID-19" in markdown and "Three classes" in markdown
    assert "DARNet, fold ensemble | ens. of 2 |" in markdown
    assert not list(out.glob(".*")), "no temporary files left behind"


def test_single_run_has_values_with_intervals_and_leaves_the_job_alone(sweep: Path) -> None:
    run = sweep / "none" / "fold1"
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.rglob("*") if p.is_file()}
    result = write_report(run, n_bootstrap=200)
    assert result.out_dir == run / "report"
    rows = result.report["table"]["rows"]
    assert [r["kind"] for r in rows] == ["single"]
    markdown = (run / "report" / "table_iv.md").read_text()
    assert "±" not in markdown.split("\n- ")[0] and "| DARNet (w/o DA and CA) | 1 run |" in markdown
    metrics = json.loads((run / "test_metrics.json").read_text())
    auc = metrics["test/2class/auc"]
    low, high = rows[0]["ci"]["2class/auc"]
    assert low <= auc <= high and f"{auc:.4f} [{low:.4f}, {high:.4f}]" in markdown
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in before}
    assert before == after


def test_cli_errors_and_rerun(sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "nope" in err and "\n" not in err
    (tmp_path / "empty" / "a").mkdir(parents=True)
    assert main([str(tmp_path / "empty")]) == 2
    assert "no finished run or sweep job found" in capsys.readouterr().err
    with pytest.raises(NothingToReport):
        write_report(tmp_path / "empty")
    assert main([str(sweep / "none" / "fold0"), "--out", str(sweep / "none" / "fold1")]) == 2
    assert "job's folder" in capsys.readouterr().err

    out = tmp_path / "rerun"
    assert main([str(sweep), "--out", str(out), "--bootstrap", "50"]) == 0
    first = capsys.readouterr().out
    assert "5 finished jobs in 2 row(s)" in first and "| DARNet |" in first and "replaced" not in first
    assert main([str(sweep), "--out", str(out), "--bootstrap", "50", "--no-plots"]) == 0
    assert "replaced the previous report" in capsys.readouterr().out
    assert not list(out.glob("*.png")), "plots of the previous report are not left mixed with the new one"


def test_other_overrides_make_their_own_rows_and_test_set_differences_are_noted(tmp_path: Path) -> None:
    scans = cohort(15, seed=5)
    for lr in ("0.001", "0.01"):
        for fold in range(2):
            use = scans if not (lr == "0.01" and fold == 1) else scans[:-4]
            probs = model_probs(use, seed=fold + 3)
            job = tmp_path / f"{lr}" / f"{fold}"
            write_job(job, "ca", fold, probs, use, extra=[f"model.optimizer.lr={lr}"], seed=fold)
    result = write_report(tmp_path, n_bootstrap=0, make_plots=False)
    methods = [r["label"] for r in result.report["table"]["rows"]]
    assert "DARNet (w/o DA) [model.optimizer.lr=0.001]" in methods
    assert "DARNet (w/o DA) [model.optimizer.lr=0.01], fold ensemble" in methods
    groups = {tuple(g["shown_overrides"]): g for g in result.report["groups"]}
    assert groups[("model.optimizer.lr=0.001",)]["ensemble"]["same_test_set"] is True
    odd = groups[("model.optimizer.lr=0.01",)]["ensemble"]
    assert odd["same_test_set"] is False and odd["n_scans"] == len(scans) - 4
    assert "not tested on the same scans" in " ".join(odd["notes"])
    assert "not tested on the same scans" in result.summary
    assert all(math.isfinite(v) for v in odd["metrics"].values())


def test_a_job_without_predictions_counts_in_the_mean_but_not_in_the_ensemble(tmp_path: Path) -> None:
    scans = cohort(12, seed=8)
    for fold in range(3):
        write_job(tmp_path / str(fold), "da", fold, model_probs(scans, seed=fold), scans, seed=fold)
    (tmp_path / "2" / "predictions.csv").unlink()
    (tmp_path / "multirun.yaml").write_text("hydra: {}\n")  # a Hydra sweep root is not a job
    result = write_report(tmp_path, n_bootstrap=100)
    group = result.report["groups"][0]
    assert group["n_folds"] == 3 and group["ensemble"]["n_models"] == 2 and group["ensemble"]["folds"] == [0, 1]
    assert any("no predictions.csv" in p for p in result.report["problems"])
    assert "| DARNet (w/o CA), fold ensemble | ens. of 2 |" in (tmp_path / "report" / "table_iv.md").read_text()

"""The report as one W&B run of job type ``report`` (report.wandb_report), read back from the offline run files W&B
wrote (tests.helpers.wandb_runs): no mock of wandb, no network."""

from __future__ import annotations

import csv
import json
import socket
import time
from pathlib import Path

import pytest
import yaml

from darnet_pl.cli.report import main
from darnet_pl.report.wandb_report import log_report
from darnet_pl.report.writer import write_report
from tests.helpers.forked import run_forked
from tests.helpers.report_jobs import CCII_SOURCE, cohort, model_probs, write_job
from tests.helpers.user import user_env
from tests.helpers.wandb_runs import offline_runs

REPORT = "darnet_pl.cli.report"
JOB_WANDB = {"project": "darnet-pl", "offline": True, "tags": ["ablation", "paper", "data:ccii"]}


def _sweep(root: Path, wandb: dict | None, variants=("none", "dual"), folds: int = 2) -> Path:
    """An ablation sweep on CC-CCII as training leaves it; ``wandb``: the jobs' ``logger.wandb`` (None: no W&B)."""
    scans = cohort(6, seed=0)
    for v, variant in enumerate(variants):
        for fold in range(folds):
            job = root / variant / f"fold{fold}"
            probs = model_probs(scans, seed=10 * v + fold, strength=3.0)
            write_job(job, variant, fold, probs, scans, seed=fold, experiment="ablation", source=CCII_SOURCE)
            if wandb is not None:
                with (job / "config_resolved.yaml").open("a") as handle:
                    handle.write(yaml.safe_dump({"logger": {"wandb": {**wandb, "group": f"ablation/{variant}"}}}))
    return root


def _csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def _same_cells(logged: list, written: list[str]) -> bool:
    """A W&B table row against the CSV row it came from (numbers parsed, empty cells None)."""
    return all(
        (w == "" and g is None) or (w != "" and (g == w or (isinstance(g, int | float) and g == float(w))))
        for g, w in zip(logged, written, strict=True)
    )


def _wandb_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "W&B" in line or line.startswith("wandb:")]


def test_the_report_run_holds_table_iv_with_the_papers_rows_and_a_rerun_continues_it(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path / "sweep", JOB_WANDB)
    first = run_forked(REPORT, sweep, "--bootstrap", "20", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    report = sweep / "report"
    [run] = offline_runs(report)
    where = run.folder.relative_to(tmp_path)
    assert _wandb_lines(first.stdout + first.stderr) == [f"W&B offline run: {where}; upload with: wandb sync {where}"]

    assert (run.job_type, run.group, run.name, run.project) == ("report", "ablation", "ablation/report", "darnet-pl")
    assert {"report", "data:ccii"} <= set(run.tags)
    columns, rows = run.table("table_iv")
    csv_columns, csv_rows = _csv(report / "table_iv.csv")
    assert columns == csv_columns and len(rows) == len(csv_rows) == 16  # 2 blocks x (2 paper + 4 ours) + patients
    assert all(_same_cells(logged, written) for logged, written in zip(rows, csv_rows, strict=True))
    paper = {
        (r[columns.index("block")], r[columns.index("method")]): r for r in rows if r[columns.index("kind")] == "paper"
    }
    assert set(paper) == {
        (b, m) for b in ("2class", "3class") for m in ("DARNet (paper)", "DARNet (w/o DA and CA; paper)")
    }
    assert paper[("2class", "DARNet (paper)")][columns.index("auc")] == 0.995  # Table IV: 0.9950±0.0020
    assert paper[("3class", "DARNet (w/o DA and CA; paper)")][columns.index("f1_pct")] == 90.74
    comparison_columns, comparison_rows = run.table("paper_comparison")
    assert comparison_columns[:3] == ["method", "variant", "metric"] and comparison_rows
    assert set(run.image_keys()) == {
        f"{kind}/{v}" for kind in ("roc", "confusion", "reliability") for v in ("none", "dual")
    } | {"roc/covid_vs_rest"}
    [artifact] = [a for a in run.artifacts if a["type"] == "report"]
    assert {"report.json", "table_iv.csv", "table_iv.md", "table_iv.tex", "paper_comparison.csv"} | {
        "comparisons.csv",
        "comparisons.md",
    } == set(artifact["files"])
    # the ablation's paired comparison (none against dual) is a table of its own
    compared_columns, compared_rows = run.table("comparisons")
    assert len(compared_rows) == 1 and any("delong" in c for c in compared_columns), compared_columns
    assert run.config["bootstrap"]["resamples"] == 20 and run.config["jobs"] == 4

    again = run_forked(REPORT, sweep, "--bootstrap", "20", "--no-plots", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    runs = offline_runs(report)
    assert len(runs) == 2 and {r.id for r in runs} == {(report / "wandb_report_run_id.txt").read_text().strip()}
    assert len(_wandb_lines(again.stdout + again.stderr)) == 1
    skipped = run_forked(REPORT, sweep, "--bootstrap", "0", "--no-plots", "--wandb", "off", cwd=tmp_path)
    assert skipped.returncode == 0 and _wandb_lines(skipped.stdout + skipped.stderr) == []
    assert len(offline_runs(report)) == 2


def test_no_wandb_run_where_the_jobs_logged_none_unless_asked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sweep = _sweep(tmp_path / "sweep", None, variants=("dual",))
    assert main([str(sweep), "--bootstrap", "0", "--no-plots"]) == 0
    assert _wandb_lines(capsys.readouterr().out) == [] and not (sweep / "report" / "wandb").exists()

    assert main([str(sweep), "--bootstrap", "0", "--no-plots", "--wandb", "on"]) == 0
    [line] = _wandb_lines(capsys.readouterr().out)
    [run] = offline_runs(sweep / "report")
    assert line.startswith("W&B offline run: ") and (run.project, run.job_type) == ("darnet-pl", "report")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_online_without_a_reachable_server_logs_offline_and_says_so(tmp_path: Path) -> None:
    """``offline: false`` where W&B's server cannot be reached: within seconds, one line, an offline run, and no
    online run folder."""
    sweep = _sweep(tmp_path / "sweep", {**JOB_WANDB, "offline": False}, variants=("dual",))
    env = user_env(WANDB_BASE_URL=f"http://127.0.0.1:{_closed_port()}")
    started = time.monotonic()
    result = run_forked(REPORT, sweep, "--bootstrap", "0", "--no-plots", cwd=tmp_path, env=env)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    lines = _wandb_lines(result.stdout + result.stderr)
    assert len(lines) == 2, lines
    assert lines[0].startswith("W&B cannot go online (127.0.0.1: Connection refused): logging offline instead")
    assert lines[1].startswith("W&B offline run: ")
    assert [p.name.startswith("offline-run-") for p in (sweep / "report" / "wandb").glob("*run-*")] == [True]
    assert elapsed < 60, elapsed  # the check itself takes milliseconds here; the rest is start-up and the report


def test_paired_comparisons_and_the_audit_become_tables(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path / "sweep", JOB_WANDB, folds=1)
    probes = [
        {
            "name": "slice_count",
            "auc": 0.93,
            "flagged": True,
            "reason": "AUC 0.93 >= 0.8",
            "per_class": {"Normal": 0.99},
        },
        {"name": "file_type", "auc": 0.5, "flagged": False, "reason": None, "per_class": {"Normal": 0.5}},
    ]
    (sweep / "audit.json").write_text(json.dumps(probes))
    result = write_report(sweep, n_bootstrap=0, make_plots=False)
    comparisons = [
        {"variant": "none", "against": "dual", "metric": "3class/auc_macro", "difference": -0.02, "ci": [-0.05, 0.01]}
    ]
    result.report["comparisons"] = comparisons  # as the statistics module adds them to report.json
    [line] = log_report(result)
    [run] = offline_runs(sweep / "report")
    assert line == f"W&B offline run: {run.folder}; upload with: wandb sync {run.folder}"
    assert run.table("comparisons") == (
        ["variant", "against", "metric", "difference", "ci"],
        [["none", "dual", "3class/auc_macro", -0.02, "[-0.05, 0.01]"]],
    )
    columns, rows = run.table("audit")
    assert columns == ["audit", "name", "auc", "flagged", "reason", "per_class/Normal"]
    assert [row[1:] for row in rows] == [
        ["slice_count", 0.93, True, "AUC 0.93 >= 0.8", 0.99],
        ["file_type", 0.5, False, None, 0.5],
    ]

"""``darnet-report`` under bad input and faults, run as a subprocess in an empty folder: one line naming the file,
exit 2, and no report folder or file - partial or temporary - left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from darnet_pl.utils.io import output_folder
from tests.helpers.faults import every_file, hidden, only_line, run_tool, tmpfs
from tests.helpers.report_jobs import cohort, model_probs, write_job

REPORT = "darnet_pl.cli.report"


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Two finished folds of one variant, as training jobs write them."""
    root = tmp_path / "sweep"
    scans = cohort(4, seed=0)
    for fold in range(2):
        write_job(root / f"fold{fold}", "dual", fold, model_probs(scans, seed=fold), scans, seed=fold)
    return root


def edit_cell(path: Path, line: int, column: str, value: str) -> None:
    """Set one cell of a CSV (``line`` counts the header as line 1)."""
    lines = path.read_text().splitlines()
    index = lines[0].split(",").index(column)
    cells = lines[line - 1].split(",")
    cells[index] = value
    lines[line - 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("prob_NCP", "nan", "prob_NCP is 'nan', not a probability in [0, 1]"),
        ("prob_CP", "1.7", "prob_CP is '1.7', not a probability in [0, 1]"),
        ("label", "7", "label is '7', not a class index 0..2"),
    ],
    ids=["nan", "above-one", "label"],
)
def test_impossible_predictions_name_the_file_and_write_no_report(sweep, cwd, column, value, problem):
    predictions = sweep / "fold1" / "predictions.csv"
    edit_cell(predictions, 4, column, value)
    result = run_tool(REPORT, sweep, "--bootstrap", "20", cwd=cwd)
    assert result.returncode == 2
    assert only_line(result.stderr) == f"error: {predictions}, line 4: {problem}"
    assert not (sweep / "report").exists() and every_file(cwd) == []


def cells(path: Path, line: int) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(zip(lines[0].split(","), lines[line - 1].split(","), strict=True))


@pytest.mark.parametrize(
    ("column", "value"),
    [("prob_CP", "0.999"), ("prob_Normal", "0")],
    ids=["sums-above-one", "sums-below-one"],
)
def test_a_probability_row_not_summing_to_one_names_the_file_and_row(sweep, cwd, column, value):
    predictions = sweep / "fold0" / "predictions.csv"
    row = cells(predictions, 3)
    total = sum(float(row[c]) for c in ("prob_CP", "prob_NCP", "prob_Normal")) - float(row[column]) + float(value)
    edit_cell(predictions, 3, column, value)
    result = run_tool(REPORT, sweep, "--bootstrap", "20", cwd=cwd)
    assert result.returncode == 2
    assert only_line(result.stderr) == f"error: {predictions}, line 3: the probabilities sum to {total:.6g}, not 1"
    assert not (sweep / "report").exists() and every_file(cwd) == []


def test_scores_that_are_not_probabilities_are_refused_at_the_first_row(sweep, cwd):
    """A table of logits (what a model outputs before the softmax) in place of probabilities."""
    predictions = sweep / "fold1" / "predictions.csv"
    lines = predictions.read_text().splitlines()
    header = lines[0].split(",")
    first = lines[1].split(",")
    for column in ("prob_CP", "prob_NCP", "prob_Normal"):
        first[header.index(column)] = "-1.25"
    predictions.write_text("\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n")
    result = run_tool(REPORT, sweep, "--bootstrap", "20", cwd=cwd)
    assert result.returncode == 2
    assert only_line(result.stderr) == f"error: {predictions}, line 2: prob_CP is '-1.25', not a probability in [0, 1]"


def test_missing_probability_column_leaves_the_job_out_of_the_ensemble_with_a_note(sweep, cwd):
    predictions = sweep / "fold1" / "predictions.csv"
    lines = predictions.read_text().splitlines()
    header = lines[0].split(",")
    drop = header.index("prob_Normal")
    predictions.write_text("\n".join(",".join(c for i, c in enumerate(line.split(",")) if i != drop)
                                     for line in lines) + "\n")  # fmt: skip
    result = run_tool(REPORT, sweep, "--bootstrap", "20", "--no-plots", cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert f"note: {predictions}: missing columns ['prob_Normal']" in result.stdout.splitlines()
    report = json.loads((sweep / "report" / "report.json").read_text())
    assert report["groups"][0]["n_folds"] == 2 and report["groups"][0]["ensemble"]["folds"] == [0]


def test_a_torn_predictions_line_is_a_note_not_a_traceback(sweep, cwd):
    predictions = sweep / "fold0" / "predictions.csv"
    text = predictions.read_text()
    predictions.write_text(text[: text.rindex(",")])  # the last line cut after a comma: fewer fields
    result = run_tool(REPORT, sweep, "--bootstrap", "20", "--no-plots", cwd=cwd)
    assert result.returncode == 0, result.stderr
    line_number = len(text.splitlines())
    expected = f"note: {predictions}, line {line_number}: fewer fields than the header (a torn line)"
    assert expected in result.stdout.splitlines()


def test_a_folder_without_finished_jobs_is_one_line(tmp_path, cwd):
    empty = tmp_path / "empty"
    (empty / "notes").mkdir(parents=True)
    result = run_tool(REPORT, empty, cwd=cwd)
    assert result.returncode == 2
    assert only_line(result.stderr) == (
        f"error: {empty}: no finished run or sweep job found (no folder under it holds test_metrics.json)"
    )
    assert every_file(empty) == ["notes"]


def test_read_only_and_full_output_folders_leave_nothing(sweep, tmp_path, cwd):
    with tmpfs(tmp_path / "ro", read_only=True) as ro:
        result = run_tool(REPORT, sweep, "--bootstrap", "20", "--out", ro / "report", cwd=cwd)
        assert result.returncode == 2
        line = f"error: {ro / 'report'}: cannot write into this output folder (Read-only file system)"
        assert only_line(result.stderr) == line
    with tmpfs(tmp_path / "full", size="200k") as full:  # the tables fit, the plots do not
        result = run_tool(REPORT, sweep, "--bootstrap", "20", "--out", full / "report", cwd=cwd)
        assert result.returncode == 2
        line = only_line(result.stderr)
        assert line.startswith(f"error: {full / 'report'}/") and line.endswith(
            ": cannot write the report (No space left on device)"
        )
        assert every_file(full) == []  # no table without its plots, no staging folder, no empty report folder


def test_a_failed_rerun_keeps_the_previous_report_whole(sweep, cwd):
    assert run_tool(REPORT, sweep, "--bootstrap", "20", "--no-plots", cwd=cwd).returncode == 0
    out = sweep / "report"
    before = {name: (out / name).read_bytes() for name in every_file(out)}
    edit_cell(sweep / "fold0" / "predictions.csv", 2, "prob_CP", "inf")
    result = run_tool(REPORT, sweep, "--bootstrap", "20", cwd=cwd)
    assert result.returncode == 2 and "prob_CP is 'inf'" in only_line(result.stderr)
    assert {name: (out / name).read_bytes() for name in every_file(out)} == before and hidden(out) == []


def test_a_second_report_into_the_same_folder_is_refused(sweep, cwd):
    out = sweep / "report"
    with output_folder(out, "darnet-report"):  # what a first darnet-report holds while it writes
        result = run_tool(REPORT, sweep, "--bootstrap", "20", "--no-plots", cwd=cwd)
    assert result.returncode == 2
    assert only_line(result.stderr) == (
        f"error: {out}: another darnet-report is writing into this folder right now; wait for it to finish"
    )
    assert every_file(out) == []


def test_bad_options_are_one_line(sweep, cwd):
    result = run_tool(REPORT, sweep, "--bootstrap", "many", cwd=cwd)
    assert result.returncode == 2
    assert only_line(result.stderr) == "error: --bootstrap: invalid int value: 'many' (see darnet-report --help)"
    result = run_tool(REPORT, sweep, "--expected-folds", "0", cwd=cwd)
    assert result.returncode == 2
    assert only_line(result.stderr) == "error: --expected-folds 0: must be 1 or more"
    assert not (sweep / "report").exists()

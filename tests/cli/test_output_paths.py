"""Outputs stay where the user put them (issue #19 family 5), through the real entry points from an empty folder:
an environment variable set but empty counts as unset (never the filesystem root), and names that become folder
names (``task_name``, the experiment, scan ids) cannot leave the output folder: one ``error:`` line, exit 2,
nothing created anywhere.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.helpers.checkpoints import SIZE, to_uint8, write_nifti
from tests.helpers.faults import only_line, run_tool
from tests.helpers.forked import run_forked
from tests.helpers.user import user_env

EMPTY = {"DARNET_LOG_DIR": "", "DARNET_DATA_DIR": "", "DARNET_CCII_ROOT": ""}


def scan_list(folder: Path) -> Path:
    """Nine tiny slice folders, three per class, and their scan list."""
    from tests.helpers.ccii_tree import write_csv, write_scan

    rows = []
    for k, label in enumerate(("CP", "NCP", "Normal") * 3):
        write_scan(folder / "scans" / f"s{k}", 3)
        rows.append((f"scans/s{k}", label, f"p{k}"))
    return write_csv(folder / "list.csv", ("path", "label", "patient_id"), rows)


@pytest.mark.slow
def test_empty_environment_variables_count_as_unset(tmp_path: Path) -> None:
    listed = scan_list(tmp_path / "input")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    args = ("data=folder", f"data.scan_list={listed}", "data.n_folds=2", "+dry_run=true")
    result = run_forked("darnet_pl.cli.prepare", *args, cwd=cwd, env=user_env(**EMPTY))
    assert result.returncode == 0, result.stderr
    cache_line = next(line for line in result.stdout.splitlines() if line.startswith("cache: "))
    assert cache_line.startswith(f"cache: {cwd / 'data' / 'cache'}/"), cache_line  # ./data, not /cache
    assert [p.name for p in (cwd / "outputs" / "prepare" / "runs").iterdir()]  # ./outputs, not /prepare
    assert not Path("/prepare").exists()

    ccii = run_forked("darnet_pl.cli.prepare", "+dry_run=true", cwd=cwd, env=user_env(**EMPTY))
    assert ccii.returncode == 2
    assert only_line(ccii.stderr) == (
        "error: data=ccii needs the CC-CCII download: set data.root=/path/to/CC-CCII or DARNET_CCII_ROOT"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "line"),
    [
        ("task_name=../../escaped", "task_name=../../escaped: would leave the output folder"),
        ("task_name=/tmp/escaped", "task_name=/tmp/escaped: would leave the output folder"),
        ("task_name=", "task_name=: is empty"),
        ("paths.log_dir=", "paths.log_dir is empty: give a folder"),
        ("+experiment=../debug/tiny", "experiment=../debug/tiny: expected the name of a recipe in conf/experiment"),
    ],
    ids=["dot-dot", "absolute", "empty-task", "empty-log-dir", "experiment-path"],
)
def test_names_that_would_leave_the_output_folder_are_one_line(tmp_path: Path, override: str, line: str) -> None:
    cwd = tmp_path / "deep" / "cwd"
    cwd.mkdir(parents=True)
    recipe = () if override.startswith("+experiment") else ("+experiment=smoke",)
    result = run_forked("darnet_pl", *recipe, "debug=fdr", override, cwd=cwd)
    assert result.returncode == 2, result.stderr[-2000:]
    assert only_line(result.stderr).startswith(f"error: {line}")
    assert [p for p in tmp_path.rglob("*") if p != cwd and cwd not in p.parents] == [tmp_path / "deep"]
    assert list(cwd.iterdir()) == []
    assert not Path("/tmp/escaped").exists()


@pytest.mark.slow
def test_a_sweep_with_an_escaping_task_name_creates_no_job_folder(tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    result = run_forked(
        "darnet_pl", "+experiment=smoke", "debug=fdr", "task_name=../escaped", "fold=0,1", "-m", cwd=cwd
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert only_line(result.stderr).startswith("error: task_name=../escaped: would leave the output folder")
    assert list(tmp_path.rglob("*")) == [cwd]


def test_scan_ids_with_path_parts_stay_inside_the_prediction_folder(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from darnet_pl.data.phantoms import render_scan, synthetic_cohort
    from darnet_pl.utils.csv_cells import plain_cell
    from tests.helpers.ccii_tree import write_csv

    volume = to_uint8(render_scan(synthetic_cohort(1, (1, 1), seed=0)[0], SIZE)[0])
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    ids = ["../../../escaped", "/tmp/escaped", "a/b\\c", "..", ""]
    rows = [(write_nifti(inputs / f"scan{k}.nii.gz", volume).name, scan_id) for k, scan_id in enumerate(ids)]
    listed = write_csv(inputs / "list.csv", ("path", "scan_id"), rows)
    before = set(tmp_path.rglob("*"))
    out = tmp_path / "out"
    result = run_tool("darnet_pl.cli.predict", "--ckpt", tiny_checkpoint, "--cam", "--out", out, listed, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with (out / "predictions.csv").open(newline="") as handle:
        names = [plain_cell(row["scan"]) for row in csv.DictReader(handle)]  # as the package's readers read it
    assert len(set(names)) == len(ids) and not any("/" in n or "\\" in n or n in ("", ".", "..") for n in names)
    assert sorted(p.name for p in (out / "cam").iterdir()) == sorted(names)
    assert [p for p in set(tmp_path.rglob("*")) - before if p != out and out not in p.parents] == []
    assert not Path("/tmp/escaped").exists()

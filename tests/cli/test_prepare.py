"""`python -m darnet_pl.cli.prepare` through the real entry point: dry run (tiny tree and the real CC-CCII metadata),
a real conversion, and the strict mode's exit code."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tests.helpers.ccii_tree import (
    CHUNKS,
    ccii_scans,
    make_ccii_tree,
    scan_folder,
    write_csv,
    write_manifest,
    write_scan,
)
from tests.helpers.cli import env_under
from tests.helpers.forked import run_forked

SCANS = ccii_scans(counts={"10": 5, "21": 6, "31": 5})


def run_prepare(*args: str, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return run_forked("darnet_pl.cli.prepare", *args, cwd=cwd, timeout=timeout, env=env_under(cwd))


def row(stdout: str, name: str) -> str:
    """The line of the split summary for chunk ``name``."""
    return next(line for line in stdout.splitlines() if line.split()[:1] == [name])


def test_dry_run_prints_the_split_and_writes_no_cache(tmp_path):
    root = tmp_path / "CC-CCII"
    make_ccii_tree(root, SCANS)
    manifest = write_manifest(tmp_path / "split.csv", SCANS, CHUNKS)
    shutil.rmtree(root / "CP")  # a dry run reads the index only, never the images
    result = run_prepare(
        "data=ccii", f"data.root={root}", f"data.split_manifest={manifest}", "+dry_run=true", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "scans (patients)" in result.stdout and "dry run: nothing converted" in result.stdout
    assert row(result.stdout, "fold1").split()[1:] == ["1", "(1)", "1", "(1)", "1", "(1)", "3", "(3)"]
    assert row(result.stdout, "all").split()[-2:] == ["9", "(9)"]
    from_index = run_prepare(
        "data=ccii", f"data.root={root}", "data.split=stratified", "data.n_folds=2", "+dry_run=true", cwd=tmp_path
    )
    assert from_index.returncode == 0, from_index.stderr
    assert "scans: 9 (from the index, no images read)" in from_index.stdout
    assert [row(from_index.stdout, name) for name in ("fold1", "fold2", "test", "all")]
    assert not (tmp_path / "data").exists()


def test_a_real_run_converts_and_reports(tmp_path):
    root = tmp_path / "CC-CCII"
    make_ccii_tree(root, SCANS)
    (scan_folder(root, SCANS[4]) / "3.png").write_bytes(b"damaged")  # NCP 5/21, of 6 slices
    args = ("data=ccii", f"data.root={root}", "data.split=stratified", "data.n_folds=2", "data.size=[4,8,8]")
    result = run_prepare(*args, "data.source.workers=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    cache = next((tmp_path / "data" / "cache" / "ccii").iterdir())
    assert len(list(cache.glob("*.npy"))) == 8
    report = json.loads((cache / "ingest_report.json").read_text())
    assert (report["converted"], report["n_failed"]) == (8, 1)
    assert "ingest: 8 converted, 0 reused, 1 failed" in result.stdout
    assert f"report: {cache / 'ingest_report.json'}" in result.stdout
    assert "usable: 8 scan(s)" in result.stdout and row(result.stdout, "test")

    strict = run_prepare(*args, "data.source.workers=0", "data.source.strict=true", cwd=tmp_path)
    assert strict.returncode == 2
    errors = [line for line in strict.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "3.png" in errors[0] and "Traceback" not in strict.stderr


def test_dry_run_from_the_real_metadata_reproduces_table_one(tmp_path, ccii_metadata):
    root = tmp_path / "CC-CCII"
    root.mkdir()
    shutil.copy(ccii_metadata / "unzip_filenames.csv", root / "unzip_filenames.csv")
    manifest = ccii_metadata / "darnet_paper_split.csv"
    result = run_prepare(
        "data=ccii", f"data.root={root}", f"data.split_manifest={manifest}", "+dry_run=true", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    test_row = row(result.stdout, "test")
    for cell in ("419 (175)", "299 (165)", "222 (117)", "940 (457)"):
        assert cell in test_row, test_row
    assert "4178 (2742)" in row(result.stdout, "all")
    assert not (tmp_path / "data").exists()


def test_own_scans_dry_run_and_a_missing_scan_list(tmp_path):
    rows = []
    for k, cls in enumerate(("CP", "NCP", "Normal") * 3):
        write_scan(tmp_path / "scans" / f"s{k}", 3)
        rows.append((f"scans/s{k}", cls, f"p{k}"))
    scan_list = write_csv(tmp_path / "list.csv", ("path", "label", "patient_id"), rows)
    result = run_prepare("data=folder", f"data.scan_list={scan_list}", "data.n_folds=2", "+dry_run=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "split: stratified" in result.stdout and row(result.stdout, "all").split()[-2:] == ["9", "(9)"]
    assert not (tmp_path / "data").exists()
    missing = run_prepare("data=folder", cwd=tmp_path)
    assert missing.returncode == 2 and "error: data.scan_list is required" in missing.stderr

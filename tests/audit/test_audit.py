"""The shortcut audit: a planted shortcut is flagged, a cohort without one is not, and user mistakes exit 2.

Scans are tiny NIfTI volumes (24x24 slices) read at 8x32x32, in the main process, so a run takes about a second.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import darnet_pl
from darnet_pl.audit.probes import probe_specs, run_probe, run_probes
from darnet_pl.audit.signals import ScanSignals
from darnet_pl.cli.audit import main
from darnet_pl.data.records import ScanRecord
from tests.helpers.datasets import chest_volume, write_nifti

FAST = ["audit.workers=0", "audit.size=[8,32,32]"]


def folder_tree(root: Path, slices: dict[str, int], patients: int = 12) -> Path:
    """``scans.csv`` (path,label,patient_id) over one chest-like NIfTI per patient; ``slices``: class -> depth."""
    rows = []
    for c, (cls, depth) in enumerate(slices.items()):
        for j in range(patients):
            patient = f"{cls.lower()}{j:02d}"
            write_nifti(root / f"{patient}.nii.gz", chest_volume(100 * c + j, (depth, 24, 24)))
            rows.append((f"{patient}.nii.gz", cls, patient))
    path = root / "scans.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([("path", "label", "patient_id"), *rows])
    return path


def probes_of(path: Path) -> dict[str, dict]:
    listed = json.loads(path.read_text())["probes"]
    assert isinstance(listed, list) and all({"name", "auc", "flagged", "per_class"} <= set(p) for p in listed)
    return {p["name"]: p for p in listed}


def test_a_planted_slice_count_shortcut_is_flagged(tmp_path, monkeypatch, capsys):
    scans = folder_tree(tmp_path / "data", {"CP": 20, "NCP": 40})
    monkeypatch.chdir(tmp_path)  # audit.json goes to the current folder by default
    assert main(["data=folder", f"data.scan_list={scans}", *FAST]) == 0
    out = capsys.readouterr().out
    print(out)
    row = next(line for line in out.splitlines() if line.startswith("slice_count"))
    assert row.split()[1:4] == ["1.00", "1.00", "1.00"] and "CP, NCP" in row and "CP 20, NCP 40" in row
    probes = probes_of(tmp_path / "audit.json")
    slice_count = probes["slice_count"]
    assert slice_count["flagged"] and slice_count["auc"] >= 0.8 and slice_count["n_scans"] == 24
    assert slice_count["signals"] == ["n_slices"] and "slice count" in slice_count["reason"]
    assert slice_count["flagged_classes"] == ["CP", "NCP"]
    assert slice_count["per_class"]["CP"] == {**slice_count["per_class"]["CP"], "auc": 1.0, "partial": 1.0}
    assert probes["file_type"] == {**probes["file_type"], "auc": 0.5, "flagged": False, "reason": "constant"}
    assert probes["pre_segmented"]["auc"] is None and not probes["pre_segmented"]["flagged"]  # unknown here


def test_without_a_shortcut_no_probe_is_flagged(tmp_path, capsys):
    scans = folder_tree(tmp_path / "data", {"CP": 24, "NCP": 24})
    out = tmp_path / "report"
    assert main(["data=folder", f"data.scan_list={scans}", f"audit.out={out}", *FAST]) == 0
    assert "no probe flagged" in capsys.readouterr().out
    probes = probes_of(out / "audit.json")
    assert not any(p["flagged"] for p in probes.values())
    assert {"slice_count", "in_plane_size", "file_type", "border", "histogram"} <= set(probes)
    assert probes["slice_count"]["auc"] == 0.5 and probes["slice_count"]["reason"] == "constant"
    assert 0.0 <= probes["histogram"]["auc"] < 0.75 and probes["histogram"]["folds"] == 5
    assert [p.name for p in out.iterdir()] == ["audit.json"]  # written atomically: no temporary file left


def test_a_missing_scan_list_is_one_line_and_exit_2(tmp_path):
    missing = tmp_path / "nope.csv"
    package_root = str(Path(darnet_pl.__file__).resolve().parents[1])  # the child imports the same package as here
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, "-m", "darnet_pl.cli.audit", "data=folder", f"data.scan_list={missing}", *FAST],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(missing) in lines[0]
    assert not (tmp_path / "audit.json").exists()


@pytest.mark.parametrize(
    ("override", "names"),
    [("audit.threshold=abc", "audit.threshold=abc"), ("data.scans=x.csv", "data.scans"), ("data=nope", "data/nope")],
)
def test_bad_overrides_exit_2_naming_the_key(tmp_path, capsys, override, names):
    assert main(["data=folder", f"data.scan_list={tmp_path}/x.csv", override]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and names in err and len(err.splitlines()) == 1


def _signals(cls: str, patient: str, **values: object) -> ScanSignals:
    return ScanSignals(ScanRecord(cls, patient, "s", path="x"), dict(values))


def test_probes_on_three_classes_and_too_few_patients():
    scans = [
        _signals(cls, f"{cls}{j}", file_type=kind, n_slices=float(j % 3), segmented=float("nan"))
        for cls, kind in (("CP", "png"), ("NCP", "nifti"), ("Normal", "dicom"))
        for j in range(6)
        for _ in range(2)  # two scans per patient: grouped folds keep them together
    ]
    results = {r.name: r for r in run_probes(scans, 0.8)}
    assert results["file_type"].flagged and results["file_type"].auc == 1.0 and results["file_type"].folds == 5
    assert "CP png (100%)" in results["file_type"].reason
    assert not results["slice_count"].flagged and results["slice_count"].auc < 0.8
    assert results["pre_segmented"].auc is None and results["histogram"].reason == "not known for this data source"
    lonely = [*scans[:12], _signals("NCP", "only", file_type="nifti", n_slices=1.0)]
    slice_count = next(spec for spec in probe_specs() if spec.name == "slice_count")
    result = run_probe(slice_count, lonely, 0.8)
    assert result.auc is None and result.reason.startswith("too few patients: class NCP has 1")


def test_the_partial_threshold_is_the_largest_precise_set_cut_between_distinct_scores():
    from darnet_pl.audit.probes import class_auc, precise_threshold

    scores = np.array([0.9, 0.9, 0.8, 0.7, 0.7, 0.1])
    positive = np.array([1, 1, 1, 1, 0, 0], dtype=bool)
    assert precise_threshold(scores, positive, 0.95) == 0.8  # 0.7 would take the tied negative along (4/5)
    assert precise_threshold(scores, positive, 0.8) == 0.7
    assert precise_threshold(scores, ~positive, 0.95) is None
    # per fold, then averaged: fold 1 ranks perfectly, fold 2 inversely; pooled, fold 2's higher scores would win
    labels, folds = np.array([1, 0, 1, 0]), np.array([0, 0, 1, 1])
    assert class_auc(labels, np.array([0.2, 0.1, 0.8, 0.9]), 1, folds) == 0.5

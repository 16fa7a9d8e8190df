"""Bad data given to `python -m darnet_pl.cli.prepare` (and to training), through the real entry point, from an empty
folder: what the user sees (exit status, the one `error:` line, the warnings) and what was converted.

A problem with the input as a whole (a scan list with no rows, a CSV that is not UTF-8, a tree with no scans) is
one line `error: <file>: <problem>` and exit status 2; a problem with one scan is reported and that scan left out
while the others convert; oddities of a scan that is still read (a stray file, a gap) are warnings and notes.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
from pathlib import Path

import numpy as np

from darnet_pl.data.phantoms.dicom import save_ct_slice
from darnet_pl.data.records import ScanRecord
from tests.helpers.ccii_tree import ccii_scans, make_ccii_tree, scan_folder, write_csv, write_manifest, write_scan
from tests.helpers.cli import env_under
from tests.helpers.forked import run_forked

SCANS = ccii_scans(slices=3)
"""Three patients per class: enough for a stratified split into two folds and a test chunk."""

PROGRESS = re.compile(r"^ingest: +\d+%\|")
"""tqdm's progress bar lines (stderr, a real run only)."""

SMALL = ("data.size=[4,8,8]", "data.source.workers=0", "data.n_folds=2")


def run_here(module: str, *args: str, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    """``python -m <module> <args>`` from ``cwd``, with its data and outputs kept under ``cwd`` (and no traceback)."""
    env = env_under(cwd)
    env.pop("DARNET_FULL_ERROR", None)
    return run_forked(module, *args, cwd=cwd, timeout=timeout, env=env)


def prepare(*args: str, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return run_here("darnet_pl.cli.prepare", *args, *SMALL, cwd=cwd, timeout=timeout)


def prepare_ccii(root: Path, *args: str, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return prepare("data=ccii", f"data.root={root}", "data.split=stratified", *args, cwd=cwd, timeout=timeout)


def prepare_list(scan_list: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return prepare("data=folder", f"data.scan_list={scan_list}", *args, cwd=cwd)


def explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def the_error(result: subprocess.CompletedProcess[str]) -> str:
    """The one line on stderr of a refused run (exit 2, no traceback); the ingest's progress bar aside."""
    assert result.returncode == 2, explain(result)
    lines = [line for line in result.stderr.strip().splitlines() if not PROGRESS.match(line)]
    assert len(lines) == 1 and lines[0].startswith("error: "), explain(result)
    return lines[0]


def summary(result: subprocess.CompletedProcess[str]) -> str:
    """The ingest summary line of a successful run, without its time."""
    assert result.returncode == 0, explain(result)
    line = next(line for line in result.stdout.splitlines() if line.startswith("ingest: "))
    return re.sub(r" in \d+\.\d s$", "", line)


def warnings(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The logged warnings, without the timestamp and logger prefix."""
    return [line.split("[WARNING] - ", 1)[1] for line in result.stdout.splitlines() if "[WARNING] - " in line]


def cache_folder(cwd: Path, namespace_prefix: str) -> Path:
    (namespace,) = [p for p in (cwd / "data" / "cache").iterdir() if p.name.startswith(namespace_prefix)]
    (settings,) = list(namespace.iterdir())
    return settings


def usable(cwd: Path, namespace_prefix: str) -> list[tuple[str, str, str]]:
    """(class, patient, scan) of every scan in the prepared ``records.csv``."""
    with (cache_folder(cwd, namespace_prefix) / "records.csv").open(newline="") as handle:
        return [(r["class"], r["patient_id"], r["scan_id"]) for r in csv.DictReader(handle)]


def write_series(folder: Path, z_positions: list[float], value: float = 40.0) -> Path:
    """An axial CT series ``IM000.dcm``.. at the given slice positions (mm), one file per slice."""
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series = generate_uid()
    for k, z in enumerate(z_positions):
        save_ct_slice(folder / f"IM{k:03d}.dcm", np.full((8, 8), value), [0.0, 0.0, z], series, 0.7)
    return folder


# ---------------------------------------------------------------------------- CC-CCII trees


def test_symlink_loops_are_reported_and_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "CC-CCII"
    make_ccii_tree(root, SCANS)
    (root / "CP" / "a").symlink_to(".")  # os.walk(followlinks=True) walked 2^depth paths: it never ended
    (root / "CP" / "b").symlink_to(".")
    (root / "NCP" / "again").symlink_to(root / "NCP" / "NCP-1")  # a second way to one folder
    result = prepare_ccii(root, cwd=tmp_path, timeout=60)
    assert summary(result) == "ingest: 9 converted, 0 reused, 0 failed"
    assert warnings(result) == [
        f"{root}/CP/a: symlink loop (the same folder as {root}/CP, above it); not followed",
        f"{root}/CP/b: symlink loop (the same folder as {root}/CP, above it); not followed",
        f"{root}/NCP/again: the same folder as {root}/NCP/NCP-1 (reached through a symlink), already searched; "
        "not followed",
    ]
    assert len(usable(tmp_path, "ccii")) == 9


def test_a_scan_folder_name_of_200_characters_converts(tmp_path: Path) -> None:
    long_id = "s" * 200
    scans = [*SCANS[1:], ("CP", "1", long_id, 3)]
    root = tmp_path / "CC-CCII"
    make_ccii_tree(root, scans)
    result = prepare_ccii(root, cwd=tmp_path)
    assert summary(result) == "ingest: 9 converted, 0 reused, 0 failed"
    assert ("CP", "1", long_id) in usable(tmp_path, "ccii")
    volumes = sorted(p.name for p in cache_folder(tmp_path, "ccii").glob("*.npy"))
    assert len(volumes) == 9 and max(len(name) for name in volumes) < 100
    assert ScanRecord("CP", "1", long_id).key + ".npy" in volumes


def test_scans_whose_ids_differ_only_in_punctuation_are_two_scans(tmp_path: Path) -> None:
    # "a b" and "a-b" (or patient "1__2" scan "3" and patient "1" scan "2__3") made one cache key before:
    # one of the two was reported as a duplicate and dropped
    scans = [*SCANS, ("CP", "a b", "1", 3), ("CP", "a-b", "1", 3), ("NCP", "1__2", "3", 3), ("NCP", "1", "2__3", 3)]
    root = tmp_path / "CC-CCII"
    make_ccii_tree(root, scans)
    result = prepare_ccii(root, cwd=tmp_path)
    assert summary(result) == "ingest: 13 converted, 0 reused, 0 failed"
    found = usable(tmp_path, "ccii")
    assert {("CP", "a b", "1"), ("CP", "a-b", "1"), ("NCP", "1__2", "3"), ("NCP", "1", "2__3")} <= set(found)
    assert len(list(cache_folder(tmp_path, "ccii").glob("*.npy"))) == 13


def test_a_root_without_class_folders_is_one_line(tmp_path: Path) -> None:
    root = tmp_path / "CC-CCII"
    root.mkdir()
    assert the_error(prepare_ccii(root, cwd=tmp_path)) == (
        f"error: {root}: no class folder (CP, NCP, Normal) in the CC-CCII root"
    )
    assert not (tmp_path / "data").exists()


def test_class_folders_without_any_scan_are_one_line(tmp_path: Path) -> None:
    root = tmp_path / "CC-CCII"
    for name in ("CP", "NCP", "Normal"):
        (root / name).mkdir(parents=True)
    (root / "CP" / "CP-1" / "1" / "10").mkdir(parents=True)  # an empty scan folder: the only thing found
    assert the_error(prepare_ccii(root, cwd=tmp_path)) == (
        f"error: {root}: no usable scan under the class folders "
        "(expected <CLASS>/[<archive>/]<patient_id>/<scan_id>/<n>.png); "
        f"1 problem(s), e.g. {root}/CP/CP-1/1/10: empty scan folder: no slice images"
    )
    assert not (tmp_path / "data").exists()


def test_an_index_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    root = tmp_path / "CC-CCII"
    make_ccii_tree(root, SCANS)
    index = root / "unzip_filenames.csv"
    index.write_bytes(index.read_bytes() + "CP-1.zip,CP,Jos\xe9,1,3\n".encode("latin-1"))
    assert the_error(prepare_ccii(root, cwd=tmp_path)) == (
        f"error: {index}:11: not UTF-8 text (byte 0xe9): save it as UTF-8 CSV"
    )
    assert not (tmp_path / "data").exists()


def test_a_split_manifest_with_a_wrong_slice_count_is_named(tmp_path: Path) -> None:
    root = tmp_path / "CC-CCII"
    make_ccii_tree(root, SCANS)
    manifest = write_manifest(tmp_path / "split.csv", SCANS, dict.fromkeys("123456789", "fold1"))
    manifest.write_text(manifest.read_text().replace("CP,2,11,3,", "CP,2,11,three,"))
    result = prepare("data=ccii", f"data.root={root}", f"data.split_manifest={manifest}", cwd=tmp_path)
    assert the_error(result) == f"error: {manifest}:3: n_slice 'three' is not a number of slices"


# ---------------------------------------------------------------------------- scan lists and DICOM series


def test_a_stray_file_in_a_dicom_series_is_skipped_with_a_note(tmp_path: Path) -> None:
    series = write_series(tmp_path / "scans" / "p1", [0.0, 2.0, 4.0])
    (series / "README.txt").write_text("exported by the PACS on Monday\n")
    write_series(tmp_path / "scans" / "p2", [0.0, 2.0, 4.0])
    scan_list = write_csv(tmp_path / "list.csv", ("path", "label", "patient_id"), [("scans/p1", "CP", "1")])
    with scan_list.open("a") as handle:
        handle.write("scans/p2,NCP,2\n")
    result = prepare_list(scan_list, cwd=tmp_path)
    assert summary(result) == "ingest: 2 converted, 0 reused, 0 failed, 1 note(s) (in the report)"
    assert warnings(result) == [f"{series}: skipped 1 file(s) that are not DICOM: README.txt"]
    report = json.loads((cache_folder(tmp_path, "scans-list") / "ingest_report.json").read_text())
    assert [n["note"] for n in report["notes"]] == ["skipped 1 file(s) that are not DICOM: README.txt"]
    assert usable(tmp_path, "scans-list") == [("CP", "1", "p1"), ("NCP", "2", "p2")]


def test_a_gap_in_a_dicom_series_is_a_warning_naming_folder_and_gap(tmp_path: Path) -> None:
    series = write_series(tmp_path / "gap", [0.0, 2.0, 4.0, 54.0, 56.0])
    scan_list = write_csv(tmp_path / "list.csv", ("path", "label", "patient_id"), [("gap", "CP", "1")])
    result = prepare_list(scan_list, cwd=tmp_path)
    assert summary(result) == "ingest: 1 converted, 0 reused, 0 failed, 1 note(s) (in the report)"
    assert warnings(result) == [
        f"{series}: gap of 50.0 mm in the slice positions between IM002.dcm and IM003.dcm (the other slices are "
        "2.0 mm apart): slices missing? The volume is resampled by slice number, squeezed along depth at the gap"
    ]


def test_a_scan_list_with_only_a_header_is_one_line(tmp_path: Path) -> None:
    scan_list = write_csv(tmp_path / "list.csv", ("path", "label", "patient_id"), [])
    assert the_error(prepare_list(scan_list, cwd=tmp_path)) == (
        f"error: {scan_list}: no scans listed (only a header): add one row per scan, path,label,patient_id"
    )
    assert not (tmp_path / "data").exists()


def test_a_scan_list_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    write_scan(tmp_path / "scans" / "a", 3)
    scan_list = tmp_path / "list.csv"
    scan_list.write_bytes("path,label,patient_id\nscans/a,CP,Fran\xe7ois\n".encode("cp1252"))
    assert the_error(prepare_list(scan_list, cwd=tmp_path)) == (
        f"error: {scan_list}:2: not UTF-8 text (byte 0xe7): save it as UTF-8 CSV"
    )
    utf16 = tmp_path / "utf16.csv"
    utf16.write_text("path,label,patient_id\nscans/a,CP,1\n", encoding="utf-16")
    assert (
        the_error(prepare_list(utf16, cwd=tmp_path)) == f"error: {utf16}: the file is UTF-16 text: save it as UTF-8 CSV"
    )
    assert not (tmp_path / "data").exists()


def test_scan_list_columns_missing_or_separated_by_semicolons(tmp_path: Path) -> None:
    no_path = write_csv(tmp_path / "no_path.csv", ("file", "label", "patient_id"), [("scans/a", "CP", "1")])
    assert the_error(prepare_list(no_path, cwd=tmp_path)) == (
        f"error: {no_path}: missing column(s) ['path']: expected path,label,patient_id[,scan_id]"
    )
    semicolons = tmp_path / "semicolons.csv"
    semicolons.write_text("path;label;patient_id\nscans/a;CP;1\n")
    assert the_error(prepare_list(semicolons, cwd=tmp_path)) == (
        f"error: {semicolons}: missing column(s) ['path', 'label', 'patient_id']: expected "
        "path,label,patient_id[,scan_id] (the header is separated by semicolons: save the file with commas)"
    )


def test_duplicate_rows_and_two_paths_with_one_scan_id_are_one_line(tmp_path: Path) -> None:
    header = ("path", "label", "patient_id")
    twice = write_csv(tmp_path / "twice.csv", header, [("scans/a", "CP", "1"), ("scans/a", "CP", "1")])
    assert the_error(prepare_list(twice, cwd=tmp_path)) == (
        f"error: {twice}:3: scan 1/a (CP) is listed twice (first on line 2)"
    )
    same_id = write_csv(tmp_path / "same_id.csv", header, [("x/series1", "CP", "1"), ("y/series1", "CP", "1")])
    assert the_error(prepare_list(same_id, cwd=tmp_path)) == (
        f"error: {same_id}:3: scan 1/series1 (CP) is listed twice (first on line 2) for two paths, "
        f"{tmp_path}/x/series1 and {tmp_path}/y/series1: give them distinct scan_id values"
    )


def test_scan_ids_that_differ_only_in_punctuation_are_two_scans(tmp_path: Path) -> None:
    header = ("path", "label", "patient_id", "scan_id")
    write_scan(tmp_path / "scans" / "one", 3)
    write_scan(tmp_path / "scans" / "two", 3)
    scan_list = write_csv(
        tmp_path / "list.csv", header, [("scans/one", "CP", "1", "a b"), ("scans/two", "CP", "1", "a-b")]
    )
    result = prepare_list(scan_list, cwd=tmp_path)
    assert summary(result) == "ingest: 2 converted, 0 reused, 0 failed"
    assert usable(tmp_path, "scans-list") == [("CP", "1", "a b"), ("CP", "1", "a-b")]


def test_a_list_where_every_scan_fails_is_an_error_naming_the_report(tmp_path: Path) -> None:
    header = ("path", "label", "patient_id")
    scan_list = write_csv(tmp_path / "list.csv", header, [("missing/a", "CP", "1"), ("missing/b", "NCP", "2")])
    result = prepare_list(scan_list, cwd=tmp_path)
    report = cache_folder(tmp_path, "scans-list") / "ingest_report.json"
    assert the_error(result) == (
        f"error: {report}: no usable scan, all 2 failed (e.g. {tmp_path}/missing/a: not found)"
    )
    assert json.loads(report.read_text())["n_failed"] == 2
    assert usable(tmp_path, "scans-list") == []


# ---------------------------------------------------------------------------- training presets


def test_debug_tiny_trains_on_a_ccii_tree(tmp_path: Path) -> None:
    root = tmp_path / "CC-CCII"
    make_ccii_tree(root, SCANS)
    args = ("+experiment=smoke", "debug=tiny", "data=ccii", f"data.root={root}", "data.split=stratified")
    composed = run_here("darnet_pl", *args, "--cfg", "job", cwd=tmp_path)
    assert composed.returncode == 0, explain(composed)
    assert "patients_per_class" not in composed.stdout.split("\ndata:", 1)[1].split("\nmodel:", 1)[0]
    result = run_here(
        "darnet_pl", *args, "data.n_folds=2", "data.source.workers=0", "logger=none", cwd=tmp_path, timeout=180
    )
    assert result.returncode == 0, explain(result)
    (metrics,) = list((tmp_path / "outputs").rglob("test_metrics.json"))
    assert json.loads(metrics.read_text())
    assert scan_folder(root, SCANS[0]).is_dir()


CONF = Path(__file__).resolve().parents[2] / "src" / "darnet_pl" / "conf"
PRESETS = sorted(p.stem for p in (CONF / "debug").glob("*.yaml"))
EXPERIMENTS = [None, "smoke", "smoke_ablation"]
"""The recipes meant for any source (the paper's ones are CC-CCII's)."""


def test_every_debug_preset_builds_every_data_source(tmp_path: Path) -> None:
    """A preset or recipe that sets a key one source does not take (``data.source.patients_per_class`` with
    ``data=ccii``) composes fine and fails only when the data module is built: build them all, alone and under
    the source-agnostic recipes."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    make_ccii_tree(tmp_path / "CC-CCII", SCANS[:1])
    sources = {
        "synthetic": [],
        "ccii": [f"data.root={tmp_path / 'CC-CCII'}", "data.split=stratified", f"data.cache_dir={tmp_path}/c"],
        "folder": [f"data.scan_list={tmp_path / 'list.csv'}", f"data.cache_dir={tmp_path}/c"],
    }
    assert PRESETS and all((CONF / "experiment" / f"{name}.yaml").is_file() for name in EXPERIMENTS[1:])
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for preset in PRESETS:
            for experiment in EXPERIMENTS:
                for data, extra in sources.items():
                    recipe = [f"+experiment={experiment}"] if experiment else []
                    overrides = [*recipe, f"data={data}", *extra, f"+debug={preset}"]
                    cfg = compose(config_name="config", overrides=overrides)
                    datamodule = instantiate(cfg.data, _convert_="all")
                    assert datamodule.source.describe()["source"] == data, overrides

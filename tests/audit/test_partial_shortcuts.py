"""Partial shortcuts on CC-CCII-shaped trees: real ids, real pre-segmented shares, one class marked in part.

The trees (tests/helpers/shortcut_tree) hold about 40 scans per class of real CC-CCII patients, audited with the
``data=ccii`` defaults: the packaged cleaning list's real ``is_seg`` flags and the packaged paper split's chunks.
A shortcut of part of one class must be flagged for that class only; trees without any must flag nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from darnet_pl.cli.audit import main
from tests.helpers.shortcut_tree import Plant, null_cleaning_list, real_scans, write_tree

FAST = ["audit.workers=0", "audit.size=[8,32,32]"]
PER_CLASS = 40
NULL_SEEDS = range(5)


@pytest.fixture(scope="module")
def planted_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real pre-segmented shares, plus JPEG files for 40% of NCP patients and 8 slices for 35% of CP ones."""
    root = tmp_path_factory.mktemp("ccii-shaped")
    plants = [Plant("NCP", 0.4, jpeg=True), Plant("CP", 0.35, slices=8)]
    return write_tree(root, real_scans(PER_CLASS, seed=0), seed=0, plants=plants)


def audit_json(folder: Path) -> dict:
    return json.loads((folder / "audit.json").read_text())


def test_partial_shortcuts_are_flagged_for_their_class(planted_tree: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "audit"
    assert main(["data=ccii", f"data.root={planted_tree}", f"audit.out={out}", *FAST]) == 0
    printed = capsys.readouterr().out
    print(printed)
    audit = audit_json(out)
    probes = {p["name"]: p for p in audit["probes"]}
    rows = {(r["probe"], r["class"]): r for r in audit["per_class"]}
    assert len(audit["per_class"]) == 3 * len(probes) and audit["version"] == 2

    # the real flag: 62% of Normal, 10% of NCP, no CP segmented: Normal only, by its one-vs-rest AUC
    segmented = probes["pre_segmented"]
    assert segmented["flagged_classes"] == ["Normal"] and "Normal 62%" in segmented["summary"]
    assert rows[("pre_segmented", "Normal")]["auc"] >= 0.75 > segmented["auc"]  # macro AUC alone would miss it
    assert rows[("pre_segmented", "Normal")]["partial"] == 0  # segmented scans are Normal at 0.86 only
    # JPEG files for 40% of NCP, 8 slices for 35% of CP: identified at precision 1 out of fold, AUC too low
    for probe, cls, share in (("file_type", "NCP", 0.4), ("slice_count", "CP", 0.35)):
        row = rows[(probe, cls)]
        assert probes[probe]["flagged_classes"] == [cls], probes[probe]
        assert row["partial_precision"] == 1.0 and abs(row["partial"] - share) < 0.1 and row["auc"] < 0.75
        assert f"{cls} (" in probes[probe]["reason"] and "identified at precision 1.00" in probes[probe]["reason"]
    assert "pre_segmented" in printed and "flagged signals per subset of the split:" in printed

    # where each flagged signal sits in the paper's split: every chunk and the pooled training set
    subsets = [r for r in audit["subsets"] if (r["probe"], r["class"]) == ("pre_segmented", "Normal")]
    assert {r["subset"] for r in subsets} == {"fold1", "fold2", "fold3", "fold4", "fold5", "train", "test"}
    test, train = (next(r for r in subsets if r["subset"] == s) for s in ("test", "train"))
    assert test["n_scans"] + train["n_scans"] == audit["n_scans"] == segmented["n_scans"]
    assert "Normal" in test["summary"] and test["auc"] is not None and 0 <= test["auc"] <= 1


def test_trees_without_shortcuts_flag_nothing(tmp_path: Path, capsys) -> None:
    """Real ids, a segmented flag at 30% of every class, the same slice counts and files everywhere."""
    highest = {"auc": (0.0, ""), "partial": (0.0, "")}
    for seed in NULL_SEEDS:
        root = tmp_path / f"null{seed}"
        scans = real_scans(PER_CLASS, seed=100 + seed)
        flags = null_cleaning_list(root / "cleaning.csv", scans, share=0.3, seed=seed)
        write_tree(root, scans, seed=seed, segmented=flags)
        cleaning = f"data.source.cleaning_csv={root / 'cleaning.csv'}"
        assert main(["data=ccii", f"data.root={root}", cleaning, f"audit.out={root}", *FAST]) == 0
        audit = audit_json(root)
        assert not [p["name"] for p in audit["probes"] if p["flagged"]], capsys.readouterr().out
        assert audit["subsets"] == []
        for row in audit["per_class"]:
            where = f"seed {seed} {row['probe']} {row['class']}"
            if row["auc"] is not None and row["auc"] > highest["auc"][0]:
                highest["auc"] = (row["auc"], where)
            precise = (row["partial_precision"] or 0) >= 0.95
            if precise and row["partial"] > highest["partial"][0]:
                highest["partial"] = (row["partial"], where)
    capsys.readouterr()
    print(f"highest null one-vs-rest AUC {highest['auc'][0]:.3f} ({highest['auc'][1]}); highest share identified at "
          f"precision >= 0.95: {highest['partial'][0]:.3f} ({highest['partial'][1]})")  # fmt: skip
    assert highest["auc"][0] < 0.7 and highest["partial"][0] < 0.1


def test_model_checks_read_the_scans_with_the_checkpoints_preprocessing(
    planted_tree: Path, tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    """Any checkpoint runs on the test chunk of a CC-CCII tree: one row per flagged probe, class and metric."""
    out = tmp_path / "audit"
    args = ["--ckpt", str(tiny_checkpoint), "data=ccii", f"data.root={planted_tree}", f"audit.out={out}"]
    assert main([*args, "audit.bootstrap=50", *FAST]) == 0
    assert "model checks on test" in capsys.readouterr().out
    audit = audit_json(out)
    checks = audit["model_checks"]
    assert checks["checkpoints"] == [str(tiny_checkpoint.resolve())] and checks["subset"] == "test"
    flagged = {(p["name"], c) for p in audit["probes"] for c in p["flagged_classes"]}
    assert {(r["probe"], r["class"]) for r in checks["stratified"]} == flagged
    assert {(r["probe"], r["class"]) for r in checks["feature_probes"]} == flagged
    test_scans = next(r["n_scans"] for r in audit["subsets"] if r["subset"] == "test")
    accuracy = [r for r in checks["stratified"] if r["metric"] == "accuracy"]
    assert accuracy and all(r["n_yes"] + r["n_no"] == test_scans for r in accuracy)
    assert all(r["gap_ci"] is None or r["gap_ci"][0] <= r["gap"] <= r["gap_ci"][1] for r in checks["stratified"])


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--ckpt", "{tmp}/missing.ckpt"], "missing.ckpt"),
        (["--ckpt", "{ckpt}", "audit.model_subset=fold9"], "audit.model_subset=fold9"),
        (["--ckpt"], "--ckpt needs"),
        (["--checkpoint", "x"], "--checkpoint: unknown option"),
    ],
)
def test_model_check_mistakes_are_one_line_and_exit_2(
    args: list[str], names: str, planted_tree: Path, tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    filled = [a.format(tmp=tmp_path, ckpt=tiny_checkpoint) for a in args]
    assert main(["data=ccii", f"data.root={planted_tree}", f"audit.out={tmp_path}", *FAST, *filled]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and names in err and len(err.splitlines()) == 1
    assert not (tmp_path / "audit.json").exists()

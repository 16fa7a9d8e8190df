"""Checkpoints that are not what they claim, given to ``darnet-predict``, ``darnet-evaluate``, ``darnet-export`` and a
resumed training run as a user runs them (subprocesses in an empty folder): one line naming the file and the first
bad key or tensor, exit 2, nothing written - never a row of NaN probabilities, never an allocation traceback.

The files are the tiny trained checkpoint with one thing changed (tests.helpers.checkpoints.edited_checkpoint).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers.checkpoints import edited_checkpoint, phantom_volumes, with_values, write_nifti, write_scan_list
from tests.helpers.faults import every_file, only_line, run_tool
from tests.helpers.forked import run_forked
from tests.helpers.user import explain, user_env

PREDICT, EVALUATE, EXPORT = "darnet_pl.cli.predict", "darnet_pl.cli.evaluate", "darnet_pl.cli.export"
BN_VAR = "net.layer1.0.bn1.running_var"
NAN_ADVICE = "the model would predict NaN; use another checkpoint (an earlier epoch) or retrain"


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One phantom scan per class as NIfTI, and a labelled list of them."""
    folder = tmp_path_factory.mktemp("checkpoint-fault-scans")
    rows = []
    for i, (label, volume) in enumerate(phantom_volumes(1)):
        write_nifti(folder / f"s{i}.nii.gz", volume)
        rows.append({"path": f"s{i}.nii.gz", "label": label})
    return {"scan": folder / "s0.nii.gz", "list": write_scan_list(folder / "labelled.csv", rows)}


def run(tool: str, ckpt: Path, scans: dict[str, Path], out: Path, cwd: Path):
    """``tool`` on ``ckpt`` with the arguments a user gives it."""
    args = {
        PREDICT: ["--out", out, scans["scan"]],
        EVALUATE: ["--scans", scans["list"], "--out", out, "--bootstrap", "0"],
        EXPORT: ["--format", "torchscript", "--out", out],
    }[tool]
    return run_tool(tool, "--ckpt", ckpt, *args, cwd=cwd)


def assert_refused(result, line: str, out: Path, cwd: Path) -> None:
    assert result.returncode == 2, explain(result)
    assert only_line(result.stderr) == line
    assert not out.exists() and every_file(cwd) == []


# ------------------------------------------------------------------------------------ non-finite models


@pytest.mark.parametrize("tool", [PREDICT, EVALUATE, EXPORT], ids=["predict", "evaluate", "export"])
def test_a_nan_batchnorm_statistic_is_refused_naming_the_tensor(tiny_checkpoint, scans, tool, tmp_path, cwd):
    ckpt = edited_checkpoint(tiny_checkpoint, tmp_path / "nan.ckpt", tensors=with_values(tiny_checkpoint, BN_VAR, 0,
                                                                                          float("nan")))  # fmt: skip
    out = tmp_path / "out"
    line = (
        f"error: {ckpt}: {BN_VAR} holds non-finite values (1 NaN of 4): the model would predict NaN; use another "
        "checkpoint (an earlier epoch) or retrain"
    )
    assert_refused(run(tool, ckpt, scans, out, cwd), line, out, cwd)


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("net.stem.0.weight", float("inf"), "holds non-finite values (1 Inf of 588)"),
        ("net.layer2.0.bn2.running_mean", float("-inf"), "holds non-finite values (1 Inf of 8)"),
        ("net.fc.bias", float("nan"), "holds non-finite values (1 NaN of 3)"),
    ],
    ids=["inf-conv-weight", "inf-bn-mean", "nan-classifier-bias"],
)
def test_the_first_non_finite_tensor_is_named(tiny_checkpoint, scans, key, value, problem, tmp_path, cwd):
    ckpt = edited_checkpoint(
        tiny_checkpoint, tmp_path / "bad.ckpt", tensors=with_values(tiny_checkpoint, key, 2, value)
    )
    out = tmp_path / "out"
    line = f"error: {ckpt}: {key} {problem}: {NAN_ADVICE}"
    assert_refused(run(PREDICT, ckpt, scans, out, cwd), line, out, cwd)


def test_a_negative_batchnorm_variance_is_refused(tiny_checkpoint, scans, tmp_path, cwd):
    ckpt = edited_checkpoint(
        tiny_checkpoint, tmp_path / "neg.ckpt", tensors=with_values(tiny_checkpoint, BN_VAR, 1, -2.5)
    )
    out = tmp_path / "out"
    line = (
        f"error: {ckpt}: {BN_VAR} holds negative variances (lowest -2.5): BatchNorm would output NaN; use another "
        "checkpoint or retrain"
    )
    assert_refused(run(EVALUATE, ckpt, scans, out, cwd), line, out, cwd)


@pytest.mark.parametrize("tool", [PREDICT, EVALUATE, EXPORT], ids=["predict", "evaluate", "export"])
def test_finite_weights_whose_output_overflows_are_refused(tiny_checkpoint, scans, tool, tmp_path, cwd):
    weight = torch.load(tiny_checkpoint, weights_only=True)["state_dict"]["net.fc.weight"]
    ckpt = edited_checkpoint(tiny_checkpoint, tmp_path / "huge.ckpt",
                             tensors={"net.fc.weight": torch.full_like(weight, 3e38)})  # fmt: skip
    out = tmp_path / "out"
    where = "on a test input" if tool == EXPORT else f"for {scans['scan']}"
    line = (
        f"error: {ckpt}: the model's output is not finite (NaN or Inf) {where}: its weights overflow; use another "
        "checkpoint"
    )
    assert_refused(run(tool, ckpt, scans, out, cwd), line, out, cwd)


# ------------------------------------------------------------------ claims checked before anything is built


@pytest.mark.parametrize(
    ("claims", "problem"),
    [
        ({"width": 10**9}, "hyper_parameters.width is 1000000000: expected an integer from 1 to 512"),
        ({"width": "64"}, "hyper_parameters.width is '64': expected an integer from 1 to 512"),
        ({"input_size": (4096, 32, 32)}, "hyper_parameters.input_size[0] is 4096: expected an integer from 1 to 1024"),
        ({"input_size": (1024, 1024, 1024)},
         "hyper_parameters.input_size is [1024, 1024, 1024]: more than 134217728 voxels (512^3)"),
        ({"input_size": (16, 32)}, "hyper_parameters.input_size is [16, 32]: expected [D, H, W]"),
        ({"attention": "quad"}, "hyper_parameters.attention is 'quad': expected one of none, ca, da, dual"),
        ({"class_names": ("CP", "CP", "Normal")}, "hyper_parameters.class_names names 'CP' twice"),
        ({"class_names": ("CP", " ", "Normal")}, "hyper_parameters.class_names[1] is ' ': an empty class name"),
        ({"class_names": ("CP",)}, "hyper_parameters.class_names is ['CP']: expected a list of 2 to 256 class names"),
        ({"class_names": ("CP", "NCP\n", "Normal")},
         "hyper_parameters.class_names[1] is 'NCP\\n': not a printable name of at most 64 characters"),
    ],
    ids=["huge-width", "width-text", "huge-side", "huge-volume", "two-sides", "attention", "duplicate-class",
         "empty-class", "one-class", "newline-class"],
)  # fmt: skip
def test_implausible_claims_are_one_line_before_any_allocation(tiny_checkpoint, scans, claims, problem, tmp_path, cwd):
    ckpt = edited_checkpoint(tiny_checkpoint, tmp_path / "claims.ckpt", hyper_parameters=claims)
    out = tmp_path / "out"
    assert_refused(run(PREDICT, ckpt, scans, out, cwd), f"error: {ckpt}: {problem}", out, cwd)


CLAIMED = (
    "the weights do not fit the DARNet(attention={a}, width={w}, input_size=[16, 32, 32], {k} classes) the checkpoint "
    "claims"
)


@pytest.mark.parametrize(
    ("tool", "edit", "problem"),
    [
        (EXPORT, {"hyper_parameters": {"width": 8}},
         CLAIMED.format(a="dual", w=8, k=3) + ": net.stem.0.weight is [4, 1, 3, 7, 7], expected [8, 1, 3, 7, 7]"),
        (EVALUATE, {"hyper_parameters": {"class_names": ("CP", "NCP", "Normal", "TB")}},
         CLAIMED.format(a="dual", w=4, k=4) + ": net.fc.weight is [3, 32], expected [4, 32]"),
        (PREDICT, {"hyper_parameters": {"attention": "none"}},
         CLAIMED.format(a="none", w=4, k=3) + ": it holds net.layer1.0.depth_attention.gate.0.weight, which that "
                                              "model has not"),
        (PREDICT, {"drop": ("net.fc.bias",)}, CLAIMED.format(a="dual", w=4, k=3) + ": net.fc.bias is missing"),
        (PREDICT, {"tensors": {"net.fc.bias": torch.zeros(3, 3)}},
         CLAIMED.format(a="dual", w=4, k=3) + ": net.fc.bias is [3, 3], expected [3]"),
    ],
    ids=["width-vs-tensors", "classes-vs-tensors", "attention-vs-tensors", "missing-tensor", "wrong-shape"],
)  # fmt: skip
def test_claims_that_disagree_with_the_tensors_are_one_line(tiny_checkpoint, scans, tool, edit, problem, tmp_path,
                                                           cwd):  # fmt: skip
    ckpt = edited_checkpoint(tiny_checkpoint, tmp_path / "mismatch.ckpt", **edit)
    out = tmp_path / "out"
    assert_refused(run(tool, ckpt, scans, out, cwd), f"error: {ckpt}: {problem}", out, cwd)


@pytest.mark.slow
def test_a_resumed_run_refuses_a_nan_checkpoint_the_same_way(tiny_checkpoint, tmp_path):
    ckpt = edited_checkpoint(tiny_checkpoint, tmp_path / "nan.ckpt", tensors=with_values(tiny_checkpoint, BN_VAR, 0,
                                                                                          float("nan")))  # fmt: skip
    result = run_forked("darnet_pl", "+experiment=smoke", "debug=tiny", "logger=none", f"ckpt_path={ckpt}",
                        cwd=tmp_path, timeout=300, env=user_env())  # fmt: skip
    assert result.returncode == 2, explain(result)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {ckpt}: {BN_VAR} holds non-finite values (1 NaN of 4): the model would predict NaN; "
                      "use another checkpoint (an earlier epoch) or retrain"], explain(result)  # fmt: skip
    assert "Traceback" not in result.stderr

"""``darnet-export`` under bad input and faults, run as a subprocess in an empty folder: one line, exit 2, and no
file - whole, partial or temporary - left behind."""

from __future__ import annotations

import pytest

from darnet_pl.utils.io import output_folder
from tests.helpers.faults import every_file, only_line, run_tool, tmpfs

EXPORT = "darnet_pl.cli.export"


def test_full_disk_is_one_line_not_an_abort_and_leaves_nothing(tiny_checkpoint, tmp_path, cwd):
    with tmpfs(tmp_path / "full", size="200k") as full:  # the TorchScript file is ~0.9 MB
        for out in (full / "new", full):
            result = run_tool(EXPORT, "--ckpt", tiny_checkpoint, "--format", "torchscript", "--out", out, cwd=cwd)
            assert result.returncode == 2, result.stderr  # LibTorch's own writer aborted here (134)
            assert only_line(result.stderr) == (
                f"error: {out / 'tiny.torchscript.pt'}: cannot write the exported model (No space left on device)"
            )
            assert every_file(full) == []  # no hidden temporary file, no half of the export, no empty folder
    assert every_file(cwd) == []


def test_read_only_folder_is_one_line(tiny_checkpoint, tmp_path, cwd):
    with tmpfs(tmp_path / "ro", read_only=True) as ro:
        for out in (ro / "new", ro):
            result = run_tool(EXPORT, "--ckpt", tiny_checkpoint, "--format", "torchscript", "--out", out, cwd=cwd)
            assert result.returncode == 2
            assert (
                only_line(result.stderr)
                == f"error: {out}: cannot write into this output folder (Read-only file system)"
            )


@pytest.mark.parametrize("name", ["../x", "sub/x", "..", "", "/tmp/x"])
def test_name_with_a_path_is_refused(tiny_checkpoint, tmp_path, cwd, name):
    out = tmp_path / "out"
    result = run_tool(EXPORT, "--ckpt", tiny_checkpoint, "--out", out, "--name", name, cwd=cwd)
    assert result.returncode == 2
    assert only_line(result.stderr) == (
        f"error: --name {name!r}: must be a plain file name stem (no folders, no '..'); use --out for the folder"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd"] and every_file(cwd) == []


def test_opsets_the_exporter_cannot_make_are_refused_before_writing(tiny_checkpoint, tmp_path, cwd):
    pytest.importorskip("onnxscript")
    onnx = pytest.importorskip("onnx")
    newest = onnx.defs.onnx_opset_version()
    for opset, problem in (
        (5, "DARNet's export needs opset 18 or later"),
        (newest + 1, f"the installed onnx {onnx.__version__} knows opsets up to {newest}"),
    ):
        result = run_tool(EXPORT, "--ckpt", tiny_checkpoint, "--out", tmp_path / "out", "--opset", opset, cwd=cwd)
        assert result.returncode == 2
        assert only_line(result.stderr) == f"error: --opset {opset}: {problem}"
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("options", "line"),
    [
        (["--opset", "18.5"], "error: --opset: invalid int value: '18.5' (see darnet-export --help)"),
        (["--format", "tflite"], "error: --format: invalid choice: 'tflite' (choose from 'torchscript', 'onnx', "
                                 "'bundle') (see darnet-export --help)"),
    ],
    ids=["opset-float", "format"],
)  # fmt: skip
def test_bad_options_are_one_line(tiny_checkpoint, tmp_path, cwd, options, line):
    result = run_tool(EXPORT, "--ckpt", tiny_checkpoint, "--out", tmp_path / "out", *options, cwd=cwd)
    assert result.returncode == 2
    assert only_line(result.stderr) == line


def test_a_checkpoint_of_random_bytes_is_one_line(tmp_path, cwd):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(bytes(range(256)) * 16)
    result = run_tool(EXPORT, "--ckpt", junk, "--out", tmp_path / "out", cwd=cwd)
    assert result.returncode == 2
    assert only_line(result.stderr) == f"error: {junk}: not a PyTorch checkpoint (not a torch.save archive)"
    assert not (tmp_path / "out").exists()


def test_a_second_export_into_the_same_folder_is_refused(tiny_checkpoint, tmp_path, cwd):
    out = tmp_path / "out"
    with output_folder(out, "darnet-export"):  # what a first darnet-export holds while it writes
        result = run_tool(EXPORT, "--ckpt", tiny_checkpoint, "--format", "torchscript", "--out", out, cwd=cwd)
    assert result.returncode == 2
    assert only_line(result.stderr) == (
        f"error: {out}: another darnet-export is writing into this folder right now; wait for it to finish"
    )
    assert every_file(out) == []

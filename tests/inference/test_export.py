"""``darnet-export`` (TorchScript and ONNX parity, embedded metadata, atomic and non-clobbering writes) and the
safe checkpoint loader (variants, sizes, non-checkpoints, pickled code)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch

from darnet_pl.cli.export import main
from darnet_pl.inference.export import read_onnx_metadata, read_torchscript_metadata
from darnet_pl.runs.checkpoints import CheckpointError, load_for_inference, resolve_checkpoints
from darnet_pl.runs.jobs import JobSelectionError
from tests.helpers.checkpoints import make_checkpoint

SIZE = (16, 32, 32)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "epoch000.ckpt", seed=5)


def logits(model: torch.nn.Module, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand((batch, 1, *SIZE), generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        return x, model(x)


def test_torchscript_export_matches_and_carries_the_metadata(ckpt, tmp_path, capsys):
    assert main(["--ckpt", str(ckpt), "--format", "torchscript", "--out", str(tmp_path)]) == 0
    path = tmp_path / "epoch000.torchscript.pt"
    model, meta = load_for_inference(ckpt)
    scripted = torch.jit.load(str(path))
    for batch in (1, 4):
        x, reference = logits(model, batch)
        assert (scripted(x) - reference).abs().max().item() < 1e-4
    embedded = read_torchscript_metadata(path)
    sidecar = json.loads((tmp_path / "epoch000.json").read_text())
    for data in (embedded, sidecar):
        assert data["class_names"] == ["CP", "NCP", "Normal"] and data["input_size"] == list(SIZE)
        assert data["preprocessing"] == meta.preprocessing and data["attention"] == "dual"
        assert data["input"]["shape"] == ["N", 1, *SIZE]
    assert sidecar["files"] == {"torchscript": path.name} and sidecar["onnx_opset"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch000.json", "epoch000.torchscript.pt"]
    capsys.readouterr()
    assert main(["--ckpt", str(ckpt), "--format", "torchscript", "--out", str(tmp_path)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["--ckpt", str(ckpt), "--format", "torchscript", "--out", str(tmp_path), "--overwrite"]) == 0


def test_onnx_export_matches_with_onnxruntime(ckpt, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    assert main(["--ckpt", str(ckpt), "--format", "onnx", "--out", str(tmp_path), "--name", "model"]) == 0
    path = tmp_path / "model.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["ct"]
    model, meta = load_for_inference(ckpt)
    for batch in (1, 3):
        x, reference = logits(model, batch)
        (out,) = session.run(["logits"], {"ct": x.numpy()})
        assert (torch.from_numpy(out) - reference).abs().max().item() < 1e-4
    embedded = read_onnx_metadata(path)
    assert embedded["preprocessing"] == meta.preprocessing and embedded["onnx_opset"] == 18
    assert json.loads((tmp_path / "model.json").read_text())["files"] == {"onnx": "model.onnx"}


def test_onnx_opset_below_18_is_refused(ckpt, tmp_path, capsys):
    pytest.importorskip("onnxscript")
    assert main(["--ckpt", str(ckpt), "--format", "onnx", "--out", str(tmp_path), "--opset", "16"]) == 2
    assert "opset" in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_onnx_without_the_export_extra_is_one_line(ckpt, tmp_path, capsys, monkeypatch):
    import importlib

    real = importlib.import_module

    def missing_onnxscript(name: str, *args, **kwargs):
        if name == "onnxscript":
            raise ImportError(name=name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", missing_onnxscript)
    assert main(["--ckpt", str(ckpt), "--out", str(tmp_path)]) == 2
    assert "pip install 'darnet-pl[export]'" in capsys.readouterr().err and not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------ safe loading


def test_load_for_inference_gives_an_eval_model_and_its_metadata(ckpt):
    model, meta = load_for_inference(ckpt, expect_attention="dual", expect_input_size=SIZE)
    assert not model.training and model.input_size == SIZE and model.attention == "dual"
    assert meta.class_names == ("CP", "NCP", "Normal") and meta.width == 4
    assert meta.preprocessing_origin == "synthetic" and meta.preprocessing["size"] == list(SIZE)
    assert meta.source["source"] == "synthetic"


def test_another_variant_or_size_is_refused_in_one_line(ckpt):
    with pytest.raises(CheckpointError, match=r"attention='dual'.*expected attention='ca'") as info:
        load_for_inference(ckpt, expect_attention="ca")
    assert str(ckpt) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match=r"input size \[16, 32, 32\], expected \[64, 224, 224\]"):
        load_for_inference(ckpt, expect_input_size=(64, 224, 224))
    with pytest.raises(CheckpointError, match="classes"):
        load_for_inference(ckpt, expect_class_names=("COVID", "Other"))


def test_non_checkpoints_are_named(tmp_path):
    text = tmp_path / "notes.ckpt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(text))}: not a PyTorch checkpoint"):
        load_for_inference(text)
    tensors = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, tensors)
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(tensors))}: not a DARNet Lightning checkpoint"):
        load_for_inference(tensors)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_for_inference(tmp_path / "gone.ckpt")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_for_inference(tmp_path)


def test_pickled_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": _Touch(marker)}, evil)
    with pytest.raises(CheckpointError, match=r"refused: the file holds the Python object .*_Touch"):
        load_for_inference(evil)
    assert not marker.exists()
    shell = tmp_path / "shell.ckpt"
    torch.save({"x": _System("touch " + str(marker))}, shell)
    with pytest.raises(CheckpointError, match=r"posix\.system|os\.system|nt\.system"):
        load_for_inference(shell)
    assert not marker.exists()


class _Touch:
    """Unpickling this with plain pickle would create ``path`` (via the class's own __setstate__)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __setstate__(self, state: dict) -> None:
        Path(state["path"]).touch()


class _System:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_weights_that_do_not_fit_are_refused(ckpt, tmp_path):
    payload = torch.load(ckpt, weights_only=True)
    payload["hyper_parameters"]["width"] = 8
    broken = tmp_path / "broken.ckpt"
    torch.save(payload, broken)
    with pytest.raises(CheckpointError, match="the weights do not fit"):
        load_for_inference(broken)


def test_resolve_checkpoints_errors(tmp_path):
    (tmp_path / "job" / "checkpoints").mkdir(parents=True)
    (tmp_path / "job" / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(JobSelectionError, match=r"interrupted \(last\.ckpt and no test_metrics\.json"):
        resolve_checkpoints([tmp_path / "job"])
    (tmp_path / "job" / "test_metrics.json").write_text("{}")
    with pytest.raises(JobSelectionError, match=r"only last\.ckpt"):
        resolve_checkpoints([tmp_path / "job"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(JobSelectionError, match="no checkpoints/ folder"):
        resolve_checkpoints([tmp_path / "empty"])

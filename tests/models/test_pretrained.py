"""load_pretrained: torchvision r3d_18, MedicalNet resnet_18 and DARNet files into DARNet, and the refusals.

The foreign files are built here with the exact key names and shapes of torchvision's ``models/video/resnet.py``
(``r3d_18``: BasicStem, Conv3DSimple, BasicBlock, layers [2, 2, 2, 2]) and MedicalNet's ``models/resnet.py``
(``resnet18``, saved from ``nn.DataParallel`` as ``{'state_dict': {'module.' + key: ...}}``), with random values so
that equality means the tensor was copied.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from darnet_pl.models import DARNet
from darnet_pl.models.pretrained import InitReport, load_pretrained

SIZE = (16, 32, 32)
PLANES = (64, 128, 256, 512)
BACKBONE = 120  # stem 6 + 8 blocks x 12 + 3 projection shortcuts x 6 (BatchNorm counts 5: num_batches_tracked)


def batchnorm(prefix: str, channels: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}weight": torch.rand(channels, generator=generator) + 0.5,
        f"{prefix}bias": torch.randn(channels, generator=generator),
        f"{prefix}running_mean": torch.randn(channels, generator=generator),
        f"{prefix}running_var": torch.rand(channels, generator=generator) + 0.5,
        f"{prefix}num_batches_tracked": torch.randint(1, 10_000, (), generator=generator),
    }


def conv(key: str, out: int, inp: int, kernel: tuple[int, int, int], generator: torch.Generator):
    return {key: torch.randn(out, inp, *kernel, generator=generator)}


def basic_blocks(
    names: tuple[str, str, str, str], projections: bool, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """The 8 BasicBlocks of a ResNet-18 (layers [2, 2, 2, 2]) under one file's key names: ``names`` are the keys of a
    block's first convolution's weight and batch norm, then the second's (relative to ``layer<s>.<b>.``);
    ``projections``: the first block of stages 2-4 has a 1x1x1 ``downsample`` (conv, batch norm)."""
    conv1, bn1, conv2, bn2 = names
    state: dict[str, torch.Tensor] = {}
    inplanes = 64
    for stage, planes in enumerate(PLANES, start=1):
        for block in range(2):
            p = f"layer{stage}.{block}."
            state |= conv(p + conv1, planes, inplanes, (3, 3, 3), generator) | batchnorm(p + bn1, planes, generator)
            state |= conv(p + conv2, planes, planes, (3, 3, 3), generator) | batchnorm(p + bn2, planes, generator)
            if projections and block == 0 and stage > 1:
                state |= conv(p + "downsample.0.weight", planes, inplanes, (1, 1, 1), generator)
                state |= batchnorm(p + "downsample.1.", planes, generator)
            inplanes = planes
    return state


def r3d_18_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """torchvision r3d_18 (Kinetics-400): conv1/conv2 are Sequential(conv, bn[, relu]), downsample Sequential."""
    g = torch.Generator().manual_seed(seed)
    state = {**conv("stem.0.weight", 64, 3, (3, 7, 7), g), **batchnorm("stem.1.", 64, g)}
    state |= basic_blocks(("conv1.0.weight", "conv1.1.", "conv2.0.weight", "conv2.1."), True, g)
    state["fc.weight"] = torch.randn(400, 512, generator=g)
    state["fc.bias"] = torch.randn(400, generator=g)
    return state


def medicalnet_resnet18(seed: int = 1, shortcut: str = "A") -> dict[str, object]:
    """MedicalNet resnet_18.pth: 7x7x7 one-channel stem, conv/bn names, shortcut A (no downsample weights)."""
    g = torch.Generator().manual_seed(seed)
    state = {**conv("conv1.weight", 64, 1, (7, 7, 7), g), **batchnorm("bn1.", 64, g)}
    state |= basic_blocks(("conv1.weight", "bn1.", "conv2.weight", "bn2."), shortcut == "B", g)
    return {"state_dict": {"module." + k: v for k, v in state.items()}}


def torchvision_name(darnet_key: str) -> str:
    """The r3d_18 key for a DARNet backbone key, written out independently of the module's rules."""
    for ours, theirs in ((".bn1.", ".conv1.1."), (".bn2.", ".conv2.1."), (".shortcut.", ".downsample.")):
        darnet_key = darnet_key.replace(ours, theirs)
    for name in ("conv1", "conv2"):
        darnet_key = darnet_key.replace(f".{name}.weight", f".{name}.0.weight")
    return darnet_key


def backbone_keys(model: DARNet) -> list[str]:
    return [k for k in model.state_dict() if not k.startswith("fc.") and "attention" not in k]


@pytest.fixture(scope="module")
def r3d_file(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    state = r3d_18_state_dict()
    path = tmp_path_factory.mktemp("pretrained") / "r3d_18.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture(scope="module")
def medicalnet_file(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    payload = medicalnet_resnet18()
    path = tmp_path_factory.mktemp("pretrained") / "resnet_18.pth"
    torch.save(payload, path, _use_new_zipfile_serialization=False)  # MedicalNet's files predate the zip format
    return path, {k.removeprefix("module."): v for k, v in payload["state_dict"].items()}


def test_r3d_18_loads_every_backbone_tensor_and_sums_the_rgb_stem(r3d_file):
    path, state = r3d_file
    model = DARNet(attention="none", width=64, input_size=SIZE)
    fc_before = model.fc.weight.detach().clone()
    report = load_pretrained(model, path)
    after = model.state_dict()
    keys = backbone_keys(model)
    assert len(keys) == BACKBONE
    for key in keys:
        source = state[torchvision_name(key)]
        expected = source.sum(dim=1, keepdim=True) if key == "stem.0.weight" else source
        assert torch.equal(after[key], expected), key
    assert after["stem.0.weight"].shape == (64, 1, 3, 7, 7)
    assert torch.equal(model.fc.weight, fc_before) and model.fc.weight.shape == (3, 512)
    assert report == InitReport(
        str(path),
        "torchvision r3d_18",
        BACKBONE,
        BACKBONE,
        (("fc.weight", "classifier replaced"), ("fc.bias", "classifier replaced")),
    )
    line = report.summary()
    print(line)
    assert line == (
        "init_from r3d_18.pth: torchvision r3d_18 layout, loaded 120 of 120 tensors; "
        "skipped 2 (fc.weight, fc.bias: classifier replaced)"
    )


def test_r3d_18_into_dual_attention_leaves_the_gates_untouched(r3d_file):
    path, _ = r3d_file
    torch.manual_seed(0)
    model = DARNet(attention="dual", width=64, input_size=SIZE)
    gates = {k: v.clone() for k, v in model.state_dict().items() if "attention" in k}
    assert any("depth_attention" in k for k in gates) and any("channel_attention" in k for k in gates)
    report = load_pretrained(model, path)
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in gates.items())
    assert (report.loaded, report.wanted, report.missing) == (BACKBONE, BACKBONE, ())
    model.eval()
    with torch.no_grad():
        assert model(torch.rand(1, 1, *SIZE)).shape == (1, 3)  # the loaded model runs


def test_r3d_18_into_a_three_channel_model_copies_the_stem(r3d_file):
    path, state = r3d_file
    model = DARNet(attention="none", in_channels=3, width=64, input_size=SIZE)
    assert load_pretrained(model, path).loaded == BACKBONE
    assert torch.equal(model.stem[0].weight, state["stem.0.weight"])


def test_medicalnet_skips_the_stem_for_shape_and_loads_the_layers(medicalnet_file):
    path, state = medicalnet_file
    model = DARNet(attention="dual", width=64, input_size=SIZE)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_pretrained(model, path)
    after = model.state_dict()
    assert report.layout == "MedicalNet resnet_18"
    layer_keys = [k for k in state if k.startswith("layer")]
    assert len(layer_keys) == 96
    for key in layer_keys:
        assert torch.equal(after[key], state[key]), key
    skipped = dict(report.skipped)
    assert skipped["conv1.weight"] == "shape mismatch ((64, 1, 7, 7, 7) in file vs (64, 1, 3, 7, 7) in model)"
    bn = [k for k in state if k.startswith("bn1.")]
    assert all(skipped[k] == "its convolution conv1.weight was not loaded" for k in bn)
    assert list(skipped) == ["conv1.weight", *bn]
    for key in [k for k in fresh if k.startswith(("stem.", "fc.")) or "shortcut" in k or "attention" in k]:
        assert torch.equal(after[key], fresh[key]), key  # stem, classifier, shortcuts (type A) and gates keep init
    assert report.missing == tuple(k for k in backbone_keys(model) if "shortcut" in k) and len(report.missing) == 18
    assert (report.loaded, report.wanted) == (96, BACKBONE)
    line = report.summary()
    print(line)
    assert line.startswith(
        "init_from resnet_18.pth: MedicalNet resnet_18 layout, loaded 96 of 120 tensors; skipped 6 (conv1.weight: "
        "shape mismatch ((64, 1, 7, 7, 7) in file vs (64, 1, 3, 7, 7) in model); bn1.weight, bn1.bias, "
    )
    assert "; 18 not in the file keep their initialisation (layer2.0.shortcut.0.weight, " in line and "\n" not in line


def test_medicalnet_shortcut_b_loads_the_projections(tmp_path):
    payload = medicalnet_resnet18(shortcut="B")
    path = tmp_path / "resnet_10_style.pth"
    torch.save(payload, path)
    model = DARNet(attention="none", width=64, input_size=SIZE)
    report = load_pretrained(model, path)
    assert (report.loaded, report.missing) == (BACKBONE - 6, ())
    source = payload["state_dict"]["module.layer3.0.downsample.1.running_var"]
    assert torch.equal(model.layer3[0].shortcut[1].running_var, source)


def test_darnet_lightning_checkpoint_loads_everything_but_the_classifier(tmp_path):
    source = DARNet(attention="dual", width=8, input_size=SIZE, num_classes=3)
    checkpoint = {
        "epoch": 4,
        "hyper_parameters": {"attention": "dual", "width": 8, "input_size": list(SIZE)},
        "state_dict": {"net." + k: v for k, v in source.state_dict().items()},
    }
    path = tmp_path / "last.ckpt"
    torch.save(checkpoint, path)
    model = DARNet(attention="dual", width=8, input_size=SIZE, num_classes=2)  # another task: other classes
    report = load_pretrained(model, path)
    expected = source.state_dict()
    assert report.layout == "DARNet"
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items() if not k.startswith("fc."))
    assert report.loaded == report.wanted == len(expected) - 2
    assert report.skipped == (("fc.weight", "classifier replaced"), ("fc.bias", "classifier replaced"))
    print(report.summary())


def test_a_real_training_checkpoint_loads(tiny_checkpoint):
    model = DARNet(attention="dual", width=4, input_size=SIZE)
    report = load_pretrained(model, tiny_checkpoint)
    assert report.layout == "DARNet" and report.loaded == report.wanted and report.missing == ()


def test_another_width_is_refused_in_one_line(r3d_file):
    path, _ = r3d_file
    with pytest.raises(ValueError, match=r"r3d_18\.pth: does not fit this DARNet") as caught:
        load_pretrained(DARNet(attention="none", width=32, input_size=SIZE), path)
    assert "\n" not in str(caught.value) and "width 32" in str(caught.value)


def test_a_random_dict_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "random.pt"
    torch.save({"encoder.weight": torch.randn(4, 4), "decoder.bias": torch.randn(4), "step": 3}, path)
    with pytest.raises(ValueError, match=r"random\.pt: not a known weights layout") as caught:
        load_pretrained(DARNet(attention="none", width=8, input_size=SIZE), path)
    assert "\n" not in str(caught.value)


class Payload:
    """Anything that is not a tensor or a plain value: weights_only must refuse to rebuild it."""


def test_pickled_code_is_refused_in_one_line(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"stem.0.weight": torch.zeros(1)}, "extra": Payload()}, path)
    with pytest.raises(ValueError, match=r"evil\.pth: refused: the file holds the Python object .*Payload") as caught:
        load_pretrained(DARNet(attention="none", width=8, input_size=SIZE), path)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("content", [b"hello\nnot weights\n", b"\x80\x04K\x01."])
def test_a_file_that_is_not_a_torch_archive_is_refused(tmp_path, content):
    path = tmp_path / "weights.txt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"weights\.txt: (damaged or )?not a PyTorch weights file") as caught:
        load_pretrained(DARNet(attention="none", width=8, input_size=SIZE), path)
    assert "\n" not in str(caught.value)


def test_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing\.pth: weights file not found"):
        load_pretrained(DARNet(attention="none", width=8, input_size=SIZE), tmp_path / "nothing.pth")


def test_the_generated_r3d_18_layout_is_torchvisions():
    video = pytest.importorskip("torchvision.models.video")
    theirs = {k: tuple(v.shape) for k, v in video.r3d_18().state_dict().items()}
    assert theirs == {k: tuple(v.shape) for k, v in r3d_18_state_dict().items()}

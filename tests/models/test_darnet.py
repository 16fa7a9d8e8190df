"""DARNet: the paper's parameter counts, shapes, input checks, and that both attentions really gate."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from darnet_pl.models import ATTENTION_VARIANTS, DARNet, DepthAttention3d, count_parameters

TINY = dict(input_size=(16, 32, 32), width=8)

# Table III of the paper (33.15 / 33.24 / 35.15 / 35.24 M), exactly as the authors' code counts them.
PAPER_PARAMETERS = {"none": 33_148_995, "ca": 33_238_075, "da": 35_148_083, "dual": 35_237_163}


@pytest.mark.parametrize("attention", ATTENTION_VARIANTS)
def test_parameter_count_matches_paper_table_iii(attention: str) -> None:
    model = DARNet(attention=attention, in_channels=1, num_classes=3, input_size=(64, 224, 224), width=64)
    assert count_parameters(model) == PAPER_PARAMETERS[attention]


@pytest.mark.parametrize("attention", ATTENTION_VARIANTS)
def test_output_shape_for_every_variant(attention: str) -> None:
    model = DARNet(attention=attention, num_classes=3, **TINY).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 1, 16, 32, 32))
    assert logits.shape == (2, 3)
    assert torch.isfinite(logits).all()


def test_feature_map_is_downsampled_8x_in_depth_and_16x_in_plane() -> None:
    model = DARNet(attention="dual", input_size=(64, 224, 224), width=8).eval()
    with torch.no_grad():
        features = model.features(torch.zeros(1, 1, 64, 224, 224))
    assert features.shape == (1, 64, 8, 14, 14)


def test_pooled_features_are_what_the_classifier_reads() -> None:
    model = DARNet(attention="dual", **TINY).eval()
    x = torch.randn(3, 1, 16, 32, 32)
    with torch.no_grad():
        pooled = model.pooled_features(x)
        assert pooled.shape == (3, 8 * TINY["width"])
        assert torch.allclose(model.fc(pooled), model(x))
        assert torch.allclose(pooled, model.features(x).mean(dim=(2, 3, 4)))


def test_no_max_pool_and_paper_stem() -> None:
    model = DARNet(attention="none", **TINY)
    assert not any(isinstance(m, nn.MaxPool3d) for m in model.modules())
    stem = model.stem[0]
    assert stem.kernel_size == (3, 7, 7) and stem.stride == (1, 2, 2) and stem.padding == (1, 3, 3)


@pytest.mark.parametrize(
    "shape",
    [(1, 1, 15, 32, 32), (1, 1, 16, 31, 32), (1, 1, 16, 32, 33), (1, 2, 16, 32, 32), (1, 16, 32, 32)],
)
def test_wrong_input_shape_is_a_clear_value_error(shape: tuple[int, ...]) -> None:
    model = DARNet(attention="dual", **TINY)
    with pytest.raises(ValueError, match=r"expects input of shape \(N, 1, 16, 32, 32\).*got"):
        model(torch.zeros(shape))


def test_depth_attention_refuses_other_depths() -> None:
    module = DepthAttention3d(channels=4, depth=8)
    with pytest.raises(ValueError, match=r"depth 8.*depth 6"):
        module(torch.zeros(1, 4, 6, 5, 5))


def test_unknown_attention_variant() -> None:
    with pytest.raises(ValueError, match="attention must be one of"):
        DARNet(attention="both", **TINY)  # type: ignore[arg-type]


def _close_gate(gate: nn.Sequential) -> None:
    """Force a sigmoid gate to output ~0 whatever its input."""
    last = gate[2]
    nn.init.zeros_(last.weight)
    nn.init.constant_(last.bias, -1e4)


@pytest.mark.parametrize("which", ["depth_attention", "channel_attention"])
def test_a_closed_gate_silences_the_residual_branch(which: str) -> None:
    model = DARNet(attention="dual", **TINY).eval()
    block = model.layer2[1]  # identity shortcut: output = relu(branch + x)
    _close_gate(getattr(block, which).gate)
    x = torch.randn(2, 16, 8, 8, 8)
    with torch.no_grad():
        out = block(x)
    assert torch.allclose(out, torch.relu(x), atol=1e-6)


def test_depth_attention_weights_each_channel_and_slice() -> None:
    torch.manual_seed(0)
    module = DepthAttention3d(channels=3, depth=4)
    x = torch.rand(2, 3, 4, 5, 5) + 0.1
    captured = {}
    module.gate.register_forward_hook(lambda m, i, o: captured.setdefault("w", o))
    out = module(x)
    weights = captured["w"].reshape(2, 3, 4, 1, 1)
    assert module.gate[0].in_features == 12 and module.gate[0].out_features == 4  # C*D -> D (r = C)
    assert torch.allclose(out, x * weights)
    ratio = out / x  # constant within each (channel, slice) plane, different across planes
    assert torch.allclose(ratio, ratio[..., :1, :1].expand_as(ratio), atol=1e-6)
    assert ratio[..., 0, 0].std() > 0


def test_paper_initialisation() -> None:
    model = DARNet(attention="dual", **TINY)
    bn = model.layer1[0].bn1
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    assert torch.all(model.fc.bias == 0)
    assert model.fc.weight.std().item() == pytest.approx(0.01, rel=0.5)


def test_one_batch_overfit() -> None:
    torch.manual_seed(0)
    model = DARNet(attention="dual", num_classes=3, **TINY)
    x = torch.randn(6, 1, 16, 32, 32)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(60):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 < 1.0 < losses[0]
    model.eval()
    with torch.no_grad():
        assert (model(x).argmax(1) == y).all()


@pytest.mark.parametrize("module", ["ca", "da"])
def test_attention_gives_the_same_values_and_gradients_in_channels_last(module: str) -> None:
    # the channels_last_3d path pools and rescales on an NDHWC view (much faster there); it must be the same maths
    from darnet_pl.models.attention import ChannelAttention3d, DepthAttention3d

    torch.manual_seed(0)
    gate = ChannelAttention3d(32, reduction=4) if module == "ca" else DepthAttention3d(32, depth=6)
    x = torch.randn(2, 32, 6, 10, 12)
    upstream = torch.randn_like(x)
    results = []
    for layout in (torch.contiguous_format, torch.channels_last_3d):
        xi = x.clone().contiguous(memory_format=layout).requires_grad_()
        gate.zero_grad()
        out = gate(xi)
        assert out.is_contiguous(memory_format=layout)
        out.backward(upstream)
        results.append((out.detach(), xi.grad, *(p.grad.clone() for p in gate.parameters())))
    for plain, channels_last in zip(*results, strict=True):
        torch.testing.assert_close(channels_last, plain, rtol=1e-5, atol=1e-6)

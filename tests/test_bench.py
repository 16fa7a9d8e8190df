"""Benchmarks and speed options: the JSON has its keys (timings are never asserted: the machine can be throttled),
the speed options keep the model's parameters, and CPU bf16 training is finite and close to fp32 (the oneDNN
weight-gradient bug that turned the smoke experiment's loss into NaN is worked around)."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from darnet_pl.bench.model import VARIANTS, default_variant, run_variant
from darnet_pl.bench.run import run_benchmarks
from darnet_pl.models import DARNet, count_parameters
from darnet_pl.models.conv import Conv3d
from darnet_pl.training.speed import apply_speed_options, resolve_memory_format, resolve_precision


def test_quick_benchmark_reports_model_and_ingest() -> None:
    result = run_benchmarks(quick=True, model_variants=["fp32", "bf16_channels_last", "checkpointing", "default"])
    assert {"model", "ingest", "train_speedup", "ingest_speedup"} <= result.keys()
    model = result["model"]
    assert model["baseline"] == "fp32" and model["train_speedup"] == result["train_speedup"]
    for name in ("fp32", "bf16_channels_last", "checkpointing"):
        variant = model["variants"][name]
        assert variant["status"] == "ok", variant
        for phase in ("train", "inference"):
            assert variant[phase]["volumes_per_s"] > 0 and variant[phase]["step_s_median"] > 0
            assert ("peak_rss_mib" in variant[phase]) or ("peak_mib" in variant[phase])
        assert variant["train"]["loss_finite"]
    assert "default" in model["variants"] and model["default"]["variant"] in model["variants"]
    assert result["ingest"]["ingest_speedup"] > 0
    assert set(result["ingest"]["by_depth_interpolation"]) == {"linear", "nearest"}
    assert result["ingest"]["max_abs_diff"] <= 1  # the fast reader agrees with the baseline up to rounding
    assert result["memory"]["bf16"]["total_gib"] < result["memory"]["fp32"]["total_gib"]
    loader = result["loader"]
    assert loader["load_only_volumes_per_s"] > 0 and loader["cpu_augmentation_volumes_per_s"] > 0
    assert loader["device_augmentation"]["volumes_per_s"] > 0


class _FakeWorker:
    """Stands in for a worker process: every step takes 2 s (baseline) or 1 s; compile cannot be built."""

    def __init__(self, spec: dict, timeout: float, threads: int | None) -> None:
        from darnet_pl.bench.model import VariantFailed

        if spec["variant"]["compile"]:
            raise VariantFailed("no C++ compiler")
        self.seconds = 1.0 if spec["variant"]["bf16"] else 2.0

    def ask(self, command: str) -> dict:
        if command == "peak":
            return {"peak_rss_mib": 100.0, "peak_rss_delta_mib": 10.0, "peak_is_own": True}
        return {"s": self.seconds, "loss": 1.0} if command in ("train", "infer") else {}

    def close(self) -> None:
        pass


def test_variants_are_paired_with_the_baseline_and_failures_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    from darnet_pl.bench import model as bench_model

    monkeypatch.setattr(bench_model, "_Worker", _FakeWorker)
    result = bench_model.run_model_benchmark(size=(4, 16, 16), width=4, variants=["fp32", "bf16", "compile"])
    variants = result["variants"]
    assert variants["compile"]["status"] == "skipped" and variants["compile"]["reason"] == "no C++ compiler"
    assert result["compile_status"] == {"compile": "skipped: no C++ compiler"}
    assert variants["bf16"]["train_speedup"] == 2.0 and variants["bf16"]["train"]["baseline_step_s"] == [2.0] * 3
    assert variants["fp32"]["train"]["volumes_per_s"] == 0.5 and len(variants["fp32"]["train"]["step_s"]) == 6


def test_default_variant_follows_the_configs() -> None:
    variant, settings = default_variant("cpu")
    assert settings["precision"] == resolve_precision("auto", "cpu")
    assert variant.bf16 == (settings["precision"] == "bf16-mixed")
    assert variant.channels_last == variant.bf16  # memory_format=auto: channels_last_3d goes with bf16 on the CPU
    assert resolve_precision("32-true", "cpu") == "32-true"
    assert resolve_memory_format("auto", "cpu", "bf16-mixed") == "channels_last_3d"
    assert resolve_memory_format("auto", "cpu", "32-true") == "contiguous"
    assert resolve_memory_format("auto", "gpu", "bf16-mixed") == "contiguous"
    assert resolve_memory_format("channels_last_3d", "gpu", "32-true") == "channels_last_3d"


def test_auto_memory_format_follows_the_trainer(tmp_path) -> None:
    from darnet_pl.training.module import DARNetModule

    for precision, layout in (("bf16-mixed", torch.channels_last_3d), ("32-true", torch.contiguous_format)):
        module = DARNetModule(width=4, input_size=(8, 32, 32), optimizer=torch.optim.Adam, memory_format="auto")
        trainer = pl.Trainer(accelerator="cpu", precision=precision, logger=False, default_root_dir=tmp_path)
        module.trainer = trainer
        module.setup("fit")
        assert module.net.stem[0].weight.is_contiguous(memory_format=layout), precision
        assert module.memory_format == layout


def test_speed_options_keep_parameters_and_state_dict() -> None:
    plain = DARNet(input_size=(8, 32, 32), width=4)
    tuned = apply_speed_options(
        DARNet(input_size=(8, 32, 32), width=4), memory_format="channels_last_3d", activation_checkpointing=True
    )
    assert count_parameters(plain) == count_parameters(tuned)
    assert plain.state_dict().keys() == tuned.state_dict().keys()
    assert tuned.stem[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    with pytest.raises(ValueError, match="memory_format"):
        apply_speed_options(plain, memory_format="nhwc")


def test_activation_checkpointing_gives_the_same_gradients() -> None:
    torch.manual_seed(0)
    net = DARNet(input_size=(8, 32, 32), width=4)
    x, y = torch.rand(2, 1, 8, 32, 32), torch.tensor([0, 2])
    grads = []
    for checkpointing in (False, True):
        net.activation_checkpointing = checkpointing
        net.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="oneDNN (mkldnn) CPU backend not available")
def test_cpu_bf16_weight_gradient_of_a_shallow_conv_is_right() -> None:
    """oneDNN's bf16 conv3d weight gradient is garbage when the input is shallower than the kernel (depth 2 < 3)."""
    torch.manual_seed(0)
    conv = Conv3d(32, 32, 3, padding=1, bias=False)
    x = torch.randn(4, 32, 2, 4, 4)
    reference = torch.autograd.grad(conv(x).square().sum(), conv.weight)[0]
    for _ in range(5):  # the bug read uninitialised memory: it came and went from call to call
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = conv(x)
        assert out.dtype == torch.bfloat16
        grad = torch.autograd.grad(out.float().square().sum(), conv.weight)[0]
        assert torch.isfinite(grad).all()
        assert (grad - reference).abs().max() <= 0.05 * reference.abs().max()


def test_bf16_training_steps_match_fp32_at_the_smoke_size() -> None:
    """Adam steps of DARNet at 16x64x64 (a depth-2 last stage) in bf16 autocast stay finite and near fp32."""
    losses = {
        name: run_variant(VARIANTS[name], size=(16, 64, 64), width=4, batch=4, repeats=4)["train"]["losses"]
        for name in ("fp32", "bf16")
    }
    assert all(abs(a - b) < 0.05 for a, b in zip(losses["fp32"], losses["bf16"], strict=True)), losses


def test_activation_memory_is_counted_per_block_and_linear_in_the_batch() -> None:
    from darnet_pl.bench.memory import count_saved_bytes, run_memory_benchmark

    net = DARNet(input_size=(8, 32, 32), width=4).train()
    one = count_saved_bytes(net, torch.rand(1, 1, 8, 32, 32), bf16=False).per_part
    two = count_saved_bytes(net, torch.rand(2, 1, 8, 32, 32), bf16=False).per_part
    assert set(one) == {"stem", "head", *(f"layer{s}.{b}" for s in range(1, 5) for b in range(2))}
    for part in ("stem", "layer1.0", "layer2.0"):  # activations scale with the batch, what the estimate relies on
        assert two[part] == pytest.approx(2 * one[part], rel=0.01)  # (BatchNorm's per-channel statistics do not)
    memory = run_memory_benchmark(size=(8, 32, 32), width=4, batch=8)
    for precision in ("fp32", "bf16"):
        entry = memory[precision]
        assert 0 < entry["activations_checkpointed_gib"] < entry["activations_gib"]
    assert memory["bf16"]["activations_gib"] < memory["fp32"]["activations_gib"]

"""Benchmarks and speed options: the JSON has its keys (timings are never asserted: the machine can be throttled),
the speed options keep the model's parameters, and CPU bf16 training is finite and close to fp32 (the oneDNN
weight-gradient bug that turned the smoke experiment's loss into NaN is worked around)."""

from __future__ import annotations

import pytest
import torch

from darnet_pl.bench.model import default_variant
from darnet_pl.bench.run import run_benchmarks
from darnet_pl.models import DARNet
from darnet_pl.training.speed import resolve_memory_format, resolve_precision


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
    assert set(result["ingest"]["by_depth_interpolation"]) == {"linear", "nearest", "antialias"}
    assert result["ingest"]["max_abs_diff"] <= 1  # the fast reader agrees with the baseline up to rounding
    antialias = result["ingest"]["by_depth_interpolation"]["antialias"]
    assert antialias["max_abs_diff"] <= 1 and antialias["slices_decoded_fraction"] == 1.0  # the authors' resize
    assert result["ingest"]["antialias_vs_linear"] > 0 and result["ingest"]["antialias_ingest_scans_per_s"] > 0
    assert result["memory"]["bf16"]["total_gib"] < result["memory"]["fp32"]["total_gib"]
    assert set(result["volumes"]["mean_ms_per_scan"]) == {"linear", "nearest", "antialias"}
    loader = result["loader"]
    assert loader["load_only_volumes_per_s"] > 0 and loader["cpu_augmentation_volumes_per_s"] > 0
    assert loader["cpu_augmentation_volumes_per_s_before"] > 0 and loader["device_augmentation"]["volumes_per_s"] > 0
    for preset in ("authors", "default"):
        entry = loader["by_size"]["8x32x32"][preset]
        assert set(entry["augment_per_s"]) == {"before", "monai_affine_float32", "after"}
        assert 0 < entry["max_abs_diff_vs_before"] <= 1e-4  # the float32 path resamples as the float64 one did
    wait = result["data_wait"]
    assert result["data_wait_share"] == wait["settings"]["base"]["data_wait_share"]
    for name in ("base", "on_device"):
        entry = wait["settings"][name]
        assert entry["measured_steps"] == 3 and 0 <= entry["data_wait_share"] < 1 and entry["step_s_per_step"] > 0
    assert wait["settings"]["on_device"]["device_augment_s_per_step"] > 0


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


def test_a_benchmark_record_keeps_the_command_commit_machine_and_the_result(tmp_path) -> None:
    import json

    from darnet_pl.bench.record import main

    out = tmp_path / "benchmarks" / "memory.json"
    main(["--note", "a test", str(out), "memory", "--size", "8", "32", "32", "--width", "4", "--batch", "2"])
    record = json.loads(out.read_text())
    assert record["command"] == "python -m darnet_pl.bench.memory --size 8 32 32 --width 4 --batch 2"
    assert record["note"] == "a test" and record["commit"] and record["date"]
    assert {"cpu", "cores", "torch", "python", "load_average_before", "load_average_after"} <= record["machine"].keys()
    assert record["result"]["size"] == [8, 32, 32] and record["result"]["batch"] == 2


def test_a_benchmark_that_fails_writes_no_record(tmp_path) -> None:
    from darnet_pl.bench.record import main

    out = tmp_path / "memory.json"
    with pytest.raises(SystemExit, match=r"darnet_pl\.bench\.memory exited 2; no record written"):
        main([str(out), "memory", "--size", "eight"])
    with pytest.raises(SystemExit, match="error: fast: not a benchmark"):
        main([str(out), "fast"])
    assert not out.exists()

"""Model benchmark: DARNet training-step and inference throughput and peak memory, per speed option.

Every variant (fp32 eager baseline, bf16 autocast, channels_last_3d, torch.compile, activation checkpointing, and
the default configuration of this device as the configs set it) runs in a fresh subprocess, so peak memory
(VmHWM on CPU, ``torch.cuda.max_memory_allocated`` on GPU) is that variant's alone. Each subprocess does one
warm-up step and then ``--repeats`` timed steps (Adam included: it is part of a real training step); with
``--rounds N`` the variants are run N times, interleaved, so a machine throttled for a while slows all of them.
Times are medians. A variant that fails (e.g. torch.compile without a working compiler) is reported as skipped
with the reason.

``python -m darnet_pl.bench_model [--size 64 224 224] [--width 64] [--batch 1] [--repeats 3] [--variants ...]``
prints one JSON object; ``train_speedup`` is the default configuration's training throughput over the fp32 eager
baseline's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

CONF_DIR = Path(__file__).resolve().parent / "conf"


@dataclass(frozen=True)
class Variant:
    """One configuration to measure."""

    bf16: bool = False
    channels_last: bool = False
    compile: bool = False
    checkpointing: bool = False


VARIANTS: dict[str, Variant] = {
    "fp32": Variant(),
    "bf16": Variant(bf16=True),
    "channels_last": Variant(channels_last=True),
    "bf16_channels_last": Variant(bf16=True, channels_last=True),
    "compile": Variant(compile=True),
    "bf16_channels_last_compile": Variant(bf16=True, channels_last=True, compile=True),
    "checkpointing": Variant(checkpointing=True),
    "bf16_channels_last_checkpointing": Variant(bf16=True, channels_last=True, checkpointing=True),
}
BASELINE = "fp32"
DEFAULT = "default"


# ----------------------------------------------------------------------------------------------- the default


def default_variant(device: str) -> tuple[Variant, dict[str, Any]]:
    """The configuration a plain training run uses on ``device``, read from the configs themselves.

    Precision comes from conf/trainer/cpu.yaml (CPU) or gpu.yaml (GPU) over default.yaml, ``auto`` resolved as
    training resolves it; memory format, compile and checkpointing from conf/model/darnet.yaml.
    """
    from omegaconf import OmegaConf

    from darnet_pl.speed import resolve_precision

    trainer = OmegaConf.merge(
        OmegaConf.load(CONF_DIR / "trainer" / "default.yaml"),
        OmegaConf.load(CONF_DIR / "trainer" / ("cpu.yaml" if device == "cpu" else "gpu.yaml")),
    )
    model = OmegaConf.load(CONF_DIR / "model" / "darnet.yaml")
    precision = resolve_precision(trainer.get("precision", "32-true"), "cpu" if device == "cpu" else "gpu")
    settings = {
        "precision": precision,
        "memory_format": model.get("memory_format", "contiguous"),
        "compile": bool(model.get("compile", False)),
        "activation_checkpointing": bool(model.get("activation_checkpointing", False)),
    }
    variant = Variant(
        bf16=str(precision).startswith("bf16"),
        channels_last=settings["memory_format"] == "channels_last_3d",
        compile=settings["compile"],
        checkpointing=settings["activation_checkpointing"],
    )
    return variant, settings


# ------------------------------------------------------------------------------------------------- the worker


def _status_kb(field: str) -> int | None:
    """A ``/proc/self/status`` memory field (VmRSS, VmHWM) in kB; None off Linux."""
    try:
        match = re.search(rf"^{field}:\s+(\d+)\s+kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so a second phase gets its own peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class _Meter:
    """Peak memory of one phase: RSS high-water mark on CPU, allocator peak on GPU (both in MiB)."""

    def __init__(self, device: Any) -> None:
        import torch

        self.torch = torch
        self.cuda = device.type == "cuda"

    def start(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats()
            self.base = self.torch.cuda.memory_allocated()
        else:
            self.reset = _reset_peak_rss()
            self.base = (_status_kb("VmRSS") or 0) * 1024

    def stop(self) -> dict[str, Any]:
        mib = 1024 * 1024
        if self.cuda:
            peak = self.torch.cuda.max_memory_allocated()
            return {"peak_mib": round(peak / mib, 1), "peak_delta_mib": round((peak - self.base) / mib, 1)}
        peak = (_status_kb("VmHWM") or 0) * 1024
        return {
            "peak_rss_mib": round(peak / mib, 1),
            "peak_rss_delta_mib": round((peak - self.base) / mib, 1),
            "peak_is_own": self.reset,  # False: the peak may include an earlier phase of the same process
        }


def _timed(step: Callable[[], Any], sync: Callable[[], None], warmup: int, repeats: int) -> dict[str, Any]:
    first = []
    for _ in range(warmup):
        started = time.perf_counter()
        step()
        sync()
        first.append(time.perf_counter() - started)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - started)
    return {"warmup_s": [round(t, 4) for t in first], "step_s": [round(t, 4) for t in times]}


def run_variant(
    variant: Variant,
    size: Sequence[int],
    width: int,
    batch: int,
    repeats: int,
    warmup: int = 1,
    attention: str = "dual",
    device: str = "auto",
) -> dict[str, Any]:
    """Measure one variant in this process: an inference phase, then a training phase, each with its own peak."""
    import torch
    from torch import nn

    from darnet_pl.models import DARNet
    from darnet_pl.speed import apply_speed_options

    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    torch.manual_seed(0)
    net = DARNet(attention=attention, input_size=tuple(size), width=width).to(dev)
    apply_speed_options(
        net,
        memory_format="channels_last_3d" if variant.channels_last else "contiguous",
        activation_checkpointing=variant.checkpointing,
        compile=variant.compile,
    )
    x = torch.rand(batch, 1, *size, device=dev)
    if variant.channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    y = torch.arange(batch, device=dev) % 3
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()

    def autocast() -> Any:
        return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=variant.bf16)

    losses: list[float] = []

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = criterion(net(x), y)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))

    def infer_step() -> None:
        with torch.inference_mode(), autocast():
            net(x)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    # inference first: after training, gradients, Adam state and the allocator's cached blocks stay resident and
    # would hide the inference peak
    meter = _Meter(dev)
    net.eval()
    meter.start()
    infer = {**_timed(infer_step, sync, warmup, repeats), **meter.stop()}
    net.train()
    meter.start()
    train = {**_timed(train_step, sync, warmup, repeats), **meter.stop()}
    train["loss_finite"] = all(v == v and abs(v) != float("inf") for v in losses)
    train["losses"] = [round(v, 5) for v in losses]
    return {"device": dev.type, "train": train, "inference": infer}


# ------------------------------------------------------------------------------------------------- the parent


def _device_info(device: str) -> dict[str, Any]:
    import torch

    from darnet_pl.speed import cpu_has_native_bf16

    dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    info: dict[str, Any] = {
        "device": dev,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    if dev == "cuda":
        info["device_name"] = torch.cuda.get_device_name(0)
    return info


def _run_in_subprocess(spec: dict[str, Any], timeout: float, threads: int | None) -> dict[str, Any]:
    """Run one variant in a fresh interpreter; a failure or timeout becomes ``{"status": "skipped", ...}``."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [sys.executable, "-m", "darnet_pl.bench_model", "--worker", json.dumps(spec)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"status": "skipped", "reason": f"did not finish within {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        errors = [line for line in done.stderr.strip().splitlines() if line.strip()]
        reason = errors[-1] if errors else f"exit code {done.returncode}"
        return {"status": "skipped", "reason": reason[-500:]}
    return json.loads(lines[-1])


def _summarise(runs: list[dict[str, Any]], batch: int) -> dict[str, Any]:
    """Medians over all timed steps of all rounds; memory as the median of the rounds' peaks."""
    ok = [r for r in runs if r.get("status", "ok") == "ok"]
    if not ok:
        return runs[-1]
    out: dict[str, Any] = {"status": "ok"}
    for phase in ("train", "inference"):
        steps = [t for r in ok for t in r[phase]["step_s"]]
        median = statistics.median(steps)
        summary: dict[str, Any] = {
            "step_s_median": round(median, 4),
            "volumes_per_s": round(batch / median, 4),
            "step_s": steps,
            "warmup_s": [t for r in ok for t in r[phase]["warmup_s"]],
        }
        for key in ("peak_rss_mib", "peak_rss_delta_mib", "peak_mib", "peak_delta_mib"):
            if key in ok[0][phase]:
                summary[key] = statistics.median(r[phase][key] for r in ok)
        if "peak_is_own" in ok[0][phase]:
            summary["peak_is_own"] = all(r[phase]["peak_is_own"] for r in ok)
        out[phase] = summary
    out["train"]["loss_finite"] = all(r["train"]["loss_finite"] for r in ok)
    if len(ok) < len(runs):
        out["failed_rounds"] = [r.get("reason") for r in runs if r.get("status", "ok") != "ok"]
    return out


def _speedup(results: dict[str, Any], name: str, phase: str) -> float | None:
    base, other = results.get(BASELINE, {}), results.get(name, {})
    if base.get("status") != "ok" or other.get("status") != "ok":
        return None
    return round(other[phase]["volumes_per_s"] / base[phase]["volumes_per_s"], 3)


def run_model_benchmark(
    size: Sequence[int] = (64, 224, 224),
    width: int = 64,
    batch: int = 1,
    repeats: int = 3,
    rounds: int = 1,
    variants: Sequence[str] | None = None,
    attention: str = "dual",
    device: str = "auto",
    threads: int | None = None,
    timeout: float = 1800.0,
    warmup: int = 1,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure the variants side by side (each in its own subprocess, interleaved over ``rounds``)."""
    info = _device_info(device)
    default, default_settings = default_variant(info["device"])
    names = list(variants or [*VARIANTS, DEFAULT])
    for name in names:
        if name not in VARIANTS and name != DEFAULT:
            raise ValueError(f"unknown variant {name!r}: choose from {[*VARIANTS, DEFAULT]}")
    if BASELINE not in names:
        names.insert(0, BASELINE)
    # the default is measured once, under the name of the variant it equals (if it equals one)
    alias = next((n for n, v in VARIANTS.items() if v == default and n in names), None)
    plan = {n: (default if n == DEFAULT else VARIANTS[n]) for n in names if not (n == DEFAULT and alias)}
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in plan}
    base_spec = {"size": list(size), "width": width, "batch": batch, "repeats": repeats, "warmup": warmup}
    for round_index in range(rounds):
        for name, variant in plan.items():
            if progress:
                progress(f"round {round_index + 1}/{rounds}: {name}")
            spec = {**base_spec, "attention": attention, "device": info["device"], "variant": asdict(variant)}
            runs[name].append(_run_in_subprocess(spec, timeout, threads))
    results = {name: {"settings": asdict(plan[name]), **_summarise(r, batch)} for name, r in runs.items()}
    default_name = alias or DEFAULT
    if alias and DEFAULT in names:
        results[DEFAULT] = {"same_as": alias, "settings": asdict(default)}
    for name in results:
        if "same_as" not in results[name]:
            results[name]["train_speedup"] = _speedup(results, name, "train")
            results[name]["inference_speedup"] = _speedup(results, name, "inference")
    compiled = [n for n in plan if plan[n].compile]
    return {
        "benchmark": "darnet_model",
        **info,
        "attention": attention,
        "size": list(size),
        "width": width,
        "batch": batch,
        "repeats": repeats,
        "rounds": rounds,
        "baseline": BASELINE,
        "default": {"variant": default_name, "settings": asdict(default), "config": default_settings},
        "variants": results,
        "train_speedup": _speedup(results, default_name, "train"),
        "inference_speedup": _speedup(results, default_name, "inference"),
        # torch.compile needs a working C++ compiler on CPU (inductor); where it fails the variant says why
        "compile_status": {
            n: "ok" if results[n].get("status") == "ok" else f"skipped: {results[n].get('reason')}" for n in compiled
        },
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=3, default=(64, 224, 224), metavar=("D", "H", "W"))
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per variant and round")
    parser.add_argument("--rounds", type=int, default=1, help="run all variants this many times, interleaved")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=None, help=f"of {[*VARIANTS, DEFAULT]} (default: all)")
    parser.add_argument("--attention", default="dual")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the workers")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per variant before it is skipped")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        variant = replace(Variant(), **spec.pop("variant"))
        print(json.dumps(run_variant(variant, **spec)), flush=True)
        return
    result = run_model_benchmark(
        size=args.size,
        width=args.width,
        batch=args.batch,
        repeats=args.repeats,
        rounds=args.rounds,
        variants=args.variants,
        attention=args.attention,
        device=args.device,
        threads=args.threads,
        timeout=args.timeout,
        warmup=args.warmup,
        progress=None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True)),
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Model benchmark: DARNet training-step and inference throughput and peak memory, per speed option.

Variants: the fp32 eager baseline, bf16 autocast, channels_last_3d, torch.compile, activation checkpointing, their
useful combinations, and ``default`` - the configuration a training run on this device gets from the configs.
Each variant lives in its own worker process, so peak memory (VmHWM on CPU, reset between the inference and the
training phase; ``torch.cuda.max_memory_allocated`` on GPU) is that variant's alone.

The machine can be slowed down from outside for minutes at a time, which makes "run A, then run B" comparisons
worthless. So the baseline worker stays alive and every timed step of a variant is paired with a baseline step
taken just before it; a variant's speedup is the median of those per-pair ratios, and times are medians after
warm-up steps. A variant that fails (e.g. torch.compile without a working C++ compiler) is reported as skipped,
with the reason.

``python -m darnet_pl.bench.model [--size 64 224 224] [--width 64] [--batch 1] [--repeats 3] [--variants ...]``
prints one JSON object; ``train_speedup`` is the default configuration's training speedup over the fp32 eager
baseline.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from darnet_pl.utils.package_files import CONF_DIR


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

    from darnet_pl.training.speed import resolve_memory_format, resolve_precision

    trainer = OmegaConf.merge(
        OmegaConf.load(CONF_DIR / "trainer" / "default.yaml"),
        OmegaConf.load(CONF_DIR / "trainer" / ("cpu.yaml" if device == "cpu" else "gpu.yaml")),
    )
    model = OmegaConf.load(CONF_DIR / "model" / "darnet.yaml")
    precision = resolve_precision(trainer.get("precision", "32-true"), "cpu" if device == "cpu" else "gpu")
    memory_format = resolve_memory_format(
        model.get("memory_format", "contiguous"), "cpu" if device == "cpu" else "gpu", precision
    )
    settings = {
        "precision": precision,
        "memory_format": memory_format,
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


class Workload:
    """One variant's network, batch and optimiser, with timed training and inference steps (in a worker)."""

    def __init__(
        self,
        variant: Variant,
        size: Sequence[int],
        width: int,
        batch: int,
        attention: str = "dual",
        device: str = "auto",
    ) -> None:
        import torch
        from torch import nn

        from darnet_pl.models import DARNet
        from darnet_pl.training.speed import apply_speed_options

        self.torch = torch
        self.device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
        self.variant = variant
        torch.manual_seed(0)
        self.net = DARNet(attention=attention, input_size=tuple(size), width=width).to(self.device)
        apply_speed_options(
            self.net,
            memory_format="channels_last_3d" if variant.channels_last else "contiguous",
            activation_checkpointing=variant.checkpointing,
            compile=variant.compile,
        )
        self.x = torch.rand(batch, 1, *size, device=self.device)
        if variant.channels_last:
            self.x = self.x.contiguous(memory_format=torch.channels_last_3d)
        self.y = torch.arange(batch, device=self.device) % 3
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        self.criterion = nn.CrossEntropyLoss()
        self.meter = _Meter(self.device)

    def _autocast(self) -> Any:
        return self.torch.autocast(self.device.type, dtype=self.torch.bfloat16, enabled=self.variant.bf16)

    def step(self, kind: str) -> dict[str, float]:
        """One timed ``train`` step (forward, backward, Adam) or ``infer`` step; seconds and, for train, the loss."""
        torch = self.torch
        self.net.train(kind == "train")
        started = time.perf_counter()
        if kind == "train":
            self.optimizer.zero_grad(set_to_none=True)
            with self._autocast():
                loss = self.criterion(self.net(self.x), self.y)
            loss.backward()
            self.optimizer.step()
            result = {"loss": float(loss.detach())}
        elif kind == "infer":
            with torch.inference_mode(), self._autocast():
                self.net(self.x)
            result = {}
        else:
            raise ValueError(f"unknown step kind {kind!r}")
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return {"s": time.perf_counter() - started, **result}

    def reset_peak(self) -> None:
        self.meter.start()

    def peak(self) -> dict[str, Any]:
        return self.meter.stop()


def serve(spec: dict[str, Any]) -> None:
    """Worker loop: build the workload, then answer each command on stdin with one JSON line on stdout.

    Commands: ``train``/``infer`` (one timed step), ``reset`` (start a peak-memory phase), ``peak``, ``quit``.
    """
    try:
        workload = Workload(replace(Variant(), **spec.pop("variant")), **spec)
        print(json.dumps({"ready": True}), flush=True)
    except Exception as error:  # the parent reports it as the variant's reason for being skipped
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}), flush=True)
        return
    for line in sys.stdin:
        command = line.strip()
        try:
            if command in ("train", "infer"):
                answer: dict[str, Any] = workload.step(command)
            elif command == "reset":
                workload.reset_peak()
                answer = {}
            elif command == "peak":
                answer = workload.peak()
            elif command == "quit":
                return
            else:
                answer = {"error": f"unknown command {command!r}"}
        except Exception as error:
            answer = {"error": f"{type(error).__name__}: {error}"}
        print(json.dumps(answer), flush=True)


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
    """Measure one variant in this process, unpaired: an inference phase, then a training phase."""
    workload = Workload(variant, size, width, batch, attention, device)
    out: dict[str, Any] = {"device": workload.device.type}
    for phase, kind in (("inference", "infer"), ("train", "train")):
        workload.reset_peak()
        warm = [workload.step(kind) for _ in range(warmup)]
        steps = [workload.step(kind) for _ in range(repeats)]
        out[phase] = {"warmup_s": [r["s"] for r in warm], "step_s": [r["s"] for r in steps], **workload.peak()}
        if kind == "train":
            losses = [r["loss"] for r in warm + steps]
            out[phase]["losses"] = [round(v, 5) for v in losses]
            out[phase]["loss_finite"] = all(v == v and abs(v) != float("inf") for v in losses)
    return out


# ------------------------------------------------------------------------------------------------- the parent


class VariantFailed(RuntimeError):
    """A variant's worker could not build or run it; the message is the reason reported."""


class _Worker:
    """A worker process running :func:`serve` for one variant; ``ask`` sends a command and waits for its answer."""

    def __init__(self, spec: dict[str, Any], timeout: float, threads: int | None) -> None:
        env = dict(os.environ)
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        self.timeout = timeout
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - lives as long as the worker; close() closes it
        command = [sys.executable, "-m", "darnet_pl.bench.model", "--serve", json.dumps(spec)]
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True, env=env
        )
        self.ask(None)  # wait for "ready" (or the build error)

    def ask(self, command: str | None) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if command is not None:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not ready:
            self.close()
            raise VariantFailed(f"no answer to {command or 'start'!r} within {self.timeout:.0f} s")
        if not line:
            raise VariantFailed(self._last_error() or f"worker exited with code {self.proc.wait()}")
        answer = json.loads(line)
        if "error" in answer:
            raise VariantFailed(answer["error"])
        return answer

    def _last_error(self) -> str:
        self.stderr.seek(0)
        lines = [line.strip() for line in self.stderr.read().splitlines() if line.strip()]
        return lines[-1][-500:] if lines else ""

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):  # the worker may be gone already
                self.proc.stdin.write("quit\n")  # type: ignore[union-attr]
                self.proc.stdin.flush()  # type: ignore[union-attr]
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self.stderr.close()


def _device_info(device: str) -> dict[str, Any]:
    import torch

    from darnet_pl.training.devices import cpu_has_native_bf16

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


PHASES = (("inference", "infer"), ("train", "train"))


def _measure_phase(worker: _Worker, baseline: _Worker | None, kind: str, warmup: int, repeats: int) -> dict:
    """Warm-up steps, then ``repeats`` timed steps, each right after a baseline step when there is a baseline."""
    worker.ask("reset")
    warm = [worker.ask(kind) for _ in range(warmup)]
    own, paired, losses = [], [], [r.get("loss") for r in warm]
    for _ in range(repeats):
        before = baseline.ask(kind)["s"] if baseline is not None else None
        answer = worker.ask(kind)
        own.append(answer["s"])
        losses.append(answer.get("loss"))
        if before is not None:
            paired.append(before)
    out: dict[str, Any] = {
        "warmup_s": [round(r["s"], 4) for r in warm],
        "step_s": [round(t, 4) for t in own],
        **worker.ask("peak"),
    }
    if paired:
        out["baseline_step_s"] = [round(t, 4) for t in paired]
        out["speedup"] = round(statistics.median(b / t for b, t in zip(paired, own, strict=True)), 3)
    if kind == "train":
        values = [v for v in losses if v is not None]
        out["loss_finite"] = all(v == v and abs(v) != float("inf") for v in values)
    return out


def _finish(result: dict[str, Any], batch: int) -> dict[str, Any]:
    for phase, _ in PHASES:
        entry = result[phase]
        entry["step_s_median"] = round(statistics.median(entry["step_s"]), 4)
        entry["volumes_per_s"] = round(batch / entry["step_s_median"], 4)
    result["train_speedup"] = result["train"].get("speedup", 1.0)
    result["inference_speedup"] = result["inference"].get("speedup", 1.0)
    return result


def run_model_benchmark(
    size: Sequence[int] = (64, 224, 224),
    width: int = 64,
    batch: int = 1,
    repeats: int = 3,
    variants: Sequence[str] | None = None,
    attention: str = "dual",
    device: str = "auto",
    threads: int | None = None,
    timeout: float = 1800.0,
    warmup: int = 1,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure the variants against the fp32 eager baseline, step by step (see the module doc)."""
    info = _device_info(device)
    default, default_settings = default_variant(info["device"])
    names = list(variants or [*VARIANTS, DEFAULT])
    for name in names:
        if name not in VARIANTS and name != DEFAULT:
            raise ValueError(f"unknown variant {name!r}: choose from {[*VARIANTS, DEFAULT]}")
    # the default is measured once, under the name of the variant it equals (if it equals one)
    alias = next((n for n, v in VARIANTS.items() if v == default and (n in names or n == BASELINE)), None)
    plan = {n: (default if n == DEFAULT else VARIANTS[n]) for n in names if not (n == DEFAULT and alias)}
    plan.pop(BASELINE, None)
    base_spec = {"size": list(size), "width": width, "batch": batch, "attention": attention, "device": info["device"]}

    def start(name: str, variant: Variant) -> _Worker:
        if progress:
            progress(f"{name}: starting")
        return _Worker({**base_spec, "variant": asdict(variant)}, timeout, threads)

    results: dict[str, Any] = {}
    baseline = start(BASELINE, VARIANTS[BASELINE])
    try:
        base = {"settings": asdict(VARIANTS[BASELINE]), "status": "ok"}
        for phase, kind in PHASES:  # the baseline's own peaks and steps, unpaired
            base[phase] = _measure_phase(baseline, None, kind, warmup, repeats)
        results[BASELINE] = base
        for name, variant in plan.items():
            worker = None
            try:
                worker = start(name, variant)
                entry = {"settings": asdict(variant), "status": "ok"}
                for phase, kind in PHASES:
                    if progress:
                        progress(f"{name}: {phase}")
                    entry[phase] = _measure_phase(worker, baseline, kind, warmup, repeats)
                    base[phase]["step_s"] += entry[phase]["baseline_step_s"]
                results[name] = entry
            except VariantFailed as failure:
                results[name] = {"settings": asdict(variant), "status": "skipped", "reason": str(failure)}
            finally:
                if worker is not None:
                    worker.close()
    finally:
        baseline.close()
    for entry in results.values():
        if entry["status"] == "ok":
            _finish(entry, batch)
        else:
            entry["train_speedup"] = entry["inference_speedup"] = None
    default_name = alias or DEFAULT
    if alias and DEFAULT in names:
        results[DEFAULT] = {"same_as": alias, "settings": asdict(default)}
    compiled = [n for n in plan if plan[n].compile]
    return {
        "benchmark": "darnet_model",
        **info,
        "attention": attention,
        "size": list(size),
        "width": width,
        "batch": batch,
        "repeats": repeats,
        "baseline": BASELINE,
        "method": "each timed step of a variant paired with a baseline step just before it; speedup = median ratio",
        "default": {"variant": default_name, "settings": asdict(default), "config": default_settings},
        "variants": results,
        "train_speedup": results.get(default_name, {}).get("train_speedup"),
        "inference_speedup": results.get(default_name, {}).get("inference_speedup"),
        # torch.compile needs a working C++ compiler on CPU (inductor); where it fails the variant says why
        "compile_status": {
            n: "ok" if results[n]["status"] == "ok" else f"skipped: {results[n].get('reason')}" for n in compiled
        },
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=3, default=(64, 224, 224), metavar=("D", "H", "W"))
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per variant and phase")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=None, help=f"of {[*VARIANTS, DEFAULT]} (default: all)")
    parser.add_argument("--attention", default="dual")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the workers")
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds a step may take before the variant is skipped"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(json.loads(args.serve))
        return
    result = run_model_benchmark(
        size=args.size,
        width=args.width,
        batch=args.batch,
        repeats=args.repeats,
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

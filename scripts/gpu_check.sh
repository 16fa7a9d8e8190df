#!/usr/bin/env bash
# GPU check for darnet-pl, for a machine with one GPU and no network; finishes in under 10 minutes (the steps'
# time limits add up to 590 s; env takes seconds).
#
#   1. on a machine with pip access, in the repository root, fetch the wheels the GPU image lacks (into .whl/):
#        scripts/gpu_check.sh --fetch-wheels
#   2. on the GPU machine, in the repository root (the .whl/ folder travels with the checkout):
#        scripts/gpu_check.sh                      # results in $OUT (default ./gpu_check_out)
#   CPU dry run of everything but the GPU:  GPU_CHECK_DEVICE=cpu GPU_CHECK_QUICK=1 scripts/gpu_check.sh
#
# It writes (at most 8 files, no sub-folders, so all of it comes back from the device machine):
#   env.json               GPU, driver, torch/CUDA versions
#   data_wait.json         the real training loop at 64x224x224, width 64, batch 8, bf16-mixed, 8 loader workers,
#                          authors' augmentation: per step the time waiting for the loader, transferring (and
#                          augmenting on the device), computing; data-wait share, volumes/s, peak GPU memory; for
#                          base (augmentation in the workers, cudnn.benchmark on, contiguous), then one change at a
#                          time: on_device, channels_last_3d, benchmark off, and the MONAI float64 augmentation
#                          this package used before (what 8 workers could feed then)
#   bench_model.json       DARNet at the paper's input size (64x224x224, width 64, batch 2): fp32, bf16,
#                          channels_last_3d: training and inference throughput, speedups, peak GPU memory
#   bench_compile.json     the same for torch.compile (bf16 + channels_last_3d), against fp32
#   smoke_fp32.json        test metrics + wall time of 20 training steps of the smoke experiment on the GPU, fp32
#   smoke_bf16.json        the same with trainer.precision=bf16-mixed
#   summary.json           what ran, what failed, timings
#   log.txt                everything printed
set -uo pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=.whl
# versions resolved with torch 2.13 in this project (docs: ENV-NOTES); the GPU image has torch, Lightning,
# torchmetrics, scikit-learn, matplotlib, Pillow, PyYAML, but not these
WHEEL_SPECS=(hydra-core==1.3.8 omegaconf==2.3.1 monai==1.6.1)
SDIST_SPECS=(antlr4-python3-runtime==4.9.3)  # published as a source archive only: built into a wheel here

if [[ "${1:-}" == "--fetch-wheels" ]]; then
  set -e
  mkdir -p "$WHEELS"
  "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$WHEELS" "${WHEEL_SPECS[@]}"
  "$PY" -m pip wheel --no-deps -w "$WHEELS" "${SDIST_SPECS[@]}"
  ls -la "$WHEELS"
  echo "now run scripts/gpu_check.sh on the GPU machine (carry or commit-ignore $WHEELS as your setup requires)"
  exit 0
fi

OUT=${OUT:-$PWD/gpu_check_out}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/darnet-gpu-check.XXXXXX)
DEVICE=${GPU_CHECK_DEVICE:-cuda}
QUICK=${GPU_CHECK_QUICK:-0}
# the CPU dry run checks that every step runs, not how fast: on a shared CPU its steps get 3x the GPU limits
if [[ $DEVICE == cpu ]]; then LIMIT_SCALE=${GPU_CHECK_LIMIT_SCALE:-3}; else LIMIT_SCALE=${GPU_CHECK_LIMIT_SCALE:-1}; fi
exec > >(tee -a "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled HYDRA_FULL_ERROR=1
START=$(date +%s)
declare -A STATUS SECONDS_TAKEN

step() {  # step NAME TIMEOUT_S COMMAND...: run with a time limit, record status and duration, never abort
  local name=$1 limit=$(( $2 * LIMIT_SCALE )) t0 rc
  shift 2
  echo "=== $name (limit ${limit}s): $*" >&2  # stderr: a step's stdout may be its JSON result
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@"
  rc=$?
  SECONDS_TAKEN[$name]=$(( $(date +%s) - t0 ))
  if [[ $rc == 0 ]]; then STATUS[$name]=ok; elif [[ $rc == 124 || $rc == 137 ]]; then STATUS[$name]=timeout
  else STATUS[$name]="failed ($rc)"; fi
  echo "=== $name: ${STATUS[$name]} in ${SECONDS_TAKEN[$name]}s" >&2
}

# --- dependencies: what the image lacks comes from the carried wheels, installed outside the image's env
if ! "$PY" -c "import hydra, omegaconf, monai" 2>/dev/null; then
  if compgen -G "$WHEELS/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" \
      "$WHEELS"/*.whl || echo "wheel install failed"
    export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "hydra-core/omegaconf/monai missing and no $WHEELS/*.whl: run scripts/gpu_check.sh --fetch-wheels first"
  fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"  # the package itself, without installing it

step env 60 "$PY" - "$OUT/env.json" <<'EOF'
import json, subprocess, sys, torch
info = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(), "cudnn": torch.backends.cudnn.version()}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(device=p.name, memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}",
                bf16_supported=torch.cuda.is_bf16_supported())
try:
    info["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                         "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
except OSError:
    info["nvidia_smi"] = None
for name in ("pytorch_lightning", "torchmetrics", "hydra", "omegaconf", "monai"):
    try:
        info[name] = __import__(name).__version__
    except Exception as error:  # noqa: BLE001 - a report, not a program
        info[name] = f"missing: {error}"
json.dump(info, open(sys.argv[1], "w"), indent=2)
print(json.dumps(info, indent=2))
EOF

# --- data wait in the training loop at the paper's size, batch 8, bf16, 8 workers (or small for the CPU dry run);
# the JSON is rewritten after every setting, so a time-out keeps the settings measured so far
if [[ $QUICK == 1 ]]; then
  WAIT_ARGS=(--size 8 32 32 --width 4 --batch 2 --workers 2 --steps 3 --warmup 1)
else
  WAIT_ARGS=(--size 64 224 224 --width 64 --batch 8 --workers 8 --steps 20 --warmup 4)
fi
step data_wait 240 "$PY" -m darnet_pl.bench.data_wait --device "$DEVICE" "${WAIT_ARGS[@]}" --precision bf16-mixed \
  --preset authors --settings base on_device channels_last_3d no_benchmark before --out "$OUT/data_wait.json" \
  > /dev/null

# --- model benchmark at the paper's input size (or small for the CPU dry run)
if [[ $QUICK == 1 ]]; then SIZE=(8 32 32); WIDTH=8; BATCH=2; REPEATS=2; else SIZE=(64 224 224); WIDTH=64; BATCH=2; REPEATS=5; fi
# each variant in its own worker (own peak memory), every timed step paired with an fp32 step; torch.compile runs
# separately, so that a slow compilation (reported as skipped after 75 s) cannot cost the other results
COMMON=(--device "$DEVICE" --size "${SIZE[@]}" --width "$WIDTH" --batch "$BATCH" --repeats "$REPEATS" --quiet)
step bench_model 80 "$PY" -m darnet_pl.bench.model "${COMMON[@]}" --timeout 60 \
  --variants fp32 bf16 channels_last bf16_channels_last default > "$WORK/bench_model.json"
cp "$WORK/bench_model.json" "$OUT/bench_model.json" 2>/dev/null
step bench_compile 130 "$PY" -m darnet_pl.bench.model "${COMMON[@]}" --timeout 75 --repeats 3 \
  --variants fp32 bf16_channels_last_compile > "$WORK/bench_compile.json"
cp "$WORK/bench_compile.json" "$OUT/bench_compile.json" 2>/dev/null

# --- a few training steps of the smoke experiment on the GPU, fp32 and bf16-mixed
if [[ $DEVICE == cuda ]]; then TRAINER=gpu; else TRAINER=cpu; fi
for precision in fp32 bf16; do
  if [[ $precision == bf16 ]]; then PREC=bf16-mixed; else PREC=32-true; fi
  if [[ $QUICK == 1 ]]; then EXTRA=(debug=tiny); else
    EXTRA=(trainer.max_epochs=1 +trainer.limit_train_batches=20 +trainer.limit_val_batches=4 data.num_workers=8); fi
  step "smoke_$precision" 40 "$PY" -m darnet_pl +experiment=smoke trainer=$TRAINER trainer.precision=$PREC \
    logger=csv "paths.log_dir=$WORK/runs_$precision" "${EXTRA[@]}"
  "$PY" - "$WORK/runs_$precision" "$OUT/smoke_$precision.json" "${SECONDS_TAKEN[smoke_$precision]}" <<'EOF'
import json, pathlib, sys
found = sorted(pathlib.Path(sys.argv[1]).rglob("test_metrics.json"))
result = {"wall_s": int(sys.argv[3]), "test_metrics": json.loads(found[-1].read_text()) if found else None}
json.dump(result, open(sys.argv[2], "w"), indent=2)
EOF
done

"$PY" - "$OUT/summary.json" "$(( $(date +%s) - START ))" <<EOF
import json, sys
status = {$(for k in "${!STATUS[@]}"; do printf '"%s": ["%s", %s], ' "$k" "${STATUS[$k]}" "${SECONDS_TAKEN[$k]}"; done)}
summary = {"total_s": int(sys.argv[2]), "device": "$DEVICE", "quick": $QUICK == 1,
           "steps": {k: {"status": v[0], "seconds": v[1]} for k, v in status.items()}}
try:
    wait = json.load(open("$OUT/data_wait.json"))
    keys = ("data_wait_share", "wait_s_per_step", "transfer_s_per_step", "step_s_per_step", "volumes_per_s",
            "peak_memory_mib", "status", "reason")
    summary["data_wait"] = {n: {k: v[k] for k in keys if k in v} for n, v in wait["settings"].items()}
except (OSError, ValueError, KeyError) as error:
    summary["data_wait_error"] = f"no result: {error}"
summary["variants"] = {}
for name in ("bench_model", "bench_compile"):
    try:
        bench = json.load(open(f"$OUT/{name}.json"))
    except (OSError, ValueError) as error:
        summary[f"{name}_error"] = f"no result: {error}"
        continue
    if name == "bench_model":
        summary["train_speedup_default"] = bench.get("train_speedup")
    for n, v in bench["variants"].items():
        summary["variants"][n] = {
            "train_volumes_per_s": v.get("train", {}).get("volumes_per_s"),
            "inference_volumes_per_s": v.get("inference", {}).get("volumes_per_s"),
            "train_speedup": v.get("train_speedup"), "train_peak_mib": v.get("train", {}).get("peak_mib"),
            "status": v.get("status", v.get("same_as")), "reason": v.get("reason")}
json.dump(summary, open(sys.argv[1], "w"), indent=2)
print(json.dumps(summary, indent=2))
EOF
rm -rf "$WORK"

#!/usr/bin/env bash
# What a first GPU session measures, in at most 8 minutes on one H200:
#   1. env    the machine: torch, CUDA device, liger-kernel, nvidia-smi
#   2. tests  the device checks (tests/test_bench_gpu.py: chunked loss in bf16 against float64 full
#             logits at vocab 151936, trainer steps under bf16 autocast, bit-identical repeats under
#             torch.use_deterministic_algorithms) and the Liger value checks of tests/test_bench_loss.py
#   3. loss   `askd bench loss` on CUDA, bf16, with the Liger rows (eager and torch.compile)
#   4. step   `askd bench step` on CUDA with bf16 autocast: toy models and Qwen2.5-0.5B's shape
# Each step runs under its own time limit; a failing step is recorded and the next one still runs.
#
# Usage: scripts/gpu-check.sh [--dry-run | --plan] DIR
#   DIR gets gpu-check.log (everything printed), summary.json (per step: exit code, seconds,
#   limit), env.json, tests.xml, loss/loss-bench*.{json,md,png}, step/step-bench.{json,md}.
#   --dry-run (automatic when torch sees no CUDA device): the same steps on the CPU at tiny sizes,
#   and the test step only collects the tests (they run on the CPU in `make test` anyway); it
#   checks every command line and output file of the real run (a few minutes on a loaded CPU).
#   --plan: run nothing; write DIR/plan.json with the commands of the GPU run and check that each
#   askd command parses and each pytest target exists (seconds; `make test` runs it).
# Environment: PYTHON (default: python) must import askd_ref; run from the repository root.
set -u -o pipefail

dry=0
plan=0
if [[ "${1:-}" == "--dry-run" ]]; then
    dry=1
    shift
elif [[ "${1:-}" == "--plan" ]]; then
    plan=1
    shift
fi
if [[ $# -ne 1 ]]; then
    echo "usage: scripts/gpu-check.sh [--dry-run | --plan] DIR" >&2
    exit 2
fi
dir=$1
py=${PYTHON:-python}
mkdir -p "$dir" || exit 2
log="$dir/gpu-check.log"
: >"$log"
if [[ $plan -eq 0 && $dry -eq 0 ]] && ! "$py" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu-check: torch sees no CUDA device; running the CPU dry run instead" | tee -a "$log"
    dry=1
fi

export CUBLAS_WORKSPACE_CONFIG=:4096:8 TOKENIZERS_PARALLELISM=false TQDM_DISABLE=1
if [[ $dry -eq 1 ]]; then
    export ASKD_DEVICE=cpu
    device=cpu
    test_args=(--collect-only -q)
    loss_args=(--device cpu --dtype bfloat16 --sizes 64x97 --hidden 8 --seq-len 16 --repeats 1)
    if "$py" -c "import liger_kernel.chunked_loss" 2>/dev/null; then
        loss_args+=(--impls askd_chunked_gkd,liger_jsd)
    else
        loss_args+=(--impls askd_chunked_gkd,floor)
    fi
    step_args=(--device cpu --models toy --layers 1 --steps 1 --warmup 0 --prompts 2 --max-new-tokens 4)
else
    export ASKD_DEVICE=cuda
    device=cuda
    test_args=(-q -ra)
    loss_args=(--device cuda --dtype bfloat16 --sizes 4096x32768,16384x151936 --repeats 3 --no-extras)
    step_args=(--device cuda --bf16 --steps 3 --warmup 1 --max-new-tokens 64)
fi

[[ $plan -eq 1 ]] && echo "[" >"$dir/plan.json"
summary="$dir/summary.json.tmp"
echo "{\"dry_run\": $([[ $dry -eq 1 ]] && echo true || echo false), \"device\": \"$device\", \"steps\": [" >"$summary"
first=1
failed=0

# run NAME LIMIT_S COMMAND...: run under `timeout`, append its output to the log, record the result
# (--plan: only record NAME and the command in plan.json)
run() {
    local name=$1 limit=$2
    shift 2
    if [[ $plan -eq 1 ]]; then
        [[ $first -eq 1 ]] || echo "," >>"$dir/plan.json"
        first=0
        "$py" -c 'import json, sys; print(json.dumps({"name": sys.argv[1], "limit_s": int(sys.argv[2]), "argv": sys.argv[3:]}))' \
            "$name" "$limit" "$@" >>"$dir/plan.json"
        echo "plan: $name (limit ${limit}s): $*"
        return
    fi
    echo "=== $name (limit ${limit}s): $*" | tee -a "$log"
    local t0 t1 rc
    t0=$(date +%s.%N)
    timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    local secs
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    echo "=== $name: exit $rc after ${secs}s" | tee -a "$log"
    [[ $rc -ne 0 ]] && failed=1
    [[ $first -eq 1 ]] || echo "," >>"$summary"
    first=0
    printf '{"name": "%s", "exit_code": %d, "seconds": %s, "limit_s": %d}' "$name" "$rc" "$secs" "$limit" >>"$summary"
}

run env 30 "$py" - "$dir/env.json" <<'PYEOF'
import json, os, subprocess, sys
from importlib.metadata import PackageNotFoundError, version
import torch
def ver(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"
info = {
    "torch": torch.__version__,
    "cuda_available": torch.cuda.is_available(),
    "cuda": torch.version.cuda,
    "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    "liger_kernel": ver("liger-kernel"),
    "triton": ver("triton"),
    "transformers": ver("transformers"),
    "load_average_1_5_15": os.getloadavg(),
    "cpu_count": os.cpu_count(),
}
try:
    info["nvidia_smi"] = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20).stdout
except (OSError, subprocess.TimeoutExpired) as exc:
    info["nvidia_smi"] = f"not run: {exc}"
with open(sys.argv[1], "w", encoding="utf-8") as f:
    json.dump(info, f, indent=2)
print(json.dumps({k: v for k, v in info.items() if k != "nvidia_smi"}))
PYEOF
run tests 90 "$py" -m pytest -p no:cacheprovider "${test_args[@]}" --junitxml="$dir/tests.xml" \
    tests/test_bench_gpu.py "tests/test_bench_loss.py::test_liger_eager_jsd_equals_askd_gkd_value_and_gradient" \
    "tests/test_bench_loss.py::test_liger_beta_weights_the_teacher_as_askd_ref_does"
run loss 240 "$py" -m askd_ref.cli bench loss --out "$dir/loss" --quiet "${loss_args[@]}"
run step 120 "$py" -m askd_ref.cli bench step --out "$dir/step" "${step_args[@]}"

if [[ $plan -eq 1 ]]; then
    echo "]" >>"$dir/plan.json"
    rm -f "$summary"
    "$py" -m askd_ref.bench.plan "$dir/plan.json"
    exit $?
fi
echo "], \"failed\": $([[ $failed -eq 1 ]] && echo true || echo false)}" >>"$summary"
mv "$summary" "$dir/summary.json"
echo "gpu-check: wrote $dir (summary.json, gpu-check.log)" | tee -a "$log"
exit $failed

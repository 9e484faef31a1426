#!/usr/bin/env bash
# The one-call GPU check. On a GPU machine with torch and triton already installed (no network, nothing
# installed), from the source tree:
#
#   bash bench/gpu_check.sh OUT_DIR
#
# runs, each step under its own timeout so one hang cannot eat the budget, continuing after a failed step:
#   env          nvidia-smi and the versions torch and triton report
#   gpu-tests    pytest -m gpu (the tests that need CUDA)
#   peak         tokenbench peak (matmul per dtype, copy and read bandwidth, against the spec sheet)
#   run-torch    tokenbench run with its GPU defaults, backend torch (reads the peak just measured)
#   run-triton   the same with backend triton
#   benchmarks   the pytest-benchmark suites (CUDA-event timer), saved as pytest-benchmark JSON
# and packs everything into OUT_DIR as a few files: summary.txt (step -> exit code, seconds), logs.txt (every
# step's output), results.tar.gz (results/ files of the runs and peak, and the pytest-benchmark JSON under
# results/benchmarks/<device>/<machine>/, the layout `tokenbench history` and --tokenbench-baseline read). Timeouts add up to 450 s (7.5 minutes) if every step hits its own; the budgets
# passed to each step keep an H200 well inside them. Exit code: 0 when every step passed, 1 otherwise.
#
# Environment overrides: PYTHON (default python3), PEAK_BUDGET_S, RUN_BUDGET_S, BENCH_BUDGET_S, BENCH_MODELS.
set -u

if [ $# -ne 1 ]; then
  echo "usage: bash bench/gpu_check.sh OUT_DIR" >&2
  exit 2
fi
mkdir -p "$1" || { echo "gpu_check: cannot create $1" >&2; exit 2; }
OUT=$(cd "$1" && pwd)
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
PEAK_BUDGET_S=${PEAK_BUDGET_S:-60}
RUN_BUDGET_S=${RUN_BUDGET_S:-0.5}
BENCH_BUDGET_S=${BENCH_BUDGET_S:-60}
BENCH_MODELS=${BENCH_MODELS:-}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
mkdir -p "$WORK/logs" "$WORK/results"
SUMMARY="$WORK/summary.txt"
FAILED=0
STEPS=()
STARTED=$(date +%s)
printf 'tokenbench gpu check, %s, commit %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" > "$SUMMARY"
printf '%-12s %5s %8s  %s\n' step exit seconds command >> "$SUMMARY"

# step NAME TIMEOUT_S COMMAND...: run under `timeout` (SIGINT first, so runs keep their rows and pytest
# still saves its benchmark JSON; SIGKILL 10 s later), log to WORK/logs/NAME.log and the terminal.
step() {
  local name=$1 limit=$2
  shift 2
  local log="$WORK/logs/$name.log" t0 rc
  STEPS+=("$name")
  t0=$(date +%s)
  echo "== $name (timeout ${limit}s): $*" | tee "$log"
  timeout -s INT -k 10 "$limit" "$@" 2>&1 | tee -a "$log"
  rc=${PIPESTATUS[0]}
  [ "$rc" -eq 124 ] && echo "== $name: stopped by its ${limit}s timeout" | tee -a "$log"
  [ "$rc" -ne 0 ] && FAILED=1
  printf '%-12s %5s %8s  %s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" "$*" >> "$SUMMARY"
}

cat > "$WORK/env.sh" <<EOF
nvidia-smi || echo "nvidia-smi: not available"
"$PY" -c 'import sys, torch; print(sys.version); print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available()); print(torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device: the steps below measure the CPU")'
"$PY" -c 'import triton; print("triton", triton.__version__)'
"$PY" -m bench devices
EOF
step env 20 bash "$WORK/env.sh"

step gpu-tests 90 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests

step peak 90 "$PY" -m bench peak --budget-s "$PEAK_BUDGET_S" --out "$WORK/results"

# The run's defaults on a GPU: llama-3.1-8b, bf16, batch 1,8,32,128, context 2048.
step run-torch 80 "$PY" -m bench run --backend torch --budget-s "$RUN_BUDGET_S" --out "$WORK/results"
step run-triton 80 "$PY" -m bench run --backend triton --budget-s "$RUN_BUDGET_S" --out "$WORK/results"

# The benchmark storage mirrors the repository's layout (results/benchmarks/<device>/<machine>/NNNN_*.json), so
# the packed folder can be committed as this device's baseline. Compared (not failed) against a committed one.
DEVICE_SLUG=$("$PY" -c "from bench.devices import detect; from bench.results import slug; d = detect(); print(slug(d.key or d.name))" 2>/dev/null || echo unknown)
STORAGE="$WORK/results/benchmarks/$DEVICE_SLUG"
COMPARE=()
BASE=$(ls -1 "$ROOT"/results/benchmarks/"$DEVICE_SLUG"/*/[0-9][0-9][0-9][0-9]_*.json 2>/dev/null | sort | tail -n 1)
[ -n "$BASE" ] && COMPARE=("--benchmark-compare=$BASE")
MODELS=()
[ -n "$BENCH_MODELS" ] && MODELS=("--tokenbench-models" "$BENCH_MODELS")
step benchmarks 90 "$PY" -m pytest bench/benchmarks -q -p no:cacheprovider \
  "--benchmark-storage=file://$STORAGE" --benchmark-autosave \
  --tokenbench-budget-s "$BENCH_BUDGET_S" ${MODELS[@]+"${MODELS[@]}"} ${COMPARE[@]+"${COMPARE[@]}"}

TOTAL=$(( $(date +%s) - STARTED ))
printf 'total %ss; %s\n' "$TOTAL" "$([ "$FAILED" -eq 0 ] && echo 'every step passed' || echo 'some step failed: see logs.txt')" >> "$SUMMARY"

# Pack: a few files in OUT (the device tool brings back at most 8).
cp "$SUMMARY" "$OUT/summary.txt"
for name in "${STEPS[@]}"; do cat "$WORK/logs/$name.log"; echo; done > "$OUT/logs.txt"
tar -czf "$OUT/results.tar.gz" -C "$WORK" results logs summary.txt
rm -rf "$WORK"

echo
cat "$OUT/summary.txt"
echo "packed into $OUT: summary.txt logs.txt results.tar.gz"
exit "$FAILED"

#!/usr/bin/env bash
# The one-call GPU check: bash bench/gpu_check.sh OUT_DIR [--deadline-s S] [--dry-run [--device h100-sxm|h200]]
#   [--cpu-rehearsal] [--fake ok,hang,...]   (docs/gpu-check.md)
# The control flow lives in bench/gpu_check.py (step order, plans fitted to the global deadline, packing after
# every step, process-group clean-up; the steps and estimates in bench/gpu_check_plan.py); exec so a SIGTERM of this script reaches it and it still packs what it has.
set -u
if [ $# -lt 1 ]; then
  echo "usage: bash bench/gpu_check.sh OUT_DIR [--deadline-s S] [--dry-run [--device h100-sxm|h200]] [--cpu-rehearsal]" >&2
  exit 2
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" "$ROOT/bench/gpu_check.py" "$@"

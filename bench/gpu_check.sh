#!/usr/bin/env bash
# The one-call GPU check: bash bench/gpu_check.sh OUT_DIR [--deadline-s S] [--fake ok,hang,...]
# The control flow lives in bench/gpu_check.py (step order, global deadline, packing after every step,
# process-group clean-up); exec so a SIGTERM of this script reaches it and it still packs what it has.
set -u
if [ $# -lt 1 ]; then
  echo "usage: bash bench/gpu_check.sh OUT_DIR [--deadline-s S]" >&2
  exit 2
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" "$ROOT/bench/gpu_check.py" "$@"

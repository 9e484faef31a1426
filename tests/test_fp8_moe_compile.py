"""The MoE grouped GEMM (sm_80/90/100) and the FP8 GEMM (sm_90/100, every autotune config) compile for real GPU
targets, checked here without a GPU by kernels.triton.compile_check_scale in a child process without
TRITON_INTERPRET (the interpreter never runs the compiler)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton", reason="triton is not installed")
ROOT = Path(__file__).resolve().parents[1]


def test_moe_and_fp8_kernels_compile_for_gpu_targets():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    run = subprocess.run([sys.executable, "-m", "kernels.triton.compile_check_scale", "sm_80", "sm_90", "sm_100"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert "0 failures" in run.stdout

"""Checks shared by the Triton kernel tests (imported after each module has set TRITON_INTERPRET)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from kernels.dtypes import TOLERANCE

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPE_NAME = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
# the interpreter's tl.dot on bf16 multiplies raw bits: bf16 runs only on a GPU (gpu-marked tests)
INTERPRETER_DTYPES = (torch.float16, torch.float32)


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double(), ref.double()
    return ((out - ref).norm() / ref.norm()).item()


def assert_close(out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype, what: str = "") -> None:
    """||out - ref|| / ||ref|| within the dtype's tolerance; any NaN/inf fails (NaN poison included)."""
    assert out.shape == ref.shape, f"{what}: shape {tuple(out.shape)} != {tuple(ref.shape)}"
    bad = (~torch.isfinite(out)).sum().item()
    assert bad == 0, f"{what}: {bad} non-finite elements (unwritten output or overflow)"
    err = rel_error(out, ref)
    tol = TOLERANCE[DTYPE_NAME[dtype]]
    assert err <= tol, f"{what}: relative error {err:.3g} > {tol:g} ({DTYPE_NAME[dtype]})"


def nan_like(shape, dtype) -> torch.Tensor:
    """An output buffer full of NaN: any element a kernel fails to write fails assert_close."""
    return torch.full(shape, float("nan"), dtype=dtype, device=DEVICE)


def compile_for_gpu_targets(module: str, targets: tuple = ("sm_80", "sm_90", "sm_100")) -> str:
    """`python -m module sm_80 sm_90 sm_100` (kernels.triton.compile_check or compile_check_scale) in a child
    process without TRITON_INTERPRET (the interpreter never runs the compiler); asserts it found no failure
    and returns its stdout."""
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    run = subprocess.run([sys.executable, "-m", module, *targets],
                         cwd=root, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert "0 failures" in run.stdout
    return run.stdout

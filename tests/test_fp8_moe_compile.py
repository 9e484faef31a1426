"""The MoE grouped GEMM (sm_80/90/100) and the FP8 GEMM (sm_90/100, every autotune config) compile for real GPU
targets, checked here without a GPU by kernels.triton.compile_check_scale in a child process without
TRITON_INTERPRET (the interpreter never runs the compiler)."""
import pytest

pytest.importorskip("triton", reason="triton is not installed")

from triton_helpers import compile_for_gpu_targets  # noqa: E402


def test_moe_and_fp8_kernels_compile_for_gpu_targets():
    compile_for_gpu_targets("kernels.triton.compile_check_scale")

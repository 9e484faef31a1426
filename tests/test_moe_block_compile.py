"""The MoE block's Triton kernels (fused router selection; grouped experts with biases and gpt-oss's activation)
compile for sm_80/90/100 at the served models' shapes with no register spills, checked here without a GPU by
kernels.triton.compile_check_moe in a child process without TRITON_INTERPRET (the interpreter never runs the
compiler)."""
import pytest

pytest.importorskip("triton", reason="triton is not installed")

from triton_helpers import compile_for_gpu_targets  # noqa: E402


def test_moe_block_kernels_compile_without_spills():
    compile_for_gpu_targets("kernels.triton.compile_check_moe")

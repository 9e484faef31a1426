"""The attention kernels of the served models (sliding window and sinks in decode and prefill, q/k norm,
RMSNorm, MLA's per-head GEMM, latent append, MLA decode and prefill) compile for Ampere, Hopper and
Blackwell without register spills, checked on a machine without a GPU (kernels.triton.compile_check_attention
in a child process without TRITON_INTERPRET)."""
import pytest

pytest.importorskip("triton", reason="triton is not installed")

from triton_helpers import compile_for_gpu_targets  # noqa: E402


def test_attention_kernels_compile_without_spills_for_gpu_targets():
    compile_for_gpu_targets("kernels.triton.compile_check_attention")

"""The attention kernels of the served models (sliding window and sinks in decode and prefill, q/k norm,
RMSNorm, MLA's per-head GEMM, latent append, MLA decode and prefill) compile for Ampere, Hopper and
Blackwell without register spills, checked on a machine without a GPU (kernels.triton.compile_check_attention
in a child process without TRITON_INTERPRET)."""
import pytest

pytest.importorskip("triton", reason="triton is not installed")

import os  # noqa: E402

from triton_helpers import compile_for_gpu_targets  # noqa: E402

# The whole matrix (every kernel and variant for three architectures) takes about 90 s a target on a 2-core
# CPU: the suite compiles for the GPU the project is checked on (Hopper, sm_90); TOKENBENCH_SLOW_TESTS=1 adds
# Ampere and Blackwell, as `python -m kernels.triton.compile_check_attention sm_80 sm_90 sm_100` does.
TARGETS = ("sm_80", "sm_90", "sm_100") if os.environ.get("TOKENBENCH_SLOW_TESTS") == "1" else ("sm_90",)


def test_attention_kernels_compile_without_spills_for_gpu_targets():
    compile_for_gpu_targets("kernels.triton.compile_check_attention", TARGETS)

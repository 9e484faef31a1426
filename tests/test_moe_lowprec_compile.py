"""The low-precision expert GEMMs compile for real GPU targets without spilling: MXFP4 weight-only for
sm_80/90/100, FP8 block-scaled for sm_90/100, at DeepSeek-V3 and gpt-oss-120b expert shapes, decode batches 1
and 64; checked here without a GPU by kernels.triton.compile_check_lowprec in a child process without
TRITON_INTERPRET."""
import re

import pytest

pytest.importorskip("triton", reason="triton is not installed")

from triton_helpers import compile_for_gpu_targets  # noqa: E402


def test_lowprec_moe_kernels_compile_without_spills():
    out = compile_for_gpu_targets("kernels.triton.compile_check_lowprec")
    kernels = re.findall(r"^(sm_\d+) (_\w+_kernel) .*: (\d+) registers, (\d+) bytes local/stack", out, re.M)
    # 2 MXFP4 kernels x 2 batches x 3 targets + 2 FP8 kernels x 2 batches x 2 targets
    assert len(kernels) == 20
    assert {(t, k) for t, k, _, _ in kernels if k.startswith("_fp8")} == {
        (t, k) for t in ("sm_90", "sm_100") for k in ("_fp8_gate_up_kernel", "_fp8_down_kernel")}
    assert all(int(spill) == 0 and int(regs) <= 255 for _, _, regs, spill in kernels)

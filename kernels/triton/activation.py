"""SwiGLU in Triton on the fused gate/up output: out = silu(gate) * up, one pass over memory.

gate_up [B, 2F]: gate in columns [0, F), up in [F, 2F) (the fused projection's order); out [B, F].
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.triton._common import cdiv, check_out, check_tensors, next_pow2

BLOCK_F = 1024  # 4 warps x 32 threads x 8 elements: 16-byte vector loads in bf16


@triton.jit
def _swiglu_kernel(
    gu_ptr, stride_gu,  # [B, 2F]
    out_ptr, stride_out,  # [B, F]
    F,
    BLOCK: tl.constexpr,
):
    """out = gate * sigmoid(gate) * up in fp32, rounded once. Read 2 BLOCK; write BLOCK."""
    row = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < F
    gate = tl.load(gu_ptr + row * stride_gu + offs, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(gu_ptr + row * stride_gu + F + offs, mask=mask, other=0.0).to(tl.float32)
    out = gate * tl.sigmoid(gate) * up
    tl.store(out_ptr + row * stride_out + offs, out.to(out_ptr.dtype.element_ty), mask=mask)


def triton_swiglu(gate_up, out=None, **_) -> torch.Tensor:
    op = "triton_swiglu"
    check_tensors(op, gate_up, gate_up=gate_up, out=out)
    if gate_up.dim() != 2 or gate_up.shape[1] % 2:
        raise ValueError(f"{op}: gate_up must be [B, 2F], got {tuple(gate_up.shape)}")
    if gate_up.stride(-1) != 1:
        gate_up = gate_up.contiguous()
    b, f = gate_up.shape[0], gate_up.shape[1] // 2
    out = check_out(op, out, (b, f), gate_up.dtype, gate_up.device)
    if b == 0 or f == 0:
        return out
    block = min(BLOCK_F, next_pow2(f))
    _swiglu_kernel[(b, cdiv(f, block))](gate_up, gate_up.stride(0), out, out.stride(0), f,
                                        BLOCK=block, num_warps=4)
    return out

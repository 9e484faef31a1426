"""RMSNorm with the residual add fused in front, in Triton: one pass over memory.

r = x + residual (rounded to the input dtype: it is the stored residual stream);
out = r / sqrt(mean(r^2) + eps) * w.   x, residual, out, r: [B, H]; w: [H]. Returns (out, r).
One program per row holds the whole row in registers (H <= 16384 for every model here), so each
element is read once and written once; statistics in fp32.
"""
from __future__ import annotations

import triton
import triton.language as tl

from kernels.triton._common import check_out, check_same_dtype, check_shape, check_tensors, next_pow2

MAX_HIDDEN = 65536  # one row must fit one program's registers


@triton.jit
def _rmsnorm_residual_kernel(
    x_ptr, stride_x,  # [B, H]
    res_ptr, stride_res,  # [B, H]
    w_ptr,  # [H]
    out_ptr, stride_out,  # [B, H]
    r_ptr, stride_r,  # [B, H] updated residual
    H, eps,
    BLOCK_H: tl.constexpr,
):
    """r = x + res;  out = r * rsqrt(sum(r^2) / H + eps) * w.

    Traffic per row: read 2 H (+ H of w, shared by all rows in L2); write 2 H.
    """
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK_H)
    mask = offs < H
    x = tl.load(x_ptr + row * stride_x + offs, mask=mask, other=0.0)
    res = tl.load(res_ptr + row * stride_res + offs, mask=mask, other=0.0)
    # the sum is rounded to the storage dtype first: the norm is taken of the residual as stored,
    # exactly what the next layer will read back
    r = (x.to(tl.float32) + res.to(tl.float32)).to(x.dtype)
    tl.store(r_ptr + row * stride_r + offs, r, mask=mask)
    rf = r.to(tl.float32)
    rstd = tl.rsqrt(tl.sum(rf * rf, axis=0) / H + eps)
    w = tl.load(w_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    # one rounding at the end (Hugging Face rounds before the weight multiply; both are well inside
    # tolerance and this one is the more accurate)
    tl.store(out_ptr + row * stride_out + offs, (rf * rstd * w).to(out_ptr.dtype.element_ty), mask=mask)


def _num_warps(block_h: int) -> int:
    """About 8-16 elements per thread: 4 warps up to 2048 columns, 8 to 8192, 16 beyond."""
    return 4 if block_h <= 2048 else 8 if block_h <= 8192 else 16


def triton_rmsnorm_residual(x, residual, w, eps, out=None, residual_out=None, **_) -> tuple:
    """(out, r) as kernels.norm.torch_rmsnorm_residual; `out`, `residual_out` are optional buffers."""
    op = "triton_rmsnorm_residual"
    check_tensors(op, x, x=x, residual=residual, w=w, out=out, residual_out=residual_out)
    check_same_dtype(op, x, residual=residual, w=w)
    if x.dim() != 2:
        raise ValueError(f"{op}: x must be [B, H], got {tuple(x.shape)}")
    b, h = x.shape
    check_shape(op, "residual", residual, (b, h))
    check_shape(op, "w", w, (h,))
    if h > MAX_HIDDEN:
        raise ValueError(f"{op}: hidden {h} > {MAX_HIDDEN} does not fit one program")
    if x.stride(-1) != 1 or residual.stride(-1) != 1 or w.stride(-1) != 1:
        x, residual, w = x.contiguous(), residual.contiguous(), w.contiguous()
    out = check_out(op, out, (b, h), x.dtype, x.device)
    r = check_out(op, residual_out, (b, h), x.dtype, x.device)
    if b == 0:
        return out, r
    block_h = next_pow2(h)
    _rmsnorm_residual_kernel[(b,)](
        x, x.stride(0), residual, residual.stride(0), w, out, out.stride(0), r, r.stride(0), h, float(eps),
        BLOCK_H=block_h, num_warps=_num_warps(block_h),
    )
    return out, r

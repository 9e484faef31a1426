"""RMSNorm without a residual add, in Triton, over rows addressed by two strides (a row index split as
(outer, inner) = (token, head)), so one kernel serves a plain [R, H] matrix (MLA's q_a / kv_a norms, strided
views of a projection's output) and per-head norms over [B, NH, D] views (kernels/triton/qk_norm.py).

out = w * round(x / sqrt(mean(x^2) + eps)): statistics in fp32, rounded to the input dtype before the
weight multiply, as transformers' RMSNorm modules. A program normalises ROWS rows held in registers
(H <= 16384), so each element is read once and written once.
"""
from __future__ import annotations

import triton
import triton.language as tl

from kernels.triton._common import check_out, check_same_dtype, check_shape, check_tensors, cdiv, next_pow2

MAX_HIDDEN = 16384


@triton.jit
def norm_rows(
    x_ptr, stride_xo, stride_xi,  # rows r = o * INNER + i at x_ptr + o stride_xo + i stride_xi
    o_ptr, stride_oo, stride_oi,
    w_ptr, first_row, R, INNER, H, eps,
    ROWS: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """ROWS rows from `first_row`: read ROWS H (+ H of w); write ROWS H."""
    rows = first_row + tl.arange(0, ROWS)
    offs = tl.arange(0, BLOCK_H)
    r_ok = rows < R
    h_ok = offs < H
    outer = (rows // INNER).to(tl.int64)
    inner = (rows % INNER).to(tl.int64)
    mask = r_ok[:, None] & h_ok[None, :]
    x = tl.load(x_ptr + (outer * stride_xo + inner * stride_xi)[:, None] + offs[None, :], mask=mask,
                other=0.0).to(tl.float32)
    rstd = tl.rsqrt(tl.sum(x * x, axis=1) / H + eps)
    w = tl.load(w_ptr + offs, mask=h_ok, other=0.0)
    y = (x * rstd[:, None]).to(w.dtype) * w[None, :]
    tl.store(o_ptr + (outer * stride_oo + inner * stride_oi)[:, None] + offs[None, :],
             y.to(o_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _rmsnorm_kernel(
    x_ptr, stride_x, o_ptr, stride_o, w_ptr, R, H, eps,
    ROWS: tl.constexpr, BLOCK_H: tl.constexpr,
):
    norm_rows(x_ptr, stride_x, 0, o_ptr, stride_o, 0, w_ptr, tl.program_id(0) * ROWS, R, 1, H, eps,
              ROWS=ROWS, BLOCK_H=BLOCK_H)


def rows_per_program(block_h: int) -> int:
    """About 4K elements a program: one row of 4096, 32 rows of a 128-wide head."""
    return max(1, min(64, 4096 // block_h))


def num_warps(block_h: int, rows: int) -> int:
    return 4 if block_h * rows <= 4096 else 8


def triton_rmsnorm(x, w, eps, out=None, **_):
    """RMSNorm of each row of x [R, H] (any row stride); returns [R, H] in x's dtype (or into `out`)."""
    op = "triton_rmsnorm"
    check_tensors(op, x, x=x, w=w, out=out)
    check_same_dtype(op, x, w=w)
    if x.dim() != 2:
        raise ValueError(f"{op}: x must be [R, H], got {tuple(x.shape)}")
    r, h = x.shape
    check_shape(op, "w", w, (h,))
    if h > MAX_HIDDEN:
        raise ValueError(f"{op}: hidden {h} > {MAX_HIDDEN} does not fit one program")
    if x.stride(-1) != 1:
        x = x.contiguous()
    w = w.contiguous()
    out = check_out(op, out, (r, h), x.dtype, x.device)
    if r == 0:
        return out
    block_h = next_pow2(h)
    rows = rows_per_program(block_h)
    _rmsnorm_kernel[(cdiv(r, rows),)](x, x.stride(0), out, out.stride(0), w, r, h, float(eps),
                                      ROWS=rows, BLOCK_H=block_h, num_warps=num_warps(block_h, rows))
    return out

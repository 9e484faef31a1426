"""A GEMM per attention head in Triton: y[m, h] = x[m, h] @ W[h]^T (MLA's absorbed W_UK and W_UV).

Grid (H, cdiv(N, BLOCK_N), cdiv(M, BLOCK_M)): a program computes a [BLOCK_M, BLOCK_N] tile of one head with
the shared linear_tile loop (fp32 accumulation), reading its W[h] columns once per row tile; the head axis is
outermost so each W[h] is streamed by its own programs. x, w, y take any strides (the weights are views of
kv_b_proj.weight).
"""
from __future__ import annotations

import triton
import triton.language as tl

from kernels.triton._common import cdiv, check_out, check_same_dtype, check_tensors, linear_tile, next_pow2

BLOCK_N, BLOCK_K = 64, 64


@triton.jit
def _head_gemm_kernel(
    x_ptr, stride_xm, stride_xh, stride_xk,  # [M, H, K]
    w_ptr, stride_wh, stride_wn, stride_wk,  # [H, N, K]
    y_ptr, stride_ym, stride_yh,  # [M, H, N], unit stride in N
    M, N,
    K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """y[rows, h, cols] = x[rows, h, :] @ w[h, cols, :]^T: read BLOCK_M K + BLOCK_N K, write BLOCK_M BLOCK_N."""
    h = tl.program_id(0).to(tl.int64)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    rows = tl.program_id(2) * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m, mask_n = rows < M, offs_n < N
    acc = linear_tile(x_ptr + h * stride_xh, rows, mask_m, stride_xm, stride_xk,
                      w_ptr + h * stride_wh, offs_n, mask_n, stride_wn, stride_wk,
                      K=K, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K, WIDEN_W=False)
    tl.store(y_ptr + rows[:, None] * stride_ym + h * stride_yh + offs_n[None, :],
             acc.to(y_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


def block_m_for(m: int) -> int:
    """16 rows for decode batches (tl.dot's minimum), up to 64 for prefill chunks."""
    return min(64, max(16, next_pow2(m)))


def triton_head_gemm(x, w, out=None, **_):
    """x [M, H, K], w [H, N, K] -> y [M, H, N] in x's dtype (or into `out`, unit stride in N)."""
    op = "triton_head_gemm"
    check_tensors(op, x, x=x, w=w, out=out)
    check_same_dtype(op, x, w=w)
    if x.dim() != 3 or w.dim() != 3 or w.shape[0] != x.shape[1] or w.shape[2] != x.shape[2]:
        raise ValueError(f"{op}: expected x [M, H, K] and w [H, N, K], got {tuple(x.shape)}, {tuple(w.shape)}")
    m, h, k = x.shape
    n = w.shape[1]
    if k < 16:
        raise ValueError(f"{op}: K {k} < 16 is not supported (tl.dot needs K >= 16)")
    out = check_out(op, out, (m, h, n), x.dtype, x.device)
    if m == 0:
        return out
    bm = block_m_for(m)
    _head_gemm_kernel[(h, cdiv(n, BLOCK_N), cdiv(m, bm))](
        x, *x.stride(), w, *w.stride(), out, out.stride(0), out.stride(1), m, n,
        K=k, BLOCK_M=bm, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K, num_warps=4, num_stages=3,
    )
    return out

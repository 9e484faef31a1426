"""q/k norm (Qwen3) in Triton: RMSNorm over head_dim of every query head (weight w_q) and key head (w_k),
one launch for both. q [B, Hq, D], k [B, Hkv, D] with any token/head strides (views of the fused qkv
output); returns new (q', k'). Grid: the q rows' programs, then the k rows'; each program normalises
ROWS head rows in registers: read and write B (Hq + Hkv) D once.
"""
from __future__ import annotations

import triton
import triton.language as tl

from kernels.triton._common import check_out, check_same_dtype, check_shape, check_tensors, cdiv, next_pow2
from kernels.triton.rmsnorm import norm_rows, num_warps, rows_per_program


@triton.jit
def _qk_norm_kernel(
    q_ptr, stride_qb, stride_qh, qo_ptr, stride_qob, stride_qoh, wq_ptr,
    k_ptr, stride_kb, stride_kh, ko_ptr, stride_kob, stride_koh, wk_ptr,
    HQ, HKV, RQ, RK, Q_PROGRAMS, D, eps,
    ROWS: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0)
    if pid < Q_PROGRAMS:
        norm_rows(q_ptr, stride_qb, stride_qh, qo_ptr, stride_qob, stride_qoh, wq_ptr, pid * ROWS, RQ, HQ, D,
                  eps, ROWS=ROWS, BLOCK_H=BLOCK_D)
    else:
        norm_rows(k_ptr, stride_kb, stride_kh, ko_ptr, stride_kob, stride_koh, wk_ptr,
                  (pid - Q_PROGRAMS) * ROWS, RK, HKV, D, eps, ROWS=ROWS, BLOCK_H=BLOCK_D)


def triton_qk_norm(q, k, w_q, w_k, eps, q_out=None, k_out=None, **_) -> tuple:
    """(rmsnorm(q) w_q, rmsnorm(k) w_k) per head, as kernels.qk_norm.torch_qk_norm."""
    op = "triton_qk_norm"
    check_tensors(op, q, q=q, k=k, w_q=w_q, w_k=w_k, q_out=q_out, k_out=k_out)
    check_same_dtype(op, q, k=k, w_q=w_q, w_k=w_k)
    if q.dim() != 3 or k.dim() != 3 or k.shape[0] != q.shape[0] or k.shape[2] != q.shape[2]:
        raise ValueError(f"{op}: expected q [B, Hq, D] and k [B, Hkv, D], got {tuple(q.shape)}, {tuple(k.shape)}")
    b, hq, d = q.shape
    hkv = k.shape[1]
    check_shape(op, "w_q", w_q, (d,))
    check_shape(op, "w_k", w_k, (d,))
    q = q if q.stride(-1) == 1 else q.contiguous()
    k = k if k.stride(-1) == 1 else k.contiguous()
    q_out = check_out(op, q_out, q.shape, q.dtype, q.device)
    k_out = check_out(op, k_out, k.shape, k.dtype, k.device)
    if b == 0:
        return q_out, k_out
    block_d = next_pow2(d)
    rows = rows_per_program(block_d)
    q_programs = cdiv(b * hq, rows)
    _qk_norm_kernel[(q_programs + cdiv(b * hkv, rows),)](
        q, q.stride(0), q.stride(1), q_out, q_out.stride(0), q_out.stride(1), w_q.contiguous(),
        k, k.stride(0), k.stride(1), k_out, k_out.stride(0), k_out.stride(1), w_k.contiguous(),
        hq, hkv, b * hq, b * hkv, q_programs, d, float(eps),
        ROWS=rows, BLOCK_D=block_d, num_warps=num_warps(block_d, rows),
    )
    return q_out, k_out

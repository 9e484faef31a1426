"""MLA decode attention in Triton over the latent cache (absorbed W_UK / W_UV), split-KV (flash-decoding).

q_lat [B, H, R], q_pe [B, H, P]; cache [B, S, R + P] (c_kv then k_pe per token); lengths [B] or None.
o_lat[b, h] = softmax_s((q_lat . c_kv_s + q_pe . k_pe_s) scale) c_kv_s   (see kernels/mla_attention.py).

Two kernels:
1. split: grid (cdiv(H, BLOCK_H), B, NUM_SPLITS). A program takes BLOCK_H heads of one sequence as a
   [BLOCK_H, R] + [BLOCK_H, P] query tile and a contiguous range of its tokens; per BLOCK_S tokens it loads
   the latent tile once ([BLOCK_S, R] c_kv, used as key and as value, and [BLOCK_S, P] k_pe) and runs an
   online softmax in fp32. The head-block axis is the fastest-varying one, so the H / BLOCK_H programs that
   read the same latent tile run together and share it in L2: DRAM sees each latent byte once.
2. merge (NUM_SPLITS > 1): grid (B H,); walks the splits' partial outputs with a running log-sum-exp.
BLOCK_H 16 (tl.dot's minimum M), BLOCK_S 32, 4 warps, 2 stages on a GPU (SGLang's Triton MLA decode uses
the same tile): the fp32 accumulator is 16 x 512 (64 registers a thread) and a stage of latent tiles
32 x 576 x 2 B = 36 KB of shared memory. Split counts depend only on shapes, never on `lengths` values.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.triton._common import (
    cdiv,
    check_out,
    check_same_dtype,
    check_tensors,
    interpreting,
    next_pow2,
    sm_count,
)

LOG2E = 1.4426950408889634
BLOCK_H = 16
GPU_BLOCK_S = 32
INTERPRETER_BLOCK_S = 16
MIN_TOKENS_PER_SPLIT = 256  # a split reads >= 256 latent rows (288 KB in bf16): its partial write stays small
WAVES = 2
MAX_SPLITS = 64


@triton.jit
def _mla_split_kernel(
    ql_ptr, stride_qlb, stride_qlh,  # [B, H, R]
    qp_ptr, stride_qpb, stride_qph,  # [B, H, P]
    c_ptr, stride_cb, stride_cs,  # [B, S, R + P]
    len_ptr,
    o_ptr, stride_ob, stride_oh, stride_os,  # [B, H, NUM_SPLITS, R] fp32 partials, or [B, H, R] output
    lse_ptr, stride_lb, stride_lh,  # [B, H, NUM_SPLITS] fp32 (WRITE_LSE only)
    S, H, NUM_SPLITS, scale_log2,
    R: tl.constexpr, P: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_P: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_S: tl.constexpr, HAS_LENGTHS: tl.constexpr, WRITE_LSE: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Heads h of this block, tokens s in [lo, hi): t = (q_lat . c_s + q_pe . pe_s) scale log2 e,
    m = max t, l = sum 2^(t - m), o = sum 2^(t - m) c_s / l, lse = m + log2 l (-inf, o = 0 if empty).
    Traffic per program: read (hi - lo) (R + P) of the latent and BLOCK_H (R + P) of q; write BLOCK_H R."""
    pid_h = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    pid_s = tl.program_id(2)
    if HAS_LENGTHS:
        length = tl.minimum(tl.load(len_ptr + b).to(tl.int32), S)
    else:
        length = S
    chunk = tl.cdiv(tl.cdiv(length, NUM_SPLITS), BLOCK_S) * BLOCK_S
    lo = pid_s * chunk
    hi = tl.minimum(lo + chunk, length)

    heads = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    h_ok = heads < H
    offs_r = tl.arange(0, BLOCK_R)
    offs_p = tl.arange(0, BLOCK_P)
    offs_s = tl.arange(0, BLOCK_S)
    r_ok = offs_r < R
    p_ok = offs_p < P
    q_lat = tl.load(ql_ptr + b * stride_qlb + heads[:, None] * stride_qlh + offs_r[None, :],
                    mask=h_ok[:, None] & r_ok[None, :], other=0.0)
    q_pe = tl.load(qp_ptr + b * stride_qpb + heads[:, None] * stride_qph + offs_p[None, :],
                   mask=h_ok[:, None] & p_ok[None, :], other=0.0)

    m_i = tl.full((BLOCK_H,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_H,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_H, BLOCK_R), dtype=tl.float32)
    seq = c_ptr + b * stride_cb
    for s0 in range(lo, hi, BLOCK_S):  # every block starts before hi: it holds a valid token
        pos = s0 + offs_s
        s_ok = pos < hi
        rows = seq + pos[:, None] * stride_cs
        c = tl.load(rows + offs_r[None, :], mask=s_ok[:, None] & r_ok[None, :], other=0.0)  # [BLOCK_S, BLOCK_R]
        pe = tl.load(rows + R + offs_p[None, :], mask=s_ok[:, None] & p_ok[None, :], other=0.0)
        t = tl.dot(q_lat, tl.trans(c), input_precision=PRECISION)
        t = tl.dot(q_pe, tl.trans(pe), t, input_precision=PRECISION) * scale_log2  # [BLOCK_H, BLOCK_S]
        t = tl.where(s_ok[None, :], t, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(t, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(t - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(c.dtype), c, input_precision=PRECISION)
        m_i = m_new

    nonempty = l_i > 0.0
    out = acc / tl.where(nonempty, l_i, 1.0)[:, None]
    tl.store(o_ptr + b * stride_ob + heads[:, None] * stride_oh + pid_s * stride_os + offs_r[None, :],
             out.to(o_ptr.dtype.element_ty), mask=h_ok[:, None] & r_ok[None, :])
    if WRITE_LSE:
        lse = tl.where(nonempty, m_i + tl.log2(tl.where(nonempty, l_i, 1.0)), float("-inf"))
        tl.store(lse_ptr + b * stride_lb + heads * stride_lh + pid_s, lse, mask=h_ok)


@triton.jit
def _mla_merge_kernel(
    o_ptr, stride_ob, stride_oh, stride_os,  # [B, H, NUM_SPLITS, R] fp32
    lse_ptr, stride_lb, stride_lh,  # [B, H, NUM_SPLITS] fp32
    out_ptr, stride_outb, stride_outh,  # [B, H, R]
    H, NUM_SPLITS,
    R: tl.constexpr, BLOCK_R: tl.constexpr,
):
    """out = sum_s 2^(lse_s - m) o_s / sum_s 2^(lse_s - m), one split at a time (an R-wide running
    accumulator: a [splits, 512] tile would not fit registers). Read NUM_SPLITS (R + 1) fp32; write R."""
    pid = tl.program_id(0)
    b = (pid // H).to(tl.int64)
    h = pid % H
    offs = tl.arange(0, BLOCK_R)
    m = float("-inf")
    den = 0.0
    acc = tl.zeros((BLOCK_R,), dtype=tl.float32)
    for s in range(0, NUM_SPLITS):
        lse = tl.load(lse_ptr + b * stride_lb + h * stride_lh + s)
        if lse > float("-inf"):  # empty splits (short sequences) add nothing
            o = tl.load(o_ptr + b * stride_ob + h * stride_oh + s * stride_os + offs, mask=offs < R, other=0.0)
            m_new = tl.maximum(m, lse)
            alpha = tl.exp2(m - m_new)
            w = tl.exp2(lse - m_new)
            acc = acc * alpha + w * o
            den = den * alpha + w
            m = m_new
    out = acc / tl.where(den > 0.0, den, 1.0)
    tl.store(out_ptr + b * stride_outb + h * stride_outh + offs, out.to(out_ptr.dtype.element_ty), mask=offs < R)


def choose_num_splits(batch: int, heads: int, context: int, sms: int) -> int:
    """Splits per (sequence, head block): WAVES programs per SM, each reading >= MIN_TOKENS_PER_SPLIT tokens
    (DeepSeek-V3, 128 heads, batch 1, 32K context on 132 SMs: 8 head blocks, 33 splits, 264 programs)."""
    want = cdiv(WAVES * sms, batch * cdiv(heads, BLOCK_H))
    return max(1, min(want, cdiv(context, MIN_TOKENS_PER_SPLIT), MAX_SPLITS))


def triton_mla_decode(q_lat, q_pe, cache, scale, lengths=None, out=None, num_splits=None, **_) -> torch.Tensor:
    """MLA decode over the latent cache; returns o_lat [B, H, R] in q's dtype (or into `out`)."""
    op = "triton_mla_decode"
    check_tensors(op, q_lat, q_lat=q_lat, q_pe=q_pe, cache=cache, lengths=lengths, out=out)
    check_same_dtype(op, q_lat, q_pe=q_pe, cache=cache)
    if q_lat.dim() != 3 or q_pe.dim() != 3 or cache.dim() != 3 or q_pe.shape[:2] != q_lat.shape[:2]:
        raise ValueError(f"{op}: expected q_lat [B, H, R], q_pe [B, H, P], cache [B, S, R + P], got "
                         f"{tuple(q_lat.shape)}, {tuple(q_pe.shape)}, {tuple(cache.shape)}")
    b, h, r = q_lat.shape
    p = q_pe.shape[2]
    if cache.shape[0] != b or cache.shape[2] != r + p:
        raise ValueError(f"{op}: cache {tuple(cache.shape)} does not hold [B={b}, S, R + P = {r + p}]")
    if min(r, p) < 16:
        raise ValueError(f"{op}: R {r} and P {p} must be >= 16 (tl.dot needs K >= 16)")
    if lengths is not None and (lengths.dtype not in (torch.int32, torch.int64) or tuple(lengths.shape) != (b,)):
        raise ValueError(f"{op}: lengths must be int32/int64 of shape ({b},)")
    if q_lat.stride(-1) != 1 or q_pe.stride(-1) != 1 or cache.stride(-1) != 1:
        q_lat, q_pe, cache = q_lat.contiguous(), q_pe.contiguous(), cache.contiguous()
    out = check_out(op, out, (b, h, r), q_lat.dtype, q_lat.device)
    if b == 0 or h == 0:
        return out
    s = cache.shape[1]
    if num_splits is None:
        num_splits = choose_num_splits(b, h, s, sm_count(q_lat.device))
    if not 1 <= num_splits <= MAX_SPLITS:
        raise ValueError(f"{op}: num_splits={num_splits} outside 1..{MAX_SPLITS}")
    if num_splits == 1:
        o, o_strides, lse, lse_strides = out, (out.stride(0), out.stride(1), 0), out, (0, 0)
    else:
        o = torch.empty((b, h, num_splits, r), dtype=torch.float32, device=q_lat.device)
        lse = torch.empty((b, h, num_splits), dtype=torch.float32, device=q_lat.device)
        o_strides, lse_strides = (o.stride(0), o.stride(1), o.stride(2)), (lse.stride(0), lse.stride(1))
    block_s = INTERPRETER_BLOCK_S if interpreting() else GPU_BLOCK_S
    _mla_split_kernel[(cdiv(h, BLOCK_H), b, num_splits)](
        q_lat, q_lat.stride(0), q_lat.stride(1), q_pe, q_pe.stride(0), q_pe.stride(1),
        cache, cache.stride(0), cache.stride(1), lengths if lengths is not None else q_lat,
        o, *o_strides, lse, *lse_strides,
        s, h, num_splits, float(scale) * LOG2E,
        R=r, P=p, BLOCK_R=next_pow2(r), BLOCK_P=next_pow2(p), BLOCK_H=BLOCK_H, BLOCK_S=block_s,
        HAS_LENGTHS=lengths is not None, WRITE_LSE=num_splits > 1,
        PRECISION="ieee" if q_lat.dtype == torch.float32 else "tf32",
        num_warps=4, num_stages=1 if interpreting() else 2,
    )
    if num_splits > 1:
        _mla_merge_kernel[(b * h,)](o, *o_strides, lse, *lse_strides, out, out.stride(0), out.stride(1), h,
                                    num_splits, R=r, BLOCK_R=next_pow2(r), num_warps=4)
    return out

"""Decode attention in Triton: one query token per sequence over its KV cache, GQA, split-KV.

q [B, Hq, D]; contiguous cache k_cache, v_cache [B, Hkv, S, D]; or a paged cache
k_pages, v_pages [num_pages, Hkv, page_size, D] with block_table [B, max_pages] (int32/int64): token s
of sequence b lives in page block_table[b, s // page_size] at slot s % page_size (the vLLM/FlashInfer
scheme, with the head axis before the slot axis so one head's slots in a page are contiguous rows).
lengths [B]: valid tokens per sequence (<= capacity; >= 1); None means the whole contiguous cache.

out[b, h] = softmax(q[b, h] . K[b, h // G]^T / sqrt(D)) V[b, h // G], G = Hq / Hkv.
window W > 0 (sliding window): a sequence reads only its last min(length, W) tokens, so the work and the
traffic are bounded by W whatever the cache holds. sinks [Hq] (gpt-oss): a per-head logit added to the
softmax denominator, out = sum_s e^(t_s) v_s / (sum_s e^(t_s) + e^(sink_h)), applied once where the output
is normalised (the merge, or the single split).

Two kernels (flash-decoding):
1. split: grid (B * Hkv, NUM_SPLITS). A program takes the G query heads of one KV head as a [G_PAD, D]
   tile (so each KV byte is read once, by one program) and a contiguous range of that sequence's tokens,
   runs an online softmax in fp32, and writes its normalised partial output and log-sum-exp.
2. merge: grid (B * Hq). out = sum_s exp(lse_s - max) o_s / sum_s exp(lse_s - max).
With one split the first kernel writes the final output directly and the merge is skipped.
Split counts depend only on shapes, never on `lengths` values, so a call never syncs with the device
and is capturable in a CUDA graph (tokens past a sequence's length are simply not loaded).
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from kernels.triton._common import (
    capability,
    cdiv,
    check_out,
    check_same_dtype,
    check_shape,
    check_tensors,
    interpreting,
    next_pow2,
    sm_count,
    unit_last_stride,
)

LOG2E = 1.4426950408889634  # softmax runs in base 2: exp(x) = exp2(x log2 e), exp2 is one instruction
MIN_TOKENS_PER_SPLIT = 256  # a split reads >= 256 tokens (128 KB of K+V at D=128, bf16) so its partial
#                             write and merge read (G (D + 1) 8 bytes, L2-resident) stay a few percent
WAVES = 2  # programs per SM the split count aims for
MAX_SPLITS = 64  # bounds the merge kernel's tile
GPU_BLOCK_S = 64  # tokens per loop step: [64, 128] bf16 K and V tiles, 16 KB each
INTERPRETER_BLOCK_S = 16  # small, so short test contexts still cross several blocks and a ragged tail


@triton.jit
def _attn_split_kernel(
    q_ptr, stride_qb, stride_qh,  # [B, Hq, D]
    k_ptr, stride_kb, stride_kh, stride_ks,  # [B, Hkv, S, D], or pages [P, Hkv, PAGE_SIZE, D] when PAGED
    v_ptr, stride_vb, stride_vh, stride_vs,
    bt_ptr, stride_btb,  # [B, max_pages] page ids (PAGED only)
    len_ptr,  # [B] valid lengths (HAS_LENGTHS only)
    sink_ptr,  # [Hq] sink logits (HAS_SINKS and not WRITE_LSE only: with splits the merge adds them)
    o_ptr, stride_ob, stride_oh, stride_os,  # [B, Hq, NUM_SPLITS, D] fp32 partials, or [B, Hq, D] output
    lse_ptr, stride_lb, stride_lh,  # [B, Hq, NUM_SPLITS] fp32 log2-sum-exp2 (WRITE_LSE only)
    S, HKV, NUM_SPLITS, WINDOW, sm_scale_log2,
    G: tl.constexpr, D: tl.constexpr, G_PAD: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_S: tl.constexpr,
    PAGE_SIZE: tl.constexpr, PAGED: tl.constexpr, HAS_LENGTHS: tl.constexpr, WRITE_LSE: tl.constexpr,
    HAS_WINDOW: tl.constexpr, HAS_SINKS: tl.constexpr, PRECISION: tl.constexpr,
):
    """For query heads g of KV head h, tokens s in this split's range [lo, hi) of the attended tokens
    [start, length) (start = max(0, length - WINDOW) with a window, else 0):
    t_gs = q_g . k_s * log2(e) / sqrt(D);  m_g = max_s t_gs;  l_g = sum_s 2^(t_gs - m_g)
    o_g = sum_s 2^(t_gs - m_g) v_s / l_g;  lse_g = m_g + log2(l_g)   (-inf, o = 0 for an empty range).
    With sinks and one split: l_g gains 2^(sink_g log2 e - m_g) (m_g first raised to the sink if larger).

    Traffic per program: read (hi - lo) D of K and of V, G D of q (and (hi - lo) / PAGE_SIZE page
    ids); write G D (+ G) fp32. Over the grid every valid K/V element is read exactly once.
    """
    pid_bh = tl.program_id(0)
    pid_s = tl.program_id(1)
    b = (pid_bh // HKV).to(tl.int64)  # int64: b * stride_kb passes 2^31 for large batched caches
    h = pid_bh % HKV
    if HAS_LENGTHS:
        length = tl.minimum(tl.load(len_ptr + b).to(tl.int32), S)
    else:
        length = S
    if HAS_WINDOW:
        start = tl.maximum(length - WINDOW, 0)
    else:
        start = 0
    chunk = tl.cdiv(tl.cdiv(length - start, NUM_SPLITS), BLOCK_S) * BLOCK_S
    lo = start + pid_s * chunk
    hi = tl.minimum(lo + chunk, length)

    offs_g = tl.arange(0, G_PAD)
    offs_d = tl.arange(0, BLOCK_D)
    offs_s = tl.arange(0, BLOCK_S)
    heads = h * G + offs_g  # the query heads sharing KV head h; rows >= G are padding for tl.dot
    g_ok = offs_g < G
    d_ok = offs_d < D
    q = tl.load(q_ptr + b * stride_qb + heads[:, None] * stride_qh + offs_d[None, :],
                mask=g_ok[:, None] & d_ok[None, :], other=0.0)  # [G_PAD, BLOCK_D]

    m_i = tl.full((G_PAD,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((G_PAD,), dtype=tl.float32)
    acc = tl.zeros((G_PAD, BLOCK_D), dtype=tl.float32)
    k_head = k_ptr + h * stride_kh
    v_head = v_ptr + h * stride_vh
    # every block below starts before hi, so it holds a valid token and m_i is finite after it
    for s0 in range(lo, hi, BLOCK_S):
        pos = s0 + offs_s
        s_ok = pos < hi
        if PAGED:
            page = tl.load(bt_ptr + b * stride_btb + pos // PAGE_SIZE, mask=s_ok, other=0).to(tl.int64)
            k_rows = page * stride_kb + (pos % PAGE_SIZE) * stride_ks
            v_rows = page * stride_vb + (pos % PAGE_SIZE) * stride_vs
        else:
            k_rows = b * stride_kb + pos * stride_ks
            v_rows = b * stride_vb + pos * stride_vs
        kv_mask = s_ok[:, None] & d_ok[None, :]
        k = tl.load(k_head + k_rows[:, None] + offs_d[None, :], mask=kv_mask, other=0.0)  # [BLOCK_S, BLOCK_D]
        t = tl.dot(q, tl.trans(k), input_precision=PRECISION) * sm_scale_log2  # [G_PAD, BLOCK_S] fp32
        t = tl.where(s_ok[None, :], t, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(t, axis=1))
        alpha = tl.exp2(m_i - m_new)  # rescales what was summed under the old maximum
        p = tl.exp2(t - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = tl.load(v_head + v_rows[:, None] + offs_d[None, :], mask=kv_mask, other=0.0)
        # p in the cache dtype for the tensor-core product (as flash attention does), sums stay fp32
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new

    if HAS_SINKS:  # one split only: the sink joins the denominator here
        sink = tl.load(sink_ptr + heads, mask=g_ok, other=0.0).to(tl.float32) * 1.4426950408889634
        m_fin = tl.maximum(m_i, sink)
        l_i = l_i * tl.exp2(m_i - m_fin) + tl.exp2(sink - m_fin)
        acc = acc * tl.exp2(m_i - m_fin)[:, None]
    nonempty = l_i > 0.0
    out = acc / tl.where(nonempty, l_i, 1.0)[:, None]
    o_ptrs = o_ptr + b * stride_ob + heads[:, None] * stride_oh + pid_s * stride_os + offs_d[None, :]
    tl.store(o_ptrs, out.to(o_ptr.dtype.element_ty), mask=g_ok[:, None] & d_ok[None, :])
    if WRITE_LSE:
        lse = tl.where(nonempty, m_i + tl.log2(tl.where(nonempty, l_i, 1.0)), float("-inf"))
        tl.store(lse_ptr + b * stride_lb + heads * stride_lh + pid_s, lse, mask=g_ok)


@triton.jit
def _attn_merge_kernel(
    o_ptr, stride_ob, stride_oh, stride_os,  # [B, Hq, NUM_SPLITS, D] fp32
    lse_ptr, stride_lb, stride_lh,  # [B, Hq, NUM_SPLITS] fp32
    sink_ptr,  # [Hq] sink logits (HAS_SINKS only)
    out_ptr, stride_outb, stride_outh,  # [B, Hq, D]
    HQ, NUM_SPLITS,
    D: tl.constexpr, BLOCK_SPLITS: tl.constexpr, BLOCK_D: tl.constexpr, HAS_SINKS: tl.constexpr,
):
    """out = sum_s w_s o_s / sum_s w_s with w_s = 2^(lse_s - max_s lse_s); empty splits weigh 0.
    With sinks the denominator gains 2^(sink_h log2 e - max), the max taken over the sink too.

    Traffic per program: read NUM_SPLITS (D + 1) fp32; write D.
    """
    pid = tl.program_id(0)
    b = (pid // HQ).to(tl.int64)
    hq = pid % HQ
    offs_s = tl.arange(0, BLOCK_SPLITS)
    offs_d = tl.arange(0, BLOCK_D)
    s_ok = offs_s < NUM_SPLITS
    lse = tl.load(lse_ptr + b * stride_lb + hq * stride_lh + offs_s, mask=s_ok, other=float("-inf"))
    m = tl.max(lse, axis=0)
    if HAS_SINKS:
        sink = tl.load(sink_ptr + hq).to(tl.float32) * 1.4426950408889634
        m = tl.maximum(m, sink)
    m = tl.where(m == float("-inf"), 0.0, m)  # every split empty (length 0): weights 0, output 0
    w = tl.exp2(lse - m)
    den = tl.sum(w, axis=0)
    if HAS_SINKS:
        den += tl.exp2(sink - m)
    o = tl.load(o_ptr + b * stride_ob + hq * stride_oh + offs_s[:, None] * stride_os + offs_d[None, :],
                mask=s_ok[:, None] & (offs_d[None, :] < D), other=0.0)
    out = tl.sum(w[:, None] * o, axis=0) / tl.where(den > 0.0, den, 1.0)
    tl.store(out_ptr + b * stride_outb + hq * stride_outh + offs_d, out.to(out_ptr.dtype.element_ty),
             mask=offs_d < D)


def choose_num_splits(batch: int, kv_heads: int, context: int, sms: int) -> int:
    """KV splits per (sequence, KV head): enough programs for WAVES per SM, each >= MIN_TOKENS_PER_SPLIT.

    B * Hkv programs already fill the device at large batch (B 32, Hkv 8 on 132 SMs: 1 split); a single
    long sequence needs splitting (B 1, Hkv 8, S 32768: 33 -> 33 splits, 264 programs of ~1000 tokens).
    """
    want = cdiv(WAVES * sms, batch * kv_heads)
    return max(1, min(want, cdiv(context, MIN_TOKENS_PER_SPLIT), MAX_SPLITS))


def _check_q(op: str, q, kv_heads: int, head_dim: int) -> tuple:
    if q.dim() != 3:
        raise ValueError(f"{op}: q must be [B, Hq, D], got {tuple(q.shape)}")
    b, hq, d = q.shape
    if d != head_dim:
        raise ValueError(f"{op}: q head dim {d} != cache head dim {head_dim}")
    if hq % kv_heads:
        raise ValueError(f"{op}: query heads {hq} not a multiple of KV heads {kv_heads}")
    if d < 16:
        raise ValueError(f"{op}: head dim {d} < 16 is not supported (tl.dot needs K >= 16)")
    return b, hq, d


def _check_lengths(op: str, lengths, batch: int, device):
    if lengths is None:
        return None
    if lengths.dtype not in (torch.int32, torch.int64) or tuple(lengths.shape) != (batch,):
        raise ValueError(f"{op}: lengths must be int32/int64 of shape ({batch},), got "
                         f"{lengths.dtype} {tuple(lengths.shape)}")
    if lengths.device != device:
        raise ValueError(f"{op}: lengths is on {lengths.device}, expected {device}")
    return lengths


def _check_window_sinks(op: str, window, sinks, heads: int, device):
    if isinstance(window, bool) or not isinstance(window, int) or window < 0:
        raise ValueError(f"{op}: window must be an int >= 0 (0: full attention), got {window!r}")
    if sinks is not None:
        if not isinstance(sinks, torch.Tensor) or tuple(sinks.shape) != (heads,) or not sinks.is_floating_point():
            raise ValueError(f"{op}: sinks must be a float tensor of shape ({heads},)")
        if sinks.device != device:
            raise ValueError(f"{op}: sinks is on {sinks.device}, expected {device}")
        sinks = sinks.contiguous()
    return sinks


def _launch(op, q, k, v, block_table, lengths, page_size, capacity, out, num_splits, window=0, sinks=None):
    """Shared launcher: contiguous when block_table is None, else paged."""
    b, hq, d = q.shape
    hkv = k.shape[1]
    g = hq // hkv
    q, k, v = unit_last_stride(q), unit_last_stride(k), unit_last_stride(v)
    if block_table is not None:
        block_table = unit_last_stride(block_table)
    out = check_out(op, out, (b, hq, d), q.dtype, q.device)
    if b == 0:
        return out
    if num_splits is None:
        attended = min(capacity, window) if window else capacity
        num_splits = choose_num_splits(b, hkv, attended, sm_count(q.device))
    if not 1 <= num_splits <= MAX_SPLITS:
        raise ValueError(f"{op}: num_splits={num_splits} outside 1..{MAX_SPLITS}")
    block_s = INTERPRETER_BLOCK_S if interpreting() else GPU_BLOCK_S
    # software pipelining depth: 3 stages of K and V tiles on Hopper/Blackwell's 228 KB, 2 elsewhere
    stages = 1 if interpreting() else (3 if capability(q.device)[0] >= 9 else 2)
    if num_splits == 1:
        o, o_strides, lse, lse_strides = out, (out.stride(0), out.stride(1), 0), out, (0, 0)
    else:
        o = torch.empty((b, hq, num_splits, d), dtype=torch.float32, device=q.device)
        lse = torch.empty((b, hq, num_splits), dtype=torch.float32, device=q.device)
        o_strides, lse_strides = (o.stride(0), o.stride(1), o.stride(2)), (lse.stride(0), lse.stride(1))
    paged = block_table is not None
    bt = block_table if paged else q  # placeholder pointers are never read (PAGED / HAS_LENGTHS False)
    _attn_split_kernel[(b * hkv, num_splits)](
        q, q.stride(0), q.stride(1),
        k, k.stride(0), k.stride(1), k.stride(2),
        v, v.stride(0), v.stride(1), v.stride(2),
        bt, bt.stride(0) if paged else 0,
        lengths if lengths is not None else q,
        sinks if sinks is not None else q,
        o, *o_strides,
        lse, *lse_strides,
        capacity, hkv, num_splits, window, LOG2E / math.sqrt(d),
        G=g, D=d, G_PAD=max(16, next_pow2(g)), BLOCK_D=next_pow2(d), BLOCK_S=block_s,
        PAGE_SIZE=page_size if paged else 1, PAGED=paged, HAS_LENGTHS=lengths is not None,
        WRITE_LSE=num_splits > 1, HAS_WINDOW=window > 0, HAS_SINKS=sinks is not None and num_splits == 1,
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
        num_warps=4, num_stages=stages,
    )
    if num_splits > 1:
        _attn_merge_kernel[(b * hq,)](
            o, *o_strides, lse, *lse_strides, sinks if sinks is not None else o,
            out, out.stride(0), out.stride(1), hq, num_splits,
            D=d, BLOCK_SPLITS=next_pow2(num_splits), BLOCK_D=next_pow2(d), HAS_SINKS=sinks is not None,
            num_warps=4,
        )
    return out


def triton_decode_attention(q, k_cache, v_cache, lengths=None, out=None, num_splits=None, window=0,
                            sinks=None, **_) -> torch.Tensor:
    """Decode attention over a contiguous cache [B, Hkv, S, D]; returns [B, Hq, D] in q's dtype.

    `num_splits` overrides the split heuristic; `out` is an optional output buffer; `window` > 0 reads
    only each sequence's last `window` tokens; `sinks` [Hq] adds a per-head logit to the denominator.
    """
    op = "triton_decode_attention"
    check_tensors(op, q, q=q, k_cache=k_cache, v_cache=v_cache, out=out)
    check_same_dtype(op, q, k_cache=k_cache, v_cache=v_cache)
    if k_cache.dim() != 4:
        raise ValueError(f"{op}: k_cache must be [B, Hkv, S, D], got {tuple(k_cache.shape)}")
    check_shape(op, "v_cache", v_cache, k_cache.shape)
    b, _, _ = _check_q(op, q, k_cache.shape[1], k_cache.shape[3])
    if k_cache.shape[0] != b:
        raise ValueError(f"{op}: cache batch {k_cache.shape[0]} != q batch {b}")
    lengths = _check_lengths(op, lengths, b, q.device)
    sinks = _check_window_sinks(op, window, sinks, q.shape[1], q.device)
    return _launch(op, q, k_cache, v_cache, None, lengths, 1, k_cache.shape[2], out, num_splits, window, sinks)


def triton_paged_decode_attention(q, k_pages, v_pages, block_table, lengths, page_size=None, out=None,
                                  num_splits=None, window=0, sinks=None, **_) -> torch.Tensor:
    """Decode attention over a paged cache: k_pages, v_pages [num_pages, Hkv, page_size, D],
    block_table [B, max_pages] page ids, lengths [B] valid tokens (<= max_pages * page_size)."""
    op = "triton_paged_decode_attention"
    check_tensors(op, q, q=q, k_pages=k_pages, v_pages=v_pages, block_table=block_table, out=out)
    check_same_dtype(op, q, k_pages=k_pages, v_pages=v_pages)
    if k_pages.dim() != 4:
        raise ValueError(f"{op}: k_pages must be [num_pages, Hkv, page_size, D], got {tuple(k_pages.shape)}")
    check_shape(op, "v_pages", v_pages, k_pages.shape)
    if page_size is None:
        page_size = k_pages.shape[2]
    elif page_size != k_pages.shape[2]:
        raise ValueError(f"{op}: page_size {page_size} != k_pages.shape[2] {k_pages.shape[2]}")
    b, _, _ = _check_q(op, q, k_pages.shape[1], k_pages.shape[3])
    bad_dtype = block_table.dtype not in (torch.int32, torch.int64)
    if block_table.dim() != 2 or block_table.shape[0] != b or bad_dtype:
        raise ValueError(f"{op}: block_table must be int32/int64 [B={b}, max_pages], got "
                         f"{block_table.dtype} {tuple(block_table.shape)}")
    if lengths is None:
        raise ValueError(f"{op}: lengths is required for a paged cache")
    lengths = _check_lengths(op, lengths, b, q.device)
    capacity = block_table.shape[1] * page_size
    sinks = _check_window_sinks(op, window, sinks, q.shape[1], q.device)
    return _launch(op, q, k_pages, v_pages, block_table, lengths, page_size, capacity, out, num_splits,
                   window, sinks)

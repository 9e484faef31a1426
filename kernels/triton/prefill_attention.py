"""Causal prefill attention in Triton (flash-attention forward): a chunk of T queries per sequence over
its KV cache, which already holds the prefix and the chunk's own keys, grouped-query (GQA).

q [B, Hq, T, D]; k, v [B, Hkv, S, D] with S = prefix + T; query head h reads KV head h // (Hq / Hkv)
in place (never repeated in memory). Chunk query i (0-based) attends keys 0 .. prefix + i:

    out[b, h, i] = sum_{j <= prefix + i} softmax_j(q_i . k_j * scale) v_j,   scale = 1 / sqrt(D) by default

Sliding window W > 0: query i attends keys prefix + i - W < j <= prefix + i only (the tiles wholly below
every query's window are never loaded, the tiles straddling its lower edge pay for the mask like the
diagonal ones). Sinks [Hq] float32: a per-head logit added to the softmax denominator (gpt-oss).

Grid (B * Hq, cdiv(T, BLOCK_M)): a program owns BLOCK_M consecutive queries of one query head and
streams K/V tiles of BLOCK_N keys through an online softmax in fp32 (running max and sum, accumulator
rescaled when the max moves), in base 2 with log2(e) folded into the scale. Three key ranges per tile:
- [0, prefix + tile_start) rounded down to BLOCK_N: every query of the tile sees all of it, so these
  tiles run without a mask;
- from there to prefix + tile_start + BLOCK_M (clipped to S): the tiles that straddle the diagonal,
  the only ones that pay for the causal mask;
- the rest is above the diagonal for every query of the tile and is never loaded.
Axis 0 walks heads, so the Hq / Hkv programs that share a KV head run side by side and share its tiles
in L2; axis 1 is reversed so the longest (last) query tiles start first and the short ones fill the tail.

Autotune configs come from one function per architecture, chosen on first call for each (T, S, D,
dtype) from the device's compute capability, never at import; under TRITON_INTERPRET=1 one small fixed
config is used. The first call for a shape benchmarks every config, so it belongs in warm-up, outside a
CUDA graph capture; after that a call only launches.
"""
from __future__ import annotations

import functools
import math

import torch
import triton
import triton.language as tl

from kernels.triton._common import (
    autotune_options,
    capability,
    cdiv,
    check_out,
    check_same_dtype,
    check_tensors,
    interpreting,
    next_pow2,
    note_config,
    unit_last_stride,
)

LOG2E = 1.4426950408889634  # softmax in base 2: exp(x) = exp2(x log2 e), and exp2 is one instruction
MAX_HEAD_DIM = 128  # the configs' shared-memory budgets assume BLOCK_D <= 128
# Small tiles so test chunks of 17 or 45 queries cross several query tiles, a ragged tail and the
# unmasked / diagonal boundary; tests override it to cover BLOCK_M != BLOCK_N.
INTERPRETER_CONFIG = {"BLOCK_M": 16, "BLOCK_N": 16}


@triton.jit
def _attend_tile(
    acc, l_i, m_i, q,  # running state [BLOCK_M, BLOCK_D], [BLOCK_M], [BLOCK_M] fp32; q [BLOCK_M, BLOCK_D]
    k_head, stride_ks,  # this KV head's K rows
    v_head, stride_vs,
    n0, limit, S, WINDOW, qk_scale_log2,  # first key of the tile; limit [BLOCK_M]: last key each query sees
    offs_n, offs_d,
    D: tl.constexpr, BLOCK_D: tl.constexpr, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """One K/V tile of the online softmax, keys j in [n0, n0 + BLOCK_N):
    t_ij = q_i . k_j * scale * log2(e)  (-inf where CAUSAL and j > limit_i);  m' = max(m, max_j t_ij)
    l' = l 2^(m - m') + sum_j 2^(t_ij - m');  acc' = acc 2^(m - m') + sum_j 2^(t_ij - m') v_j.
    Read BLOCK_N D of K and of V. With CAUSAL the loads are bounded by S (the diagonal tiles may run
    past the cache); unmasked tiles lie wholly below prefix + tile_start < S and load unguarded rows.
    HAS_WINDOW (CAUSAL tiles also test j > limit_i - WINDOW): a row may have seen no key yet, so the
    running maximum may still be -inf; the exponentials then take 0 as their reference (p = 0, alpha = 0).
    """
    keys = n0 + offs_n
    k_ptrs = k_head + keys[:, None] * stride_ks + offs_d[None, :]
    v_ptrs = v_head + keys[:, None] * stride_vs + offs_d[None, :]
    if CAUSAL:
        kv_mask = (keys < S)[:, None] & (offs_d < D)[None, :]
        k = tl.load(k_ptrs, mask=kv_mask, other=0.0)
        v = tl.load(v_ptrs, mask=kv_mask, other=0.0)
    elif D == BLOCK_D:
        k = tl.load(k_ptrs)
        v = tl.load(v_ptrs)
    else:  # D 80 padded to 128: the zero columns add nothing to q . k, and are not stored
        k = tl.load(k_ptrs, mask=(offs_d < D)[None, :], other=0.0)
        v = tl.load(v_ptrs, mask=(offs_d < D)[None, :], other=0.0)
    t = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale_log2  # [BLOCK_M, BLOCK_N] fp32
    if CAUSAL:
        seen = keys[None, :] <= limit[:, None]
        if HAS_WINDOW:
            seen = seen & (keys[None, :] > limit[:, None] - WINDOW)
        t = tl.where(seen, t, float("-inf"))
    # without a window, finite: the first tile a program visits starts at key 0, which every query sees
    m_new = tl.maximum(m_i, tl.max(t, axis=1))
    if HAS_WINDOW:
        m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)
    else:
        m_ref = m_new
    alpha = tl.exp2(m_i - m_ref)  # rescales what was summed under the old maximum (0 on the first tile)
    p = tl.exp2(t - m_ref[:, None])
    l_i = l_i * alpha + tl.sum(p, axis=1)
    # p rounded to the cache dtype for the tensor-core product, as flash attention does; sums stay fp32
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    return acc, l_i, m_new


@triton.jit
def _prefill_attn_kernel(
    q_ptr, stride_qb, stride_qh, stride_qt,  # [B, Hq, T, D]
    k_ptr, stride_kb, stride_kh, stride_ks,  # [B, Hkv, S, D]
    v_ptr, stride_vb, stride_vh, stride_vs,
    o_ptr, stride_ob, stride_oh, stride_ot,  # [B, Hq, T, D], q's dtype
    sink_ptr,  # [Hq] sink logits (HAS_SINKS only)
    T, S, PREFIX, HQ, WINDOW, qk_scale_log2,
    G: tl.constexpr, D: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
    HAS_WINDOW: tl.constexpr, HAS_SINKS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """out[i] = sum_{j <= PREFIX + i} 2^(t_ij - m_i) v_j / l_i over this program's BLOCK_M queries i,
    t_ij = q_i . k_j * scale * log2(e), m_i = max_j t_ij, l_i = sum_j 2^(t_ij - m_i).

    Traffic per program: read BLOCK_M D of q and min(PREFIX + tile_start + BLOCK_M, S) D of K and of V;
    write BLOCK_M D. Work: 4 D BLOCK_M keys-visited FLOPs, of which the diagonal tiles' masked half is
    wasted (at most ~BLOCK_M BLOCK_N + BLOCK_M^2 / 2 pairs of a tile's total).
    """
    pid_bh = tl.program_id(0)
    pid_m = tl.num_programs(1) - 1 - tl.program_id(1)
    b = (pid_bh // HQ).to(tl.int64)  # int64: b * stride_kb passes 2^31 for long batched caches
    h = pid_bh % HQ
    kv_h = (h // G).to(tl.int64)
    start_m = pid_m * BLOCK_M

    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    m_ok = offs_m < T
    d_ok = offs_d < D
    q_head = q_ptr + b * stride_qb + h.to(tl.int64) * stride_qh
    q = tl.load(q_head + offs_m[:, None] * stride_qt + offs_d[None, :],
                mask=m_ok[:, None] & d_ok[None, :], other=0.0)  # [BLOCK_M, BLOCK_D]
    k_head = k_ptr + b * stride_kb + kv_h * stride_kh
    v_head = v_ptr + b * stride_vb + kv_h * stride_vh
    # rows past T get limits past S: their keys are load-masked, they stay finite and are never stored
    limit = PREFIX + offs_m

    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    full_hi = ((PREFIX + start_m) // BLOCK_N) * BLOCK_N  # keys below: seen by every query of the tile
    hi = tl.minimum(PREFIX + start_m + BLOCK_M, S)  # keys from here on: above the diagonal for all
    if HAS_WINDOW:
        # keys below lo are outside every query's window; from lo to band_hi some queries' windows start
        lo = (tl.maximum(PREFIX + start_m - WINDOW + 1, 0) // BLOCK_N) * BLOCK_N
        band_hi = tl.cdiv(tl.maximum(PREFIX + start_m + BLOCK_M - WINDOW, 0), BLOCK_N) * BLOCK_N
        band_hi = tl.maximum(tl.minimum(band_hi, full_hi), lo)
        for n0 in range(lo, band_hi, BLOCK_N):
            n0 = tl.multiple_of(n0, BLOCK_N)
            acc, l_i, m_i = _attend_tile(acc, l_i, m_i, q, k_head, stride_ks, v_head, stride_vs,
                                         n0, limit, S, WINDOW, qk_scale_log2, offs_n, offs_d,
                                         D=D, BLOCK_D=BLOCK_D, CAUSAL=True, HAS_WINDOW=True,
                                         PRECISION=PRECISION)
    else:
        band_hi = 0
    for n0 in range(band_hi, full_hi, BLOCK_N):
        n0 = tl.multiple_of(n0, BLOCK_N)
        acc, l_i, m_i = _attend_tile(acc, l_i, m_i, q, k_head, stride_ks, v_head, stride_vs,
                                     n0, limit, S, WINDOW, qk_scale_log2, offs_n, offs_d,
                                     D=D, BLOCK_D=BLOCK_D, CAUSAL=False, HAS_WINDOW=False,
                                     PRECISION=PRECISION)
    for n0 in range(full_hi, hi, BLOCK_N):
        n0 = tl.multiple_of(n0, BLOCK_N)
        acc, l_i, m_i = _attend_tile(acc, l_i, m_i, q, k_head, stride_ks, v_head, stride_vs,
                                     n0, limit, S, WINDOW, qk_scale_log2, offs_n, offs_d,
                                     D=D, BLOCK_D=BLOCK_D, CAUSAL=True, HAS_WINDOW=HAS_WINDOW,
                                     PRECISION=PRECISION)

    if HAS_SINKS:  # the sink joins the denominator: raise the maximum to it if larger, rescale
        sink = tl.load(sink_ptr + h).to(tl.float32) * 1.4426950408889634
        m_fin = tl.maximum(m_i, sink)
        l_i = l_i * tl.exp2(m_i - m_fin) + tl.exp2(sink - m_fin)
        acc = acc * tl.exp2(m_i - m_fin)[:, None]
    # l_i >= 1 for every stored row (its maximum contributes 2^0); rows past T may hold 0
    out = acc / tl.where(l_i > 0.0, l_i, 1.0)[:, None]
    o_head = o_ptr + b * stride_ob + h.to(tl.int64) * stride_oh
    tl.store(o_head + offs_m[:, None] * stride_ot + offs_d[None, :], out.to(o_ptr.dtype.element_ty),
             mask=m_ok[:, None] & d_ok[None, :])


# ---------------------------------------------------------------------------------------------------
# Autotune configs, one function per architecture: (BLOCK_M, BLOCK_N, num_warps, num_stages), sized for
# 16-bit operands at BLOCK_D = 128. Shared memory: the q tile BLOCK_M 128 2 bytes once, plus K and V
# tiles 2 BLOCK_N 128 2 bytes per pipeline stage (BLOCK_M 128, BLOCK_N 64, 3 stages: 32 + 96 KB).
# Prefill at T in the thousands is compute-bound, so the lists favour 128-row query tiles (the MMA
# shape that reuses each K/V tile most) and vary the key tile and pipeline depth around them. A 128-row
# tile gets 8 warps: with 4, the fp32 accumulator and score tile (128 x 128 and 128 x BLOCK_N) pass 255
# registers a thread and spill (ptxas -v, Triton 3.6, on all three targets); 64-row tiles fit in 4.


def _hopper_configs():
    """sm_90 (H100/H200): 228 KB shared memory, wgmma over 64-row warpgroup tiles, so 8 warps (two
    warpgroups) split a 128-row tile; 3-4 stages of 64-key tiles (128-160 KB) hide the K/V latency."""
    return [(128, 64, 8, 3), (128, 64, 8, 4), (128, 128, 8, 2), (128, 32, 8, 4),
            (64, 64, 4, 4), (64, 64, 4, 3), (64, 32, 4, 4)]


def _blackwell_configs():
    """sm_100 (B200/GB200): same 228 KB, tcgen05 MMAs that want 128-row tiles; 128-key tiles (up to
    225 KB at 3 stages) keep the faster tensor cores fed per barrier."""
    return [(128, 128, 8, 2), (128, 128, 8, 3), (128, 64, 8, 3), (128, 64, 8, 4),
            (64, 64, 4, 4), (64, 64, 4, 3)]


def _ampere_configs():
    """sm_80 (A100, 164 KB) and the ~100 KB parts (sm_86/89, sm_120): mma.sync over 16-row warp tiles,
    every entry under 100 KB of shared memory so one list serves them all."""
    return [(128, 64, 8, 2), (128, 64, 8, 3), (128, 32, 8, 3), (64, 64, 4, 3), (64, 32, 4, 4)]


def _blackwell_masked_configs():
    """sm_100 with a sliding window or sinks: the extra band loop and sink epilogue push the 128-row tiles
    over 255 registers a thread (8-16 bytes of spills, ptxas -v, Triton 3.6), so 64-row tiles only."""
    return [(64, 64, 4, 4), (64, 64, 4, 3)]


def configs_for(cap: tuple, masked: bool = False) -> list:
    """The triton.Config list for compute capability `cap` (`masked`: a window or sinks)."""
    if cap[0] == 9:
        entries = _hopper_configs()
    elif cap[0] == 10:
        entries = _blackwell_masked_configs() if masked else _blackwell_configs()
    else:
        entries = _ampere_configs()
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
            for bm, bn, w, s in entries]


def _prune(configs, named_args, **_):
    """Drop query tiles taller than the chunk (a 16-token chunk in a 128-row tile wastes 7/8 of the MMAs);
    for 4-byte operands halve both tiles so each config keeps its 16-bit shared-memory footprint."""
    limit = max(16, next_pow2(named_args["T"]))
    kept = [c for c in configs if c.kwargs["BLOCK_M"] <= limit]
    if not kept:
        smallest = min(c.kwargs["BLOCK_M"] for c in configs)
        kept = [c for c in configs if c.kwargs["BLOCK_M"] == smallest]
    if named_args["q_ptr"].element_size() <= 2:
        return kept
    return [triton.Config({"BLOCK_M": max(16, c.kwargs["BLOCK_M"] // 2),
                           "BLOCK_N": max(16, c.kwargs["BLOCK_N"] // 2)},
                          num_warps=c.num_warps, num_stages=c.num_stages) for c in kept]


@functools.cache
def _autotuned(cap: tuple, masked: bool = False):
    # D is in the key as a constexpr; the autotuner appends every tensor argument's dtype to the key
    return triton.autotune(configs_for(cap, masked), key=["T", "S", "D"],
                           prune_configs_by={"early_config_prune": _prune},
                           **autotune_options())(_prefill_attn_kernel)


def _check(op: str, q, k, v, prefix) -> tuple:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"{op}: expected q [B, Hq, T, D] and k, v [B, Hkv, S, D], got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if tuple(v.shape) != tuple(k.shape):
        raise ValueError(f"{op}: v has shape {tuple(v.shape)}, expected k's {tuple(k.shape)}")
    b, hq, t, d = q.shape
    kb, hkv, s, kd = k.shape
    if kb != b or kd != d:
        raise ValueError(f"{op}: k/v batch {kb} and head dim {kd} must match q's {b} and {d}")
    if hkv == 0 or hq % hkv:
        raise ValueError(f"{op}: query heads {hq} not a multiple of KV heads {hkv}")
    if not 16 <= d <= MAX_HEAD_DIM:
        raise ValueError(f"{op}: head dim {d} outside 16..{MAX_HEAD_DIM} (tl.dot needs K >= 16; the "
                         f"tile configs are sized for BLOCK_D <= {MAX_HEAD_DIM})")
    if isinstance(prefix, bool) or not isinstance(prefix, int) or prefix < 0:
        raise ValueError(f"{op}: prefix must be an int >= 0, got {prefix!r}")
    if s != prefix + t:
        raise ValueError(f"{op}: cache holds {s} keys, expected prefix + T = {prefix} + {t} = {prefix + t}")
    return b, hq, t, d, hkv, s


def triton_prefill_attention(q, k, v, prefix: int, scale: float | None = None, *, out=None, window: int = 0,
                             sinks=None) -> torch.Tensor:
    """Causal prefill attention continuing a cache; returns [B, Hq, T, D] in q's dtype.

    `scale` defaults to 1 / sqrt(D); `out` is an optional output buffer (tests poison it); `window` > 0
    is a sliding window in tokens; `sinks` [Hq] adds a per-head logit to the softmax denominator.
    """
    op = "triton_prefill_attention"
    check_tensors(op, q, q=q, k=k, v=v, out=out, sinks=sinks)
    check_same_dtype(op, q, k=k, v=v)
    b, hq, t, d, hkv, s = _check(op, q, k, v, prefix)
    if isinstance(window, bool) or not isinstance(window, int) or window < 0:
        raise ValueError(f"{op}: window must be an int >= 0 (0: full attention), got {window!r}")
    if sinks is not None:
        if tuple(sinks.shape) != (hq,) or not sinks.is_floating_point():
            raise ValueError(f"{op}: sinks must be a float tensor of shape ({hq},)")
        sinks = sinks.contiguous()
    q, k, v = unit_last_stride(q), unit_last_stride(k), unit_last_stride(v)
    out = check_out(op, out, (b, hq, t, d), q.dtype, q.device)
    if b == 0 or hq == 0 or t == 0:
        return out
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    # fp32 operands: full-precision products (tl.dot would otherwise round them to tf32, ~1e-3 relative)
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    if interpreting():
        kernel, extra = _prefill_attn_kernel, {**INTERPRETER_CONFIG, "num_stages": 1}
    else:
        masked = window > 0 or sinks is not None
        kernel, extra = (_autotuned(capability(q.device), True) if masked else _autotuned(capability(q.device))), {}
    grid = lambda meta: (b * hq, cdiv(t, meta["BLOCK_M"]))
    kernel[grid](
        q, q.stride(0), q.stride(1), q.stride(2),
        k, k.stride(0), k.stride(1), k.stride(2),
        v, v.stride(0), v.stride(1), v.stride(2),
        out, out.stride(0), out.stride(1), out.stride(2),
        sinks if sinks is not None else q,
        t, s, prefix, hq, window, scale * LOG2E,
        G=hq // hkv, D=d, BLOCK_D=max(16, next_pow2(d)), PRECISION=precision,
        HAS_WINDOW=window > 0, HAS_SINKS=sinks is not None, **extra,
    )
    if not interpreting():
        note_config(f"prefill_attention T={t} S={s} D={d}", kernel)
    return out

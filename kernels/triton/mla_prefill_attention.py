"""MLA prefill attention in Triton (flash-attention forward with MLA's split key): a chunk of T queries per
sequence over K and V decompressed per chunk, the rope key shared by all heads.

q [B, H, T, Dn + Dr]; kv [B, S, H, Dn + Dv] (k_nope then v per head, the kv_b_proj output); k_pe [B, S, Dr]
(a view of the latent cache); S = prefix + T; chunk query i sees keys 0 .. prefix + i (see
kernels/mla_prefill_attention.py). The scores take two products, q_nope k_nope^T (Dn 128) and q_pe k_pe^T
(Dr 64), so the key is never concatenated or padded to 256 and k_pe is read once per KV tile, not per head
copy. Grid (B H, cdiv(T, BLOCK_M)), heads on axis 0 so the programs sharing a sequence's k_pe tiles run
together; the query-tile axis reversed so the longest tiles start first. Unmasked key tiles below the
diagonal, masked ones straddling it, nothing above it. Autotune configs per architecture as in
kernels/triton/prefill_attention.py, sized for the extra k_pe tile (a 64-key stage holds 16 + 8 + 16 KB).
"""
from __future__ import annotations

import functools

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
)
from kernels.triton.prefill_attention import _prune

LOG2E = 1.4426950408889634
INTERPRETER_CONFIG = {"BLOCK_M": 16, "BLOCK_N": 16}


@triton.jit
def _mla_tile(
    acc, l_i, m_i, q_n, q_r,
    kn_base, stride_kvs, pe_base, stride_pes,
    n0, limit, S, qk_scale_log2, offs_n, offs_dn, offs_dr, offs_dv,
    DN: tl.constexpr, DV: tl.constexpr, CAUSAL: tl.constexpr, PRECISION: tl.constexpr,
):
    """One key tile of the online softmax: t = (q_n k_n^T + q_r k_pe^T) scale log2 e, masked above each
    query's limit when CAUSAL; read BLOCK_N (Dn + Dr + Dv)."""
    keys = n0 + offs_n
    rows = keys[:, None]
    if CAUSAL:
        ok = (keys < S)[:, None]
        k_n = tl.load(kn_base + rows * stride_kvs + offs_dn[None, :], mask=ok, other=0.0)
        k_r = tl.load(pe_base + rows * stride_pes + offs_dr[None, :], mask=ok, other=0.0)
        v = tl.load(kn_base + DN + rows * stride_kvs + offs_dv[None, :], mask=ok, other=0.0)
    else:
        k_n = tl.load(kn_base + rows * stride_kvs + offs_dn[None, :])
        k_r = tl.load(pe_base + rows * stride_pes + offs_dr[None, :])
        v = tl.load(kn_base + DN + rows * stride_kvs + offs_dv[None, :])
    t = tl.dot(q_n, tl.trans(k_n), input_precision=PRECISION)
    t = tl.dot(q_r, tl.trans(k_r), t, input_precision=PRECISION) * qk_scale_log2
    if CAUSAL:
        t = tl.where(keys[None, :] <= limit[:, None], t, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(t, axis=1))  # finite: the first tile starts at key 0, seen by all
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(t - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, axis=1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    return acc, l_i, m_new


@triton.jit
def _mla_prefill_kernel(
    q_ptr, stride_qb, stride_qh, stride_qt,  # [B, H, T, DN + DR]
    kv_ptr, stride_kvb, stride_kvs, stride_kvh,  # [B, S, H, DN + DV]
    pe_ptr, stride_peb, stride_pes,  # [B, S, DR]
    o_ptr, stride_ob, stride_oh, stride_ot,  # [B, H, T, DV]
    T, S, PREFIX, H, qk_scale_log2,
    DN: tl.constexpr, DR: tl.constexpr, DV: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """out[i] = sum_{j <= PREFIX + i} 2^(t_ij - m_i) v_j / l_i over this program's BLOCK_M queries.
    Traffic per program: read BLOCK_M (DN + DR) of q and min(PREFIX + tile_start + BLOCK_M, S) (DN + DR + DV)
    of keys and values; write BLOCK_M DV."""
    pid_bh = tl.program_id(0)
    pid_m = tl.num_programs(1) - 1 - tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    start_m = pid_m * BLOCK_M
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_dn = tl.arange(0, DN)
    offs_dr = tl.arange(0, DR)
    offs_dv = tl.arange(0, DV)
    m_ok = offs_m < T
    q_rows = q_ptr + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qt
    q_n = tl.load(q_rows + offs_dn[None, :], mask=m_ok[:, None], other=0.0)
    q_r = tl.load(q_rows + DN + offs_dr[None, :], mask=m_ok[:, None], other=0.0)
    kn_base = kv_ptr + b * stride_kvb + h * stride_kvh
    pe_base = pe_ptr + b * stride_peb
    limit = PREFIX + offs_m

    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M, DV), dtype=tl.float32)
    full_hi = ((PREFIX + start_m) // BLOCK_N) * BLOCK_N
    hi = tl.minimum(PREFIX + start_m + BLOCK_M, S)
    for n0 in range(0, full_hi, BLOCK_N):
        n0 = tl.multiple_of(n0, BLOCK_N)
        acc, l_i, m_i = _mla_tile(acc, l_i, m_i, q_n, q_r, kn_base, stride_kvs, pe_base, stride_pes,
                                  n0, limit, S, qk_scale_log2, offs_n, offs_dn, offs_dr, offs_dv,
                                  DN=DN, DV=DV, CAUSAL=False, PRECISION=PRECISION)
    for n0 in range(full_hi, hi, BLOCK_N):
        n0 = tl.multiple_of(n0, BLOCK_N)
        acc, l_i, m_i = _mla_tile(acc, l_i, m_i, q_n, q_r, kn_base, stride_kvs, pe_base, stride_pes,
                                  n0, limit, S, qk_scale_log2, offs_n, offs_dn, offs_dr, offs_dv,
                                  DN=DN, DV=DV, CAUSAL=True, PRECISION=PRECISION)
    out = acc / l_i[:, None]
    o_rows = o_ptr + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_ot
    tl.store(o_rows + offs_dv[None, :], out.to(o_ptr.dtype.element_ty), mask=m_ok[:, None])


# (BLOCK_M, BLOCK_N, num_warps, num_stages) at Dn 128, Dr 64, Dv 128 in 16-bit: q tile BLOCK_M 192 2 B once,
# a key stage BLOCK_N (128 + 64 + 128) 2 B (40 KB at 64 keys). 128-row tiles take 8 warps (see the GQA kernel).
def _hopper_configs():
    return [(128, 64, 8, 2), (128, 64, 8, 3), (128, 32, 8, 3), (64, 64, 4, 3), (64, 32, 4, 4)]


def _blackwell_configs():
    """(128, 128, 8, 2) spilled 32 bytes (ptxas -v, Triton 3.6): 64-key tiles only."""
    return [(128, 64, 8, 2), (128, 64, 8, 3), (64, 64, 4, 3)]


def _ampere_configs():
    """sm_80 (164 KB) and the ~100 KB parts: every entry under 100 KB ((64, 64, 4, 2) spilled 16-36 bytes)."""
    return [(128, 32, 8, 2), (64, 32, 4, 3)]


def configs_for(cap: tuple) -> list:
    entries = _hopper_configs() if cap[0] == 9 else _blackwell_configs() if cap[0] == 10 else _ampere_configs()
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s) for bm, bn, w, s in entries]


@functools.cache
def _autotuned(cap: tuple):
    return triton.autotune(configs_for(cap), key=["T", "S", "DN", "DR", "DV"],
                           prune_configs_by={"early_config_prune": _prune}, **autotune_options())(_mla_prefill_kernel)


def _pow2_at_least_16(n: int) -> bool:
    return n >= 16 and n == next_pow2(n)


def triton_mla_prefill(q, kv, k_pe, prefix: int, scale: float, out=None, **_) -> torch.Tensor:
    """MLA causal prefill continuing a latent cache; returns [B, H, T, Dv] in q's dtype (or into `out`)."""
    op = "triton_mla_prefill"
    check_tensors(op, q, q=q, kv=kv, k_pe=k_pe, out=out)
    check_same_dtype(op, q, kv=kv, k_pe=k_pe)
    if q.dim() != 4 or kv.dim() != 4 or k_pe.dim() != 3:
        raise ValueError(f"{op}: expected q [B, H, T, Dn + Dr], kv [B, S, H, Dn + Dv], k_pe [B, S, Dr], got "
                         f"{tuple(q.shape)}, {tuple(kv.shape)}, {tuple(k_pe.shape)}")
    b, h, t, dqk = q.shape
    s, dr = k_pe.shape[1], k_pe.shape[2]
    dn = dqk - dr
    dv = kv.shape[3] - dn
    if kv.shape[0] != b or kv.shape[1] != s or kv.shape[2] != h or k_pe.shape[0] != b:
        raise ValueError(f"{op}: kv {tuple(kv.shape)} / k_pe {tuple(k_pe.shape)} do not match q {tuple(q.shape)}")
    if not all(_pow2_at_least_16(n) for n in (dn, dr, dv)):
        raise ValueError(f"{op}: Dn {dn}, Dr {dr}, Dv {dv} must be powers of two >= 16")
    if isinstance(prefix, bool) or not isinstance(prefix, int) or s != prefix + t:
        raise ValueError(f"{op}: cache holds {s} keys, expected prefix + T = {prefix} + {t}")
    if q.stride(-1) != 1 or kv.stride(-1) != 1 or k_pe.stride(-1) != 1:
        q, kv, k_pe = q.contiguous(), kv.contiguous(), k_pe.contiguous()
    out = check_out(op, out, (b, h, t, dv), q.dtype, q.device)
    if b == 0 or h == 0 or t == 0:
        return out
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    if interpreting():
        kernel, extra = _mla_prefill_kernel, {**INTERPRETER_CONFIG, "num_stages": 1}
    else:
        kernel, extra = _autotuned(capability(q.device)), {}
    grid = lambda meta: (b * h, cdiv(t, meta["BLOCK_M"]))
    kernel[grid](
        q, q.stride(0), q.stride(1), q.stride(2),
        kv, kv.stride(0), kv.stride(1), kv.stride(2),
        k_pe, k_pe.stride(0), k_pe.stride(1),
        out, out.stride(0), out.stride(1), out.stride(2),
        t, s, prefix, h, float(scale) * LOG2E,
        DN=dn, DR=dr, DV=dv, PRECISION=precision, **extra,
    )
    if not interpreting():
        note_config(f"mla_prefill T={t} S={s}", kernel)
    return out

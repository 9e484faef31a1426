"""Rotary position embedding in Triton (Hugging Face Llama's half-split layout), and RoPE fused with
the KV-cache append.

For each head vector x [D], halves x1 = x[:D/2], x2 = x[D/2:]: out = [x1 c - x2 s, x2 c + x1 s] with
c, s = cos, sin [B, D/2] (float32, already at each sequence's position). q [B, Hq, D], k [B, Hkv, D],
views with any row/head strides (e.g. slices of the fused qkv output).

Fusion: rope then append writes rotated k to a temporary and reads it back (2 B Hkv D elements) and
costs a launch; rope_append rotates k straight into the cache slot and copies v there too, so one
launch reads q, k, v once and writes q_out and the two cache slots once. At decode the op is tiny
(Llama-3.1-8B, batch 1: ~20 KB), so the launch saved is the gain, worth it when launches are not
hidden by a CUDA graph, and harmless when they are.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.triton._common import check_out, check_shape, check_tensors, next_pow2, unit_last_stride
from kernels.triton.kv_cache import _slot_offset, check_cache_args


@triton.jit
def _rotate_heads(
    x_ptr, stride_xh,  # one sequence's [NH, D] heads
    o_ptr, stride_oh,  # where the rotated heads go
    c, s,  # [1, BLOCK_HALF] fp32 cos, sin
    NH,
    HALF: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_HALF: tl.constexpr,
):
    """o = [x1 c - x2 s, x2 c + x1 s] per head, in fp32, rounded once. Read NH D; write NH D."""
    offs_h = tl.arange(0, BLOCK_H)
    offs_i = tl.arange(0, BLOCK_HALF)
    mask = (offs_h[:, None] < NH) & (offs_i[None, :] < HALF)
    x_lo = x_ptr + offs_h[:, None] * stride_xh + offs_i[None, :]
    x1 = tl.load(x_lo, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(x_lo + HALF, mask=mask, other=0.0).to(tl.float32)
    o_lo = o_ptr + offs_h[:, None] * stride_oh + offs_i[None, :]
    tl.store(o_lo, (x1 * c - x2 * s).to(o_ptr.dtype.element_ty), mask=mask)
    tl.store(o_lo + HALF, (x2 * c + x1 * s).to(o_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _load_cos_sin(cos_ptr, stride_cb, sin_ptr, stride_sb, b, HALF: tl.constexpr, BLOCK_HALF: tl.constexpr):
    offs_i = tl.arange(0, BLOCK_HALF)
    c = tl.load(cos_ptr + b * stride_cb + offs_i, mask=offs_i < HALF, other=0.0).to(tl.float32)
    s = tl.load(sin_ptr + b * stride_sb + offs_i, mask=offs_i < HALF, other=0.0).to(tl.float32)
    return c[None, :], s[None, :]


@triton.jit
def _rope_kernel(
    q_ptr, stride_qb, stride_qh,  # [B, Hq, D]
    k_ptr, stride_kb, stride_kh,  # [B, Hkv, D]
    qo_ptr, stride_qob, stride_qoh,  # [B, Hq, D]
    ko_ptr, stride_kob, stride_koh,  # [B, Hkv, D]
    cos_ptr, stride_cb, sin_ptr, stride_sb,  # [B, D/2] fp32
    HQ, HKV,
    HALF: tl.constexpr, BLOCK_HQ: tl.constexpr, BLOCK_HKV: tl.constexpr, BLOCK_HALF: tl.constexpr,
):
    """One program per sequence rotates all its q and k heads. Read (Hq + Hkv) D + D; write (Hq + Hkv) D."""
    b = tl.program_id(0).to(tl.int64)
    c, s = _load_cos_sin(cos_ptr, stride_cb, sin_ptr, stride_sb, b, HALF, BLOCK_HALF)
    _rotate_heads(q_ptr + b * stride_qb, stride_qh, qo_ptr + b * stride_qob, stride_qoh, c, s, HQ,
                  HALF, BLOCK_HQ, BLOCK_HALF)
    _rotate_heads(k_ptr + b * stride_kb, stride_kh, ko_ptr + b * stride_kob, stride_koh, c, s, HKV,
                  HALF, BLOCK_HKV, BLOCK_HALF)


@triton.jit
def _rope_append_kernel(
    q_ptr, stride_qb, stride_qh,  # [B, Hq, D]
    k_ptr, stride_kb, stride_kh,  # [B, Hkv, D]
    v_ptr, stride_vb, stride_vh,  # [B, Hkv, D]
    qo_ptr, stride_qob, stride_qoh,  # [B, Hq, D]
    kc_ptr, stride_kcb, stride_kch, stride_kcs,  # [B, Hkv, S, D] or pages [P, Hkv, PAGE_SIZE, D]
    vc_ptr, stride_vcb, stride_vch, stride_vcs,
    cos_ptr, stride_cb, sin_ptr, stride_sb,  # [B, D/2] fp32
    pos_ptr,  # [B]
    bt_ptr, stride_btb,  # [B, max_pages] (PAGED only)
    HQ, HKV,
    HALF: tl.constexpr, BLOCK_HQ: tl.constexpr, BLOCK_HKV: tl.constexpr, BLOCK_HALF: tl.constexpr,
    PAGE_SIZE: tl.constexpr, PAGED: tl.constexpr,
):
    """q_out = rope(q); cache_k[slot] = rope(k); cache_v[slot] = v.
    Read (Hq + 2 Hkv) D + D (+ position, page id); write (Hq + 2 Hkv) D."""
    b = tl.program_id(0).to(tl.int64)
    pos = tl.load(pos_ptr + b).to(tl.int64)
    c, s = _load_cos_sin(cos_ptr, stride_cb, sin_ptr, stride_sb, b, HALF, BLOCK_HALF)
    _rotate_heads(q_ptr + b * stride_qb, stride_qh, qo_ptr + b * stride_qob, stride_qoh, c, s, HQ,
                  HALF, BLOCK_HQ, BLOCK_HALF)
    k_slot = _slot_offset(b, pos, bt_ptr, stride_btb, stride_kcb, stride_kcs, PAGE_SIZE, PAGED)
    _rotate_heads(k_ptr + b * stride_kb, stride_kh, kc_ptr + k_slot, stride_kch, c, s, HKV,
                  HALF, BLOCK_HKV, BLOCK_HALF)
    # v is not rotated: copy both halves with the same tile shape
    offs_h = tl.arange(0, BLOCK_HKV)
    offs_d = tl.arange(0, 2 * BLOCK_HALF)
    mask = (offs_h[:, None] < HKV) & (offs_d[None, :] < 2 * HALF)
    v = tl.load(v_ptr + b * stride_vb + offs_h[:, None] * stride_vh + offs_d[None, :], mask=mask)
    v_slot = _slot_offset(b, pos, bt_ptr, stride_btb, stride_vcb, stride_vcs, PAGE_SIZE, PAGED)
    tl.store(vc_ptr + v_slot + offs_h[:, None] * stride_vch + offs_d[None, :], v, mask=mask)


def _check_rope(op, q, k, cos, sin):
    check_tensors(op, q, q=q, k=k, cos=cos, sin=sin)
    if q.dim() != 3 or k.dim() != 3 or q.shape[0] != k.shape[0] or q.shape[2] != k.shape[2]:
        raise ValueError(f"{op}: expected q [B, Hq, D] and k [B, Hkv, D], got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}")
    if k.dtype != q.dtype:
        raise ValueError(f"{op}: k is {k.dtype}, expected {q.dtype} like q")
    b, _, d = q.shape
    if d % 2:
        raise ValueError(f"{op}: head dim {d} must be even")
    for name, t in (("cos", cos), ("sin", sin)):
        check_shape(op, name, t, (b, d // 2))
        if t.dtype != torch.float32:
            raise ValueError(f"{op}: {name} must be float32, got {t.dtype}")
    return unit_last_stride(q), unit_last_stride(k), unit_last_stride(cos), unit_last_stride(sin)


def triton_rope(q, k, cos, sin, q_out=None, k_out=None, **_) -> tuple:
    """(rope(q), rope(k)) as new tensors (or into `q_out`, `k_out`)."""
    op = "triton_rope"
    q, k, cos, sin = _check_rope(op, q, k, cos, sin)
    (b, hq, d), hkv = q.shape, k.shape[1]
    q_out = check_out(op, q_out, q.shape, q.dtype, q.device)
    k_out = check_out(op, k_out, k.shape, k.dtype, k.device)
    if b == 0:
        return q_out, k_out
    _rope_kernel[(b,)](
        q, q.stride(0), q.stride(1), k, k.stride(0), k.stride(1),
        q_out, q_out.stride(0), q_out.stride(1), k_out, k_out.stride(0), k_out.stride(1),
        cos, cos.stride(0), sin, sin.stride(0), hq, hkv,
        HALF=d // 2, BLOCK_HQ=next_pow2(hq), BLOCK_HKV=next_pow2(hkv), BLOCK_HALF=next_pow2(d // 2),
        num_warps=4,
    )
    return q_out, k_out


def triton_rope_append(q, k, v, cos, sin, k_cache, v_cache, positions, q_out=None, block_table=None,
                       page_size=None, **_) -> torch.Tensor:
    """rope(q) returned; rope(k) and v written in place at each sequence's position (paged when
    `block_table` is given). Equals triton_rope followed by triton_append, in one launch."""
    op = "triton_rope_append"
    q, k, cos, sin = _check_rope(op, q, k, cos, sin)
    k_cache, v_cache, bt, page = check_cache_args(op, k, v, k_cache, v_cache, positions, block_table,
                                                  page_size)
    v = unit_last_stride(v)
    (b, hq, d), hkv = q.shape, k.shape[1]
    q_out = check_out(op, q_out, q.shape, q.dtype, q.device)
    if b == 0:
        return q_out
    paged = bt is not None
    _rope_append_kernel[(b,)](
        q, q.stride(0), q.stride(1), k, k.stride(0), k.stride(1), v, v.stride(0), v.stride(1),
        q_out, q_out.stride(0), q_out.stride(1),
        k_cache, k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache, v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        cos, cos.stride(0), sin, sin.stride(0), positions,
        bt if paged else positions, bt.stride(0) if paged else 0, hq, hkv,
        HALF=d // 2, BLOCK_HQ=next_pow2(hq), BLOCK_HKV=next_pow2(hkv), BLOCK_HALF=next_pow2(d // 2),
        PAGE_SIZE=page, PAGED=paged, num_warps=4,
    )
    return q_out

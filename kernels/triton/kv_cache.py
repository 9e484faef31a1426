"""KV-cache append in Triton: write each sequence's new k, v at its position, contiguous or paged.

k, v [B, Hkv, D]; contiguous caches [B, Hkv, S, D]; or pages [num_pages, Hkv, page_size, D] with
block_table [B, max_pages] (see kernels.triton.attention for the layout); positions [B] int.
Pure traffic: read 2 B Hkv D (+ B positions), write as many into the caches. No host sync: positions
are read by the kernel, so the call is capturable in a CUDA graph.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.triton._common import check_same_dtype, check_shape, check_tensors, next_pow2, unit_last_stride


@triton.jit
def _slot_offset(b, pos, bt_ptr, stride_btb, stride_cb, stride_cs,
                 PAGE_SIZE: tl.constexpr, PAGED: tl.constexpr):
    """Element offset of (sequence b, token pos, head 0, d 0) in a contiguous or paged cache."""
    if PAGED:
        page = tl.load(bt_ptr + b * stride_btb + pos // PAGE_SIZE).to(tl.int64)
        offset = page * stride_cb + (pos % PAGE_SIZE) * stride_cs
    else:
        offset = b * stride_cb + pos * stride_cs
    return offset


@triton.jit
def _append_kernel(
    k_ptr, stride_kb, stride_kh,  # [B, Hkv, D]
    v_ptr, stride_vb, stride_vh,  # [B, Hkv, D]
    kc_ptr, stride_kcb, stride_kch, stride_kcs,  # [B, Hkv, S, D] or [P, Hkv, PAGE_SIZE, D]
    vc_ptr, stride_vcb, stride_vch, stride_vcs,
    pos_ptr,  # [B]
    bt_ptr, stride_btb,  # [B, max_pages] (PAGED only)
    HKV, D,
    BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr, PAGE_SIZE: tl.constexpr, PAGED: tl.constexpr,
):
    """cache[slot(b, positions[b]), h, :] = new[b, h, :] for k and v. Read 2 Hkv D; write 2 Hkv D."""
    b = tl.program_id(0).to(tl.int64)
    pos = tl.load(pos_ptr + b).to(tl.int64)
    offs_h = tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    mask = (offs_h[:, None] < HKV) & (offs_d[None, :] < D)
    k = tl.load(k_ptr + b * stride_kb + offs_h[:, None] * stride_kh + offs_d[None, :], mask=mask)
    v = tl.load(v_ptr + b * stride_vb + offs_h[:, None] * stride_vh + offs_d[None, :], mask=mask)
    k_slot = _slot_offset(b, pos, bt_ptr, stride_btb, stride_kcb, stride_kcs, PAGE_SIZE, PAGED)
    v_slot = _slot_offset(b, pos, bt_ptr, stride_btb, stride_vcb, stride_vcs, PAGE_SIZE, PAGED)
    tl.store(kc_ptr + k_slot + offs_h[:, None] * stride_kch + offs_d[None, :], k, mask=mask)
    tl.store(vc_ptr + v_slot + offs_h[:, None] * stride_vch + offs_d[None, :], v, mask=mask)


def check_cache_args(op, k, v, k_cache, v_cache, positions, block_table, page_size):
    """Shared checks for append and rope_append; returns (k_cache, v_cache, block_table, page_size)."""
    check_tensors(op, k, k=k, v=v, k_cache=k_cache, v_cache=v_cache, positions=positions,
                  block_table=block_table)
    check_same_dtype(op, k, v=v, k_cache=k_cache, v_cache=v_cache)
    if k.dim() != 3 or k_cache.dim() != 4:
        raise ValueError(f"{op}: expected k [B, Hkv, D] and a 4-d cache, got {tuple(k.shape)}, "
                         f"{tuple(k_cache.shape)}")
    b, hkv, d = k.shape
    check_shape(op, "v", v, (b, hkv, d))
    check_shape(op, "v_cache", v_cache, k_cache.shape)
    if k_cache.shape[1] != hkv or k_cache.shape[3] != d:
        raise ValueError(f"{op}: cache {tuple(k_cache.shape)} does not hold [*, {hkv}, *, {d}] entries")
    if positions.dtype not in (torch.int32, torch.int64) or tuple(positions.shape) != (b,):
        raise ValueError(f"{op}: positions must be int32/int64 of shape ({b},), got "
                         f"{positions.dtype} {tuple(positions.shape)}")
    if k_cache.stride(-1) != 1 or v_cache.stride(-1) != 1:
        raise ValueError(f"{op}: caches must have unit stride in D (they are written in place)")
    if block_table is None:
        if k_cache.shape[0] != b:
            raise ValueError(f"{op}: cache batch {k_cache.shape[0]} != batch {b}")
        return k_cache, v_cache, None, 1
    bad_dtype = block_table.dtype not in (torch.int32, torch.int64)
    if block_table.dim() != 2 or block_table.shape[0] != b or bad_dtype:
        raise ValueError(f"{op}: block_table must be int32/int64 [B={b}, max_pages], got "
                         f"{block_table.dtype} {tuple(block_table.shape)}")
    if page_size is not None and page_size != k_cache.shape[2]:
        raise ValueError(f"{op}: page_size {page_size} != pages' slot axis {k_cache.shape[2]}")
    return k_cache, v_cache, unit_last_stride(block_table), k_cache.shape[2]


def triton_append(k, v, k_cache, v_cache, positions, block_table=None, page_size=None, **_) -> None:
    """In place: k_cache[b, :, positions[b]] = k[b] (and v). With `block_table`, the caches are pages."""
    op = "triton_append"
    k_cache, v_cache, bt, page = check_cache_args(op, k, v, k_cache, v_cache, positions, block_table,
                                                  page_size)
    k, v = unit_last_stride(k), unit_last_stride(v)
    b, hkv, d = k.shape
    if b == 0:
        return
    paged = bt is not None
    _append_kernel[(b,)](
        k, k.stride(0), k.stride(1), v, v.stride(0), v.stride(1),
        k_cache, k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache, v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        positions, bt if paged else positions, bt.stride(0) if paged else 0, hkv, d,
        BLOCK_H=next_pow2(hkv), BLOCK_D=next_pow2(d), PAGE_SIZE=page, PAGED=paged, num_warps=4,
    )
    return


def triton_paged_append(k, v, k_pages, v_pages, block_table, positions, page_size=None, **_) -> None:
    """In place: token positions[b] of sequence b into its page (see triton_append)."""
    return triton_append(k, v, k_pages, v_pages, positions, block_table=block_table, page_size=page_size)

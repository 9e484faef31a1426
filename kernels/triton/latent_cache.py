"""MLA's latent cache append in Triton: one program per sequence writes [c_kv, k_pe] into its slot.

c_kv [B, R] and k_pe [B, P] (any row strides: views of the norm and rope outputs); cache [B, S, R + P] with
unit stride in its last dim; positions [B] int32/int64. Read and write B (R + P) elements once.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.triton._common import check_same_dtype, check_tensors, next_pow2


@triton.jit
def _latent_append_kernel(
    c_ptr, stride_c, pe_ptr, stride_pe, cache_ptr, stride_cb, stride_cs, pos_ptr,
    R: tl.constexpr, P: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_P: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    slot = cache_ptr + b * stride_cb + tl.load(pos_ptr + b).to(tl.int64) * stride_cs
    offs_r = tl.arange(0, BLOCK_R)
    offs_p = tl.arange(0, BLOCK_P)
    c = tl.load(c_ptr + b * stride_c + offs_r, mask=offs_r < R)
    tl.store(slot + offs_r, c, mask=offs_r < R)
    pe = tl.load(pe_ptr + b * stride_pe + offs_p, mask=offs_p < P)
    tl.store(slot + R + offs_p, pe, mask=offs_p < P)


def triton_latent_append(c_kv, k_pe, cache, positions, **_) -> None:
    """In place, as kernels.latent_cache.torch_latent_append."""
    op = "triton_latent_append"
    check_tensors(op, c_kv, c_kv=c_kv, k_pe=k_pe, cache=cache, positions=positions)
    check_same_dtype(op, c_kv, k_pe=k_pe, cache=cache)
    k_pe = k_pe.reshape(k_pe.shape[0], -1)
    b, r = c_kv.shape
    p = k_pe.shape[1]
    if cache.dim() != 3 or cache.shape[0] != b or cache.shape[2] != r + p or cache.stride(-1) != 1:
        raise ValueError(f"{op}: cache must be [B={b}, S, {r + p}] with unit last stride, got {tuple(cache.shape)}")
    if tuple(positions.shape) != (b,) or positions.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"{op}: positions must be int32/int64 of shape ({b},)")
    if c_kv.stride(-1) != 1 or k_pe.stride(-1) != 1:
        c_kv, k_pe = c_kv.contiguous(), k_pe.contiguous()
    if b == 0:
        return None
    _latent_append_kernel[(b,)](c_kv, c_kv.stride(0), k_pe, k_pe.stride(0), cache, cache.stride(0),
                                cache.stride(1), positions, R=r, P=p, BLOCK_R=next_pow2(r),
                                BLOCK_P=next_pow2(p), num_warps=4)
    return None

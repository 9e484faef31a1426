"""Decode attention: one query token per sequence against its KV cache, grouped-query (GQA).

q [B, Hq, D]; k_cache, v_cache [B, Hkv, S, D] (S = cache length); lengths [B] or None (all S valid).
out[b, h] = softmax(q[b, h] . K[b, h // G]^T / sqrt(D)) V[b, h // G], G = Hq / Hkv.
Every KV byte must be read once: traffic is 2 * B * Hkv * S * D elements, FLOPs 4 * B * Hq * S * D,
so intensity is about 2 * G flops per element and the op is bandwidth-bound at any batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kernels.dtypes import generator, randn
from kernels.op import Inputs, as_float64


@dataclass(frozen=True)
class AttentionShape:
    batch: int
    heads: int
    kv_heads: int
    head_dim: int
    context: int  # KV entries each query attends to, the new token included


def flops(s: AttentionShape) -> int:
    # QK^T and PV, 2 flops per multiply-add each; softmax's O(S) terms are left out
    return 4 * s.batch * s.heads * s.context * s.head_dim


def min_bytes(s: AttentionShape, element_bytes: int) -> int:
    # read K and V (2 B Hkv S D) and q (B Hq D); write out (B Hq D)
    kv = 2 * s.batch * s.kv_heads * s.context * s.head_dim
    return (kv + 2 * s.batch * s.heads * s.head_dim) * element_bytes


def make_inputs(s: AttentionShape, dtype: torch.dtype, device, seed: int) -> Inputs:
    g = generator(seed, device)
    kv_shape = (s.batch, s.kv_heads, s.context, s.head_dim)
    return {
        "q": randn((s.batch, s.heads, s.head_dim), dtype, device, g),
        "k_cache": randn(kv_shape, dtype, device, g),
        "v_cache": randn(kv_shape, dtype, device, g),
        "lengths": None,
    }


def reference(q, k_cache, v_cache, lengths=None, **_) -> tuple:
    b, hq, d = q.shape
    hkv, s = k_cache.shape[1], k_cache.shape[2]
    qg = as_float64(q).view(b, hkv, hq // hkv, d)  # [B, Hkv, G, D]
    scores = torch.einsum("bhgd,bhsd->bhgs", qg, as_float64(k_cache)) / math.sqrt(d)
    if lengths is not None:
        pos = torch.arange(s, device=q.device)
        scores = scores.masked_fill(pos[None, None, None, :] >= lengths[:, None, None, None], float("-inf"))
    p = torch.softmax(scores, dim=-1)
    out = torch.einsum("bhgs,bhsd->bhgd", p, as_float64(v_cache))
    return (out.reshape(b, hq, d),)


def torch_sdpa(q, k_cache, v_cache, lengths=None, **_) -> torch.Tensor:
    """SDPA with the G query heads of a KV head folded into its query length, so K/V are read once. On a CPU
    with a bf16 / fp16 cache, whichever of SDPA and the cache widened to fp32 per sequence measured faster
    (kernels/cpu_attention.py)."""
    if q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16):
        from kernels.cpu_attention import cpu_attention

        return cpu_attention(q, k_cache, v_cache, lengths, reference)
    b, hq, d = q.shape
    hkv, s = k_cache.shape[1], k_cache.shape[2]
    qg = q.view(b, hkv, hq // hkv, d)  # [B, Hkv, G, D]
    mask = None
    if lengths is not None:
        pos = torch.arange(s, device=q.device)
        mask = (pos[None, :] < lengths[:, None])[:, None, None, :]  # [B, 1, 1, S]
    out = F.scaled_dot_product_attention(qg, k_cache, v_cache, attn_mask=mask)
    return out.reshape(b, hq, d)

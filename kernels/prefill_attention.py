"""Causal prefill attention: a chunk of T prompt tokens per sequence attends to the cached prefix and,
causally, to itself (grouped-query, GQA), as chunked-prefill engines run it.

q [B, Hq, T, D]; k, v [B, Hkv, S, D] with S = prefix + T (the chunk's own keys already in the cache).
Chunk query i (0-based) sees keys 0 .. prefix + i:  out = softmax(q K^T / sqrt(D) + causal mask) V.
Work counted exactly over the unmasked pairs: sum_i (prefix + i + 1) = T prefix + T (T + 1) / 2 keys,
each 2 D multiply-adds (QK^T and PV), so FLOPs = 4 B Hq D (T prefix + T (T + 1) / 2). Bytes: q read and
out written once, K/V read once (2 B Hkv S D). At T in the thousands the op is compute-bound.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kernels.dtypes import generator, randn
from kernels.op import Inputs, as_float64


@dataclass(frozen=True)
class PrefillAttentionShape:
    batch: int
    heads: int
    kv_heads: int
    head_dim: int
    chunk: int  # T: query tokens of each sequence in this chunk
    prefix: int = 0  # tokens already in the cache before the chunk

    @property
    def keys(self) -> int:
        return self.prefix + self.chunk


def attended_pairs(chunk: int, prefix: int) -> int:
    """(query, key) pairs the causal mask leaves, per sequence and head."""
    return chunk * prefix + chunk * (chunk + 1) // 2


def flops(s: PrefillAttentionShape) -> int:
    # QK^T and PV over the attended pairs only, 2 flops per multiply-add each; softmax's terms left out
    return 4 * s.batch * s.heads * s.head_dim * attended_pairs(s.chunk, s.prefix)


def min_bytes(s: PrefillAttentionShape, element_bytes: int) -> int:
    # read q (B Hq T D), K and V (2 B Hkv S D); write out (B Hq T D)
    q_and_out = 2 * s.batch * s.heads * s.chunk * s.head_dim
    kv = 2 * s.batch * s.kv_heads * s.keys * s.head_dim
    return (q_and_out + kv) * element_bytes


def make_inputs(s: PrefillAttentionShape, dtype: torch.dtype, device, seed: int) -> Inputs:
    g = generator(seed, device)
    kv_shape = (s.batch, s.kv_heads, s.keys, s.head_dim)
    return {
        "q": randn((s.batch, s.heads, s.chunk, s.head_dim), dtype, device, g),
        "k": randn(kv_shape, dtype, device, g),
        "v": randn(kv_shape, dtype, device, g),
        "prefix": s.prefix,
    }


def causal_mask(chunk: int, prefix: int, device) -> torch.Tensor:
    """[T, S] True where chunk query i may attend key j, i.e. j <= prefix + i."""
    keys = torch.arange(prefix + chunk, device=device)
    queries = torch.arange(chunk, device=device)
    return keys[None, :] <= (prefix + queries)[:, None]


def reference(q, k, v, prefix: int, **_) -> tuple:
    b, hq, t, d = q.shape
    hkv = k.shape[1]
    qg = as_float64(q).view(b, hkv, hq // hkv, t, d)  # [B, Hkv, G, T, D]: a KV head's G query heads
    scores = torch.einsum("bhgtd,bhsd->bhgts", qg, as_float64(k)) / math.sqrt(d)
    scores = scores.masked_fill(~causal_mask(t, prefix, q.device), float("-inf"))
    out = torch.einsum("bhgts,bhsd->bhgtd", torch.softmax(scores, dim=-1), as_float64(v))
    return (out.reshape(b, hq, t, d),)


_LOWER_RIGHT_WORKS: dict = {}  # device type -> whether SDPA takes a lower-right causal bias with GQA


def torch_sdpa_prefill(q, k, v, prefix: int, **_) -> torch.Tensor:
    """PyTorch's SDPA (flash or memory-efficient kernels on GPU, math on CPU) with GQA handled inside, so
    K/V are not repeated in memory. Without a prefix the causal mask is SDPA's own is_causal; with one it
    is torch's lower-right causal bias (queries aligned to the end of the keys), which keeps the fused
    kernels; where this torch cannot combine that bias with GQA, an explicit boolean mask (math kernel)."""
    if prefix == 0:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    t, kind = q.shape[2], q.device.type
    if _LOWER_RIGHT_WORKS.get(kind, True):
        from torch.nn.attention.bias import causal_lower_right

        try:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(t, prefix + t),
                                                 enable_gqa=True)
            _LOWER_RIGHT_WORKS[kind] = True
            return out
        except (TypeError, RuntimeError, NotImplementedError) as exc:
            if "out of memory" in str(exc):
                raise
            _LOWER_RIGHT_WORKS[kind] = False
    mask = causal_mask(t, prefix, q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)


def implementation(backend: str):
    """The prefill attention of a backend (the layer's 'attention' kind picks decode or prefill by phase)."""
    if backend == "torch":
        return torch_sdpa_prefill
    if backend == "triton":
        from kernels.triton.prefill_attention import triton_prefill_attention

        return lambda q, k, v, prefix, **_: triton_prefill_attention(q, k, v, prefix)
    from kernels.backends import BackendError

    raise BackendError(f"unknown backend {backend!r} for prefill attention")

"""Causal prefill attention: a chunk of T prompt tokens per sequence attends to the cached prefix and,
causally, to itself (grouped-query, GQA), as chunked-prefill engines run it; optionally over a sliding
window and with attention sinks (gpt-oss).

q [B, Hq, T, D]; k, v [B, Hkv, S, D] with S = cached + T (the chunk's own keys already in the cache).
Chunk query i (0-based) sees keys 0 .. cached + i:  out = softmax(q K^T / sqrt(D) + causal mask) V.
Sliding window W (window > 0): query i sees only keys j with cached + i - W < j <= cached + i (Hugging
Face's `kv_idx > q_idx - sliding_window`), so a prefix of P tokens is kept as its last min(P, W - 1)
(`cached`; the cache is bounded by the window) and each query attends to at most W keys.
Sinks [Hq] float32: a per-head logit in the softmax denominator only (see kernels/attention.py).
Work counted exactly over the unmasked pairs: sum_i min(P + i + 1, W) keys (without a window
T P + T (T + 1) / 2), each 2 D multiply-adds (QK^T and PV), so FLOPs = 4 B Hq D pairs. Bytes: q read and
out written once, K/V read once (2 B Hkv S D). At T in the thousands the op is compute-bound.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kernels.attention import _eager_with_sinks, make_sinks, softmax_with_sinks
from kernels.dtypes import generator, randn
from kernels.op import Inputs, as_float64


@dataclass(frozen=True)
class PrefillAttentionShape:
    batch: int
    heads: int
    kv_heads: int
    head_dim: int
    chunk: int  # T: query tokens of each sequence in this chunk
    prefix: int = 0  # tokens of the sequence before the chunk
    window: int = 0  # sliding window in tokens (0: full attention)
    sinks: bool = False

    @property
    def cached(self) -> int:
        """Prefix tokens the cache still holds: all of them, or the last W - 1 under a window."""
        return min(self.prefix, self.window - 1) if self.window else self.prefix

    @property
    def keys(self) -> int:
        return self.cached + self.chunk


def attended_pairs(chunk: int, prefix: int, window: int = 0) -> int:
    """(query, key) pairs the causal (and window) mask leaves, per sequence and head."""
    full = chunk * prefix + chunk * (chunk + 1) // 2
    if not window:
        return full
    growing = max(0, min(window - prefix, chunk))  # queries whose causal span is still <= W keys
    return growing * prefix + growing * (growing + 1) // 2 + (chunk - growing) * window


def flops(s: PrefillAttentionShape) -> int:
    # QK^T and PV over the attended pairs only, 2 flops per multiply-add each; softmax's terms left out
    return 4 * s.batch * s.heads * s.head_dim * attended_pairs(s.chunk, s.prefix, s.window)


def min_bytes(s: PrefillAttentionShape, element_bytes: int) -> int:
    # read q (B Hq T D), K and V (2 B Hkv S D); write out (B Hq T D); sinks float32 (Hq)
    q_and_out = 2 * s.batch * s.heads * s.chunk * s.head_dim
    kv = 2 * s.batch * s.kv_heads * s.keys * s.head_dim
    return (q_and_out + kv) * element_bytes + (4 * s.heads if s.sinks else 0)


def make_inputs(s: PrefillAttentionShape, dtype: torch.dtype, device, seed: int) -> Inputs:
    g = generator(seed, device)
    kv_shape = (s.batch, s.kv_heads, s.keys, s.head_dim)
    return {
        "q": randn((s.batch, s.heads, s.chunk, s.head_dim), dtype, device, g),
        "k": randn(kv_shape, dtype, device, g),
        "v": randn(kv_shape, dtype, device, g),
        "prefix": s.cached,
        "window": s.window,
        "sinks": make_sinks(s.heads, device, g) if s.sinks else None,
    }


def causal_mask(chunk: int, prefix: int, device, window: int = 0) -> torch.Tensor:
    """[T, S] True where chunk query i may attend key j, i.e. j <= prefix + i (and j > prefix + i - W)."""
    keys = torch.arange(prefix + chunk, device=device)
    last = prefix + torch.arange(chunk, device=device)
    ok = keys[None, :] <= last[:, None]
    if window:
        ok = ok & (keys[None, :] > last[:, None] - window)
    return ok


def reference(q, k, v, prefix: int, window: int = 0, sinks=None, **_) -> tuple:
    b, hq, t, d = q.shape
    g = hq // k.shape[1]
    scores = torch.einsum("bhtd,bhsd->bhts", as_float64(q),
                          as_float64(k).repeat_interleave(g, dim=1)) / math.sqrt(d)
    scores = scores.masked_fill(~causal_mask(t, prefix, q.device, window), float("-inf"))
    p = softmax_with_sinks(scores, None if sinks is None else as_float64(sinks))
    return (torch.einsum("bhts,bhsd->bhtd", p, as_float64(v).repeat_interleave(g, dim=1)),)


_LOWER_RIGHT_WORKS: dict = {}  # device type -> whether SDPA takes a lower-right causal bias with GQA


def torch_sdpa_prefill(q, k, v, prefix: int, window: int = 0, sinks=None, **_) -> torch.Tensor:
    """PyTorch's SDPA (flash or memory-efficient kernels on GPU, math on CPU) with GQA handled inside, so
    K/V are not repeated in memory. Without a prefix the causal mask is SDPA's own is_causal; with one it
    is torch's lower-right causal bias (queries aligned to the end of the keys), which keeps the fused
    kernels; where this torch cannot combine that bias with GQA, an explicit boolean mask (math kernel).
    A window is an explicit boolean mask; sinks (no SDPA argument for them) take transformers' eager form
    with the G query heads of a KV head folded so K/V are read once."""
    t, kind = q.shape[2], q.device.type
    if sinks is not None:
        b, hq, _, d = q.shape
        hkv = k.shape[1]
        qg = q.reshape(b, hkv, (hq // hkv) * t, d)
        mask = causal_mask(t, prefix, q.device, window).repeat(hq // hkv, 1)[None, None]
        out = _eager_with_sinks(qg, k, v, mask, sinks.view(hkv, hq // hkv, 1).expand(-1, -1, t).reshape(-1),
                                1.0 / math.sqrt(d))
        return out.view(b, hq, t, -1)
    if window:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(t, prefix, q.device, window),
                                              enable_gqa=True)
    if prefix == 0:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
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

        return lambda q, k, v, prefix, window=0, sinks=None, **_: triton_prefill_attention(
            q, k, v, prefix, window=window, sinks=sinks)
    from kernels.backends import BackendError

    raise BackendError(f"unknown backend {backend!r} for prefill attention")

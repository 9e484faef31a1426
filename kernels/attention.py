"""Decode attention: one query token per sequence against its KV cache, grouped-query (GQA), optionally
over a sliding window and with attention sinks (gpt-oss).

q [B, Hq, D]; k_cache, v_cache [B, Hkv, S, D] (S = cache length); lengths [B] or None (all S valid).
out[b, h] = softmax(q[b, h] . K[b, h // G]^T / sqrt(D)) V[b, h // G], G = Hq / Hkv.
Sliding window W (window > 0): a sequence of L tokens attends to its last min(L, W) keys only (Hugging Face's
`kv_idx > q_idx - sliding_window`), so its cache is bounded by W: the op's cache holds min(context, W) slots
(a ring buffer; the decode softmax is order-free, so the slot order does not matter) and the kernels, given a
longer cache, read only each sequence's last W keys.
Sinks (gpt-oss): a learned logit per query head, sinks [Hq] float32, joins the softmax denominator only:
out = sum_s e^(t_s) v_s / (sum_s e^(t_s) + e^(sink_h)).
Every KV byte in the window must be read once: traffic is 2 B Hkv S' D elements with S' = min(context, W),
FLOPs 4 B Hq S' D, so intensity is about 2 G flops per element and the op is bandwidth-bound at any batch.
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
    context: int  # tokens of each sequence, the new one included
    window: int = 0  # sliding window in tokens (0: full attention)
    sinks: bool = False  # a learned per-head logit in the softmax denominator

    @property
    def cached(self) -> int:
        """KV slots the cache holds and the query reads: the context, bounded by the window."""
        return min(self.context, self.window) if self.window else self.context


def flops(s: AttentionShape) -> int:
    # QK^T and PV, 2 flops per multiply-add each; softmax's O(S) terms are left out
    return 4 * s.batch * s.heads * s.cached * s.head_dim


def min_bytes(s: AttentionShape, element_bytes: int) -> int:
    # read K and V (2 B Hkv S' D) and q (B Hq D); write out (B Hq D); sinks float32 (Hq)
    kv = 2 * s.batch * s.kv_heads * s.cached * s.head_dim
    return (kv + 2 * s.batch * s.heads * s.head_dim) * element_bytes + (4 * s.heads if s.sinks else 0)


def make_sinks(heads: int, device, g: torch.Generator) -> torch.Tensor:
    """Per-head sink logits, float32, of the order of the scores (gpt-oss's trained sinks are O(1))."""
    return randn((heads,), torch.float32, device, g)


def make_inputs(s: AttentionShape, dtype: torch.dtype, device, seed: int) -> Inputs:
    g = generator(seed, device)
    kv_shape = (s.batch, s.kv_heads, s.cached, s.head_dim)
    return {
        "q": randn((s.batch, s.heads, s.head_dim), dtype, device, g),
        "k_cache": randn(kv_shape, dtype, device, g),
        "v_cache": randn(kv_shape, dtype, device, g),
        "lengths": None,
        "window": s.window,
        "sinks": make_sinks(s.heads, device, g) if s.sinks else None,
    }


def valid_keys(s: int, lengths, window: int, device) -> torch.Tensor | None:
    """[B, S] True for the keys each sequence attends (its first `length` slots, the last `window` of
    them), or None when every slot is attended."""
    if lengths is None and (not window or window >= s):
        return None
    pos = torch.arange(s, device=device)[None, :]
    end = lengths[:, None] if lengths is not None else torch.full((1, 1), s, device=device)
    ok = pos < end
    if window:
        ok = ok & (pos >= end - window)
    return ok


def softmax_with_sinks(scores: torch.Tensor, sinks) -> torch.Tensor:
    """softmax over the last dim with an extra logit sinks[h] per head (dim 1 of scores) in the
    denominator only; sinks None: the plain softmax."""
    if sinks is None:
        return torch.softmax(scores, dim=-1)
    sink = sinks.to(scores.dtype).view(1, -1, *([1] * (scores.dim() - 2))).expand(*scores.shape[:-1], 1)
    return torch.softmax(torch.cat([scores, sink], dim=-1), dim=-1)[..., :-1]


def reference(q, k_cache, v_cache, lengths=None, window=0, sinks=None, **_) -> tuple:
    b, hq, d = q.shape
    hkv, s = k_cache.shape[1], k_cache.shape[2]
    scores = torch.einsum("bhd,bhsd->bhs", as_float64(q),
                          as_float64(k_cache).repeat_interleave(hq // hkv, dim=1)) / math.sqrt(d)
    ok = valid_keys(s, lengths, window, q.device)
    if ok is not None:
        scores = scores.masked_fill(~ok[:, None, :], float("-inf"))
    p = softmax_with_sinks(scores, None if sinks is None else as_float64(sinks))
    out = torch.einsum("bhs,bhsd->bhd", p, as_float64(v_cache).repeat_interleave(hq // hkv, dim=1))
    return (out,)


def _eager_with_sinks(qg, k, v, mask, sinks, scale):
    """Scores, softmax with the sink column in float32, P V: as transformers' eager gpt-oss attention,
    with the G query heads of a KV head folded so K/V are read once. qg [B, Hkv, G, D]."""
    scores = torch.matmul(qg, k.transpose(-1, -2)).float() * scale  # [B, Hkv, G, S]
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    b, hkv, g = qg.shape[:3]
    sink = sinks.float().view(1, hkv, g, 1).expand(b, hkv, g, 1)
    p = torch.softmax(torch.cat([scores, sink], dim=-1), dim=-1)[..., :-1]
    return torch.matmul(p.to(v.dtype), v)


def torch_sdpa(q, k_cache, v_cache, lengths=None, window=0, sinks=None, **_) -> torch.Tensor:
    """SDPA with the G query heads of a KV head folded into its query length, so K/V are read once. A
    window over a full cache without `lengths` reads the last W slots as a view; with sinks (no SDPA
    argument for them) the eager form of transformers' gpt-oss attention."""
    if q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16) and not window and sinks is None:
        # whichever of SDPA and the cache widened to fp32 per sequence measured faster (kernels/cpu_attention.py)
        from kernels.cpu_attention import cpu_attention

        return cpu_attention(q, k_cache, v_cache, lengths, reference)
    b, hq, d = q.shape
    hkv, s = k_cache.shape[1], k_cache.shape[2]
    qg = q.view(b, hkv, hq // hkv, d)  # [B, Hkv, G, D]
    if window and lengths is None and s > window:
        k_cache, v_cache, s = k_cache[:, :, s - window:], v_cache[:, :, s - window:], window
    ok = valid_keys(s, lengths, window, q.device)
    mask = None if ok is None else ok[:, None, None, :]  # [B, 1, 1, S]
    if sinks is not None:
        out = _eager_with_sinks(qg, k_cache, v_cache, mask, sinks, 1.0 / math.sqrt(d))
    else:
        out = F.scaled_dot_product_attention(qg, k_cache, v_cache, attn_mask=mask)
    return out.reshape(b, hq, d)

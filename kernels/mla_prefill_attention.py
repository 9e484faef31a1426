"""MLA prefill attention (DeepSeek-V2/V3) with K and V decompressed per chunk, as vLLM and SGLang run
prefill: a chunk of T tokens continuing a latent cache of P tokens. kv_b_proj (a GEMM over the S = P + T
cached latents, counted as its own op) turns the latents into per-head k_nope and v; the rope key k_pe is
the cache's own column block, shared by all heads (never repeated in memory here).

q [B, H, T, Dn + Dr] (q_nope then the rotated q_pe; any strides, e.g. a view of the token-major q_b_proj
output); kv [B, S, H, Dn + Dv] (the kv_b_proj output: k_nope then v per head); k_pe [B, S, Dr] (a view of
the latent cache); chunk query i sees keys 0 .. prefix + i:
    out[b, h, i] = softmax_j((q_nope . k_nope_j + q_pe . k_pe_j) scale) v_j        [B, H, T, Dv]
scale as kernels/mla_attention.py (1 / sqrt(Dn + Dr), times DeepSeek's YaRN mscale^2 where it applies).
FLOPs 2 B H pairs (Dn + Dr + Dv) over the causal pairs (kernels/prefill_attention.attended_pairs); bytes q and
out once, kv (B S H (Dn + Dv)) and k_pe (B S Dr) once. At T in the thousands the op is compute-bound.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kernels.dtypes import generator, randn
from kernels.op import Inputs, as_float64
from kernels.prefill_attention import attended_pairs, causal_mask


@dataclass(frozen=True)
class MlaPrefillShape:
    batch: int
    heads: int
    chunk: int
    prefix: int = 0
    qk_nope_head_dim: int = 128
    qk_rope_head_dim: int = 64
    v_head_dim: int = 128
    softmax_scale: float = 0.0  # 0: 1 / sqrt(qk_nope_head_dim + qk_rope_head_dim)

    @property
    def keys(self) -> int:
        return self.prefix + self.chunk

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def scale(self) -> float:
        return self.softmax_scale or self.qk_head_dim ** -0.5


def flops(s: MlaPrefillShape) -> int:
    return 2 * s.batch * s.heads * attended_pairs(s.chunk, s.prefix) * (s.qk_head_dim + s.v_head_dim)


def min_bytes(s: MlaPrefillShape, element_bytes: int) -> int:
    q_out = s.batch * s.heads * s.chunk * (s.qk_head_dim + s.v_head_dim)
    kv = s.batch * s.keys * (s.heads * (s.qk_nope_head_dim + s.v_head_dim) + s.qk_rope_head_dim)
    return (q_out + kv) * element_bytes


def make_inputs(s: MlaPrefillShape, dtype: torch.dtype, device, seed: int) -> Inputs:
    g = generator(seed, device)
    q = randn((s.batch, s.chunk, s.heads, s.qk_head_dim), dtype, device, g)  # token-major, as projected
    return {
        "q": q.transpose(1, 2),
        "kv": randn((s.batch, s.keys, s.heads, s.qk_nope_head_dim + s.v_head_dim), dtype, device, g),
        "k_pe": randn((s.batch, s.keys, s.qk_rope_head_dim), dtype, device, g),
        "prefix": s.prefix,
        "scale": s.scale,
    }


def reference(q, kv, k_pe, prefix: int, scale: float, **_) -> tuple:
    t, dn = q.shape[2], q.shape[3] - k_pe.shape[2]
    q64, kv64 = as_float64(q), as_float64(kv)
    scores = (torch.einsum("bhtd,bshd->bhts", q64[..., :dn], kv64[..., :dn])
              + torch.einsum("bhtd,bsd->bhts", q64[..., dn:], as_float64(k_pe))) * scale
    scores = scores.masked_fill(~causal_mask(t, prefix, q.device), float("-inf"))
    return (torch.einsum("bhts,bshd->bhtd", torch.softmax(scores, dim=-1), kv64[..., dn:]),)


def torch_mla_prefill(q, kv, k_pe, prefix: int, scale: float, **_) -> torch.Tensor:
    """SDPA on the materialised key [k_nope, k_pe repeated per head] (what transformers and vLLM's
    flash-attention path build) and the v columns of kv; causal aligned to the end of the keys."""
    b, h, t, dqk = q.shape
    dn = dqk - k_pe.shape[2]
    s = kv.shape[1]
    k = torch.cat([kv[..., :dn], k_pe[:, :, None, :].expand(b, s, h, -1)], dim=-1).transpose(1, 2)
    v = kv[..., dn:].transpose(1, 2)
    if prefix == 0:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(t, prefix, q.device), scale=scale)

"""MLA decode attention (DeepSeek-V2/V3 multi-head latent attention) over the latent cache, with the key
up-projection W_UK absorbed into the query and the value up-projection W_UV into the output, as FlashMLA,
vLLM and SGLang run decode (DeepSeek-V2 paper, arXiv:2405.04434, section 2.1.3).

The cache holds per token c = [c_kv (kv_lora_rank R), k_pe (qk_rope_head_dim P)]: the normalised latent
and the rotated shared rope key. With q_lat[h] = q_nope[h] W_UK[h] (kernels/head_gemm.py) every head's key
is c itself and its value c_kv, so the op is multi-query attention with key width R + P, value width R:
    t[b, h, s] = (q_lat[b, h] . c_kv[b, s] + q_pe[b, h] . k_pe[b, s]) * scale
    o_lat[b, h] = softmax_s(t[b, h]) c_kv[b, s]          (then o[h] = o_lat[h] W_UV[h]^T, head_gemm)
scale = 1 / sqrt(qk_nope_head_dim + qk_rope_head_dim), times DeepSeek's YaRN mscale^2 when its rope scaling
says so (kernels/rope_scaling.py softmax_scale), exactly transformers' DeepseekV3Attention.scaling.
q_lat [B, H, R], q_pe [B, H, P]; cache [B, S, R + P]; lengths [B] or None; returns o_lat [B, H, R].

Work and traffic: FLOPs 2 B H S (R + P + R) (DeepSeek-V3, R 512, P 64: 2176 a head and token). The latent is
read once for all heads: B S (R + P) elements, plus q (B H (R + P)) and o_lat (B H R). Intensity is about
2 H (2 R + P) / (R + P) = 3.8 H flops per element: with DeepSeek-V3's 128 heads on one GPU ~240 flop/byte in
bf16, near an H100's ridge (~300), so MLA decode is compute-bound there, unlike GQA decode; with 16 heads a
GPU (tensor parallel 8) it is bandwidth-bound.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kernels.attention import valid_keys
from kernels.dtypes import generator, randn
from kernels.op import Inputs, as_float64


@dataclass(frozen=True)
class MlaDecodeShape:
    batch: int
    heads: int
    context: int  # tokens in the latent cache, the new one included
    kv_lora_rank: int = 512
    qk_rope_head_dim: int = 64
    qk_nope_head_dim: int = 128
    softmax_scale: float = 0.0  # 0: 1 / sqrt(qk_nope_head_dim + qk_rope_head_dim)

    @property
    def scale(self) -> float:
        return self.softmax_scale or (self.qk_nope_head_dim + self.qk_rope_head_dim) ** -0.5

    @property
    def width(self) -> int:
        return self.kv_lora_rank + self.qk_rope_head_dim


def flops(s: MlaDecodeShape) -> int:
    # scores over R + P, output over R; 2 flops a multiply-add
    return 2 * s.batch * s.heads * s.context * (s.width + s.kv_lora_rank)


def min_bytes(s: MlaDecodeShape, element_bytes: int) -> int:
    # the latent cache once, q (R + P a head) and o_lat (R a head)
    latent = s.batch * s.context * s.width
    return (latent + s.batch * s.heads * (s.width + s.kv_lora_rank)) * element_bytes


def make_inputs(s: MlaDecodeShape, dtype: torch.dtype, device, seed: int) -> Inputs:
    g = generator(seed, device)
    return {
        "q_lat": randn((s.batch, s.heads, s.kv_lora_rank), dtype, device, g),
        "q_pe": randn((s.batch, s.heads, s.qk_rope_head_dim), dtype, device, g),
        "cache": randn((s.batch, s.context, s.width), dtype, device, g),
        "lengths": None,
        "scale": s.scale,
    }


def reference(q_lat, q_pe, cache, scale, lengths=None, **_) -> tuple:
    r = q_lat.shape[-1]
    c = as_float64(cache)
    scores = (torch.einsum("bhr,bsr->bhs", as_float64(q_lat), c[..., :r])
              + torch.einsum("bhp,bsp->bhs", as_float64(q_pe), c[..., r:])) * scale
    ok = valid_keys(c.shape[1], lengths, 0, q_lat.device)
    if ok is not None:
        scores = scores.masked_fill(~ok[:, None, :], float("-inf"))
    return (torch.einsum("bhs,bsr->bhr", torch.softmax(scores, dim=-1), c[..., :r]),)


def torch_mla_decode(q_lat, q_pe, cache, scale, lengths=None, **_) -> torch.Tensor:
    """SDPA as multi-query attention: the heads folded into the query length of one KV head, the latent
    cache as the key [B, 1, S, R + P] and its first R columns as the value, so it is read once."""
    b, h, r = q_lat.shape
    q = torch.cat([q_lat, q_pe], dim=-1).unsqueeze(1)  # [B, 1, H, R + P]
    ok = valid_keys(cache.shape[1], lengths, 0, q_lat.device)
    mask = None if ok is None else ok[:, None, None, :]
    out = F.scaled_dot_product_attention(q, cache.unsqueeze(1), cache[..., :r].unsqueeze(1), attn_mask=mask,
                                         scale=scale)
    return out.view(b, h, r)

"""q/k norm (Qwen3, also Gemma3, OLMo2-style per head): RMSNorm over head_dim of every query and key head,
after the qkv projection and before RoPE, one weight [D] for all query heads and one for all key heads.

q [B, Hq, D], k [B, Hkv, D] (views of the fused qkv output); w_q, w_k [D]. Returns (q', k') new tensors.
One pass: read and write B (Hq + Hkv) D elements and the two weights; 4 FLOPs an element. Bandwidth-bound
and tiny at decode (Qwen3-8B, batch 1: 12 KB), so it costs a launch; engines fuse it with RoPE.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.dtypes import generator, randn
from kernels.op import Inputs
from kernels.rmsnorm import norm_weight, rms64, rms_torch


@dataclass(frozen=True)
class QkNormShape:
    batch: int  # token rows (decode: sequences; prefill: batch x chunk)
    heads: int
    kv_heads: int
    head_dim: int
    eps: float = 1e-6


def flops(s: QkNormShape) -> int:
    return 4 * s.batch * (s.heads + s.kv_heads) * s.head_dim


def min_bytes(s: QkNormShape, element_bytes: int) -> int:
    return (2 * s.batch * (s.heads + s.kv_heads) * s.head_dim + 2 * s.head_dim) * element_bytes


def make_inputs(s: QkNormShape, dtype: torch.dtype, device, seed: int) -> Inputs:
    g = generator(seed, device)
    return {
        "q": randn((s.batch, s.heads, s.head_dim), dtype, device, g),
        "k": randn((s.batch, s.kv_heads, s.head_dim), dtype, device, g),
        "w_q": norm_weight(s.head_dim, dtype, device, g),
        "w_k": norm_weight(s.head_dim, dtype, device, g),
        "eps": s.eps,
    }


def reference(q, k, w_q, w_k, eps, **_) -> tuple:
    return (rms64(q, w_q, eps), rms64(k, w_k, eps))


def torch_qk_norm(q, k, w_q, w_k, eps, **_) -> tuple:
    """Eager PyTorch as transformers' Qwen3RMSNorm on each head."""
    return (rms_torch(q, w_q, eps), rms_torch(k, w_k, eps))

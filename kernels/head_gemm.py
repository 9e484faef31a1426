"""A GEMM per attention head (batched over heads): y[m, h] = x[m, h] @ W[h]^T, W[h] [N, K] in nn.Linear layout.

MLA's absorbed projections at decode (DeepSeek-V2 section 2.1.3; FlashMLA, vLLM and SGLang run them so):
- q absorb, x = q_nope [M, H, qk_nope_head_dim], W[h] = W_UK[h]^T, so y = q_lat [M, H, kv_lora_rank]: the
  query is moved into the latent space, where the cached latent itself serves as every head's key;
- out absorb, x = o_lat [M, H, kv_lora_rank], W[h] = W_UV[h] [v_head_dim, kv_lora_rank], y [M, H, v_head_dim].
Both W_UK and W_UV are views of kv_b_proj.weight [H (nope + v), kv_lora] (no copy: any strides).
x and y are token-major [M, H, *] views (the layout of the projection feeding them). FLOPs 2 H M K N; bytes:
the weights H N K once, x and y once: at decode (M = batch) weight-bound like any decode projection
(DeepSeek-V3: 2 x 128 x 128 x 512 x 2 B = 32 MB a layer), compute-bound from M of a few hundred.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.dtypes import generator, randn
from kernels.op import Inputs, as_float64


@dataclass(frozen=True)
class HeadGemmShape:
    m: int  # token rows
    heads: int
    k: int
    n: int


def flops(s: HeadGemmShape) -> int:
    return 2 * s.m * s.heads * s.k * s.n


def min_bytes(s: HeadGemmShape, element_bytes: int) -> int:
    return (s.heads * s.n * s.k + s.m * s.heads * (s.k + s.n)) * element_bytes


def make_inputs(s: HeadGemmShape, dtype: torch.dtype, device, seed: int) -> Inputs:
    g = generator(seed, device)
    return {"x": randn((s.m, s.heads, s.k), dtype, device, g),
            "w": randn((s.heads, s.n, s.k), dtype, device, g, scale=s.k ** -0.5)}


def reference(x, w, **_) -> tuple:
    return (torch.einsum("mhk,hnk->mhn", as_float64(x), as_float64(w)),)


def torch_head_gemm(x, w, out=None, **_) -> torch.Tensor:
    """torch.bmm over heads (cuBLAS strided-batched GEMM on GPU), written token-major."""
    y = torch.bmm(x.transpose(0, 1), w.transpose(1, 2))  # [H, M, N]
    if out is None:
        return y.transpose(0, 1)
    out.copy_(y.transpose(0, 1))
    return out

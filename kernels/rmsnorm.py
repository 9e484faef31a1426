"""RMSNorm without a residual add, over the last dim of a row: out = x / sqrt(mean(x^2) + eps) * w.

What MLA (DeepSeek-V3) normalises inside its attention: q_a_layernorm over the q_lora_rank columns of
the q down-projection, kv_a_layernorm over the kv_lora_rank latent columns of kv_a_proj_with_mqa (a
strided view: the row also holds the rope key). x [R, H] (any row stride); w [H]. One pass: read R H and
w, write R H; 4 FLOPs an element. Bandwidth-bound; at decode a few KB, so launch-bound on a GPU.
Statistics in float32 and the weight multiply after rounding to the input dtype, as transformers'
DeepseekV3RMSNorm / Qwen3RMSNorm do.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.dtypes import generator, randn
from kernels.op import Inputs, as_float64


@dataclass(frozen=True)
class RmsNormShape:
    rows: int
    hidden: int
    eps: float = 1e-6


def flops(s: RmsNormShape) -> int:
    # square and sum (2), scale by rstd and by w (2) per element
    return 4 * s.rows * s.hidden


def min_bytes(s: RmsNormShape, element_bytes: int) -> int:
    return (2 * s.rows * s.hidden + s.hidden) * element_bytes


def norm_weight(hidden: int, dtype, device, g) -> torch.Tensor:
    """Around 1 like a trained norm weight, but never constant so a missed multiply shows."""
    return (1.0 + randn((hidden,), torch.float32, device, g, scale=0.1)).to(dtype)


def make_inputs(s: RmsNormShape, dtype: torch.dtype, device, seed: int) -> Inputs:
    g = generator(seed, device)
    return {"x": randn((s.rows, s.hidden), dtype, device, g), "w": norm_weight(s.hidden, dtype, device, g),
            "eps": s.eps}


def rms64(x, w, eps) -> torch.Tensor:
    x = as_float64(x)
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * as_float64(w)


def reference(x, w, eps, **_) -> tuple:
    return (rms64(x, w, eps),)


def rms_torch(x, w, eps) -> torch.Tensor:
    xf = x.float()
    return w * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def torch_rmsnorm(x, w, eps, **_) -> torch.Tensor:
    """Eager PyTorch as transformers' RMSNorm: statistics in float32, rounded, then times w."""
    return rms_torch(x, w, eps)

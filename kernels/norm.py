"""RMSNorm with the residual add fused in front, as every pre-norm decoder layer uses it.

r = x + residual;  out = r / sqrt(mean(r^2) + eps) * w.   x, residual, out, r: [B, H]; w: [H].
Returns (out, r): r is the updated residual stream. One pass reads x, residual, w and writes out, r.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.dtypes import generator, randn
from kernels.op import Inputs, as_float64


@dataclass(frozen=True)
class NormShape:
    rows: int
    hidden: int
    eps: float = 1e-5


def flops(s: NormShape) -> int:
    # add (1), square and sum (2), scale by rstd and by w (2) per element
    return 5 * s.rows * s.hidden


def min_bytes(s: NormShape, element_bytes: int) -> int:
    # read x, residual (2 BH) and w (H); write out, r (2 BH)
    return (4 * s.rows * s.hidden + s.hidden) * element_bytes


def make_inputs(s: NormShape, dtype: torch.dtype, device, seed: int) -> Inputs:
    g = generator(seed, device)
    return {
        "x": randn((s.rows, s.hidden), dtype, device, g),
        "residual": randn((s.rows, s.hidden), dtype, device, g),
        # around 1 like a trained norm weight, but never constant so a missed multiply shows
        "w": (1.0 + randn((s.hidden,), torch.float32, device, g, scale=0.1)).to(dtype),
        "eps": s.eps,
    }


def reference(x, residual, w, eps, **_) -> tuple:
    r = as_float64(x) + as_float64(residual)
    # r is stored in the input dtype by every implementation; the norm is taken of that stored value
    r = r.to(x.dtype).to(torch.float64)
    out = r * torch.rsqrt(r.pow(2).mean(-1, keepdim=True) + eps) * as_float64(w)
    return (out, r)


def torch_rmsnorm_residual(x, residual, w, eps, **_) -> tuple:
    """Eager PyTorch: the add in the input dtype, statistics in float32 (as Hugging Face's LlamaRMSNorm)."""
    r = x + residual
    rf = r.float()
    out = rf * torch.rsqrt(rf.pow(2).mean(-1, keepdim=True) + eps)
    return (out.to(x.dtype) * w, r)

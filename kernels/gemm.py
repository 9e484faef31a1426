"""Decode projections: y = x @ W^T (+ b), x [M, K] with M = batch (small), W [N, K] in nn.Linear layout.

At decode M is 1..256 while K, N are thousands: the weight dominates traffic, so the op is
bandwidth-bound until M approaches peak_flops / bandwidth (about 300 on an H100 in bf16).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kernels.dtypes import generator, randn
from kernels.fp8 import Fp8Weight
from kernels.op import Inputs, as_float64


@dataclass(frozen=True)
class GemmShape:
    m: int
    k: int
    n: int
    bias: bool = False


def flops(s: GemmShape) -> int:
    return 2 * s.m * s.k * s.n + (s.m * s.n if s.bias else 0)


def min_bytes(s: GemmShape, element_bytes: int) -> int:
    # read W (NK) and x (MK) and b (N); write y (MN)
    return (s.n * s.k + s.m * s.k + s.m * s.n + (s.n if s.bias else 0)) * element_bytes


def make_inputs(s: GemmShape, dtype: torch.dtype, device, seed: int) -> Inputs:
    g = generator(seed, device)
    inputs = {
        "x": randn((s.m, s.k), dtype, device, g),
        # 1/sqrt(K) keeps y at unit scale, as a trained projection roughly does
        "w": randn((s.n, s.k), dtype, device, g, scale=s.k**-0.5),
    }
    inputs["b"] = randn((s.n,), dtype, device, g) if s.bias else None
    return inputs


def reference(x, w, b=None, **_) -> tuple:
    y = as_float64(x) @ as_float64(w).T
    if b is not None:
        y = y + as_float64(b)
    return (y,)


def torch_linear(x, w, b=None, **_) -> torch.Tensor:
    """cuBLAS through F.linear on GPU; on a CPU, the library path that measured fastest for this shape
    on this machine (kernels/cpu_gemm.py: F.linear, row blocks through bmm, oneDNN with a packed weight).
    W held in FP8 (an Fp8Weight, LayerDims(weights="fp8")): x quantized per step, torch._scaled_mm."""
    if isinstance(w, Fp8Weight):
        from kernels.fp8 import linear_torch

        return linear_torch(x, w, b)
    if x.device.type == "cpu":
        from kernels.cpu_gemm import cpu_linear

        return cpu_linear(x, w, b)
    return F.linear(x, w, b)

"""SwiGLU on the fused gate/up projection output: out = silu(gate) * up.

gate_up [B, 2F] holds gate in its first F columns and up in the last F (the fused projection's order).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kernels.dtypes import generator, randn
from kernels.op import Inputs, as_float64


@dataclass(frozen=True)
class SwigluShape:
    rows: int
    ffn: int


def flops(s: SwigluShape) -> int:
    # sigmoid as exp, add, divide (3), then two multiplies (2) per output element
    return 5 * s.rows * s.ffn


def min_bytes(s: SwigluShape, element_bytes: int) -> int:
    return 3 * s.rows * s.ffn * element_bytes  # read gate, up; write out


def make_inputs(s: SwigluShape, dtype: torch.dtype, device, seed: int) -> Inputs:
    g = generator(seed, device)
    return {"gate_up": randn((s.rows, 2 * s.ffn), dtype, device, g, scale=2.0)}


def reference(gate_up, **_) -> tuple:
    gu = as_float64(gate_up)
    f = gu.shape[-1] // 2
    gate, up = gu[:, :f], gu[:, f:]
    return (gate * torch.sigmoid(gate) * up,)


def torch_swiglu(gate_up, **_) -> torch.Tensor:
    f = gate_up.shape[-1] // 2
    return F.silu(gate_up[:, :f]) * gate_up[:, f:]

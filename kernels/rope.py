"""Rotary position embedding on the new token's q and k (the half-split layout of Hugging Face Llama).

For each head vector x [D] with halves x1 = x[:D/2], x2 = x[D/2:] and angles theta_i * pos:
out = [x1 cos - x2 sin, x2 cos + x1 sin]. q [B, Hq, D], k [B, Hkv, D]; cos, sin [B, D/2] float32,
already gathered at each sequence's position (real engines gather from a table; counted as read).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.dtypes import generator, randn
from kernels.op import Inputs, as_float64


@dataclass(frozen=True)
class RopeShape:
    batch: int
    heads: int
    kv_heads: int
    head_dim: int
    theta: float = 10000.0


def flops(s: RopeShape) -> int:
    # per rotated pair: 4 multiplies and 2 adds -> 3 per element
    return 3 * s.batch * (s.heads + s.kv_heads) * s.head_dim


def min_bytes(s: RopeShape, element_bytes: int) -> int:
    qk = s.batch * (s.heads + s.kv_heads) * s.head_dim
    cos_sin = 2 * s.batch * (s.head_dim // 2) * 4  # float32 tables
    return 2 * qk * element_bytes + cos_sin  # read q, k; write q, k


def inv_freq(head_dim: int, theta: float, device=None) -> torch.Tensor:
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float64) / head_dim))


def cos_sin(positions: torch.Tensor, head_dim: int, theta: float) -> tuple:
    """cos, sin [B, D/2] float32 at each sequence's position (computed in float64, then rounded)."""
    angles = positions.to(torch.float64)[:, None] * inv_freq(head_dim, theta, positions.device)[None, :]
    return angles.cos().float(), angles.sin().float()


def make_inputs(s: RopeShape, dtype: torch.dtype, device, seed: int, max_position: int = 4096) -> Inputs:
    g = generator(seed, device)
    positions = torch.randint(0, max_position, (s.batch,), generator=g, device=device)
    cos, sin = cos_sin(positions, s.head_dim, s.theta)
    return {
        "q": randn((s.batch, s.heads, s.head_dim), dtype, device, g),
        "k": randn((s.batch, s.kv_heads, s.head_dim), dtype, device, g),
        "cos": cos,
        "sin": sin,
    }


def _rotate64(x, cos, sin):
    half = x.shape[-1] // 2
    x = as_float64(x)
    c, s = as_float64(cos)[:, None, :], as_float64(sin)[:, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)


def reference(q, k, cos, sin, **_) -> tuple:
    return (_rotate64(q, cos, sin), _rotate64(k, cos, sin))


def _rotate(x, cos, sin):
    half = x.shape[-1] // 2
    c, s = cos[:, None, :], sin[:, None, :]
    xf = x.float()
    x1, x2 = xf[..., :half], xf[..., half:]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1).to(x.dtype)


def torch_rope(q, k, cos, sin, **_) -> tuple:
    """Eager PyTorch, rotation in float32 then rounded to the input dtype."""
    return (_rotate(q, cos, sin), _rotate(k, cos, sin))

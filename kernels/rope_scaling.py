"""RoPE frequency scaling (YaRN) and the softmax scale that goes with it, as Hugging Face transformers
computes them for gpt-oss and DeepSeek-V3 (transformers/modeling_rope_utils.py `_compute_yarn_parameters`,
models/deepseek_v3/modeling_deepseek_v3.py `yarn_apply_mscale`).

YaRN (Peng et al. 2023, arXiv:2309.00071) blends, per frequency pair i of a rotary dim `dim`:
  inv_freq_i = interp_i (1 - e_i) + extrap_i e_i,   extrap_i = theta^(-2i/dim),  interp_i = extrap_i / factor
with e_i = 1 - clamp((i - low) / (high - low), 0, 1) and (low, high) the correction range of beta_fast,
beta_slow rotations over original_max_position_embeddings; cos and sin are multiplied by the attention
factor (given, else mscale(factor, mscale) / mscale(factor, mscale_all_dim), else mscale(factor)).
DeepSeek-V3 also multiplies its softmax scale 1/sqrt(qk_head_dim) by mscale(factor, mscale_all_dim)^2.
The rotation's cost is the same with or without scaling: only the tables differ.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RopeScaling:
    """The `rope_scaling` / `rope_parameters` fields that change the computation ("default" or "yarn")."""

    rope_type: str = "default"
    factor: float = 1.0
    original_max_position_embeddings: int = 4096
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    mscale: float | None = None
    mscale_all_dim: float | None = None
    attention_factor: float | None = None
    truncate: bool = True

    def __post_init__(self):
        if self.rope_type not in ("default", "yarn"):
            raise ValueError(f"rope_type {self.rope_type!r} is not modelled (default, yarn)")


def yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def attention_factor(s: RopeScaling | None) -> float:
    """What cos and sin are multiplied by."""
    if s is None or s.rope_type == "default":
        return 1.0
    if s.attention_factor is not None:
        return float(s.attention_factor)
    if s.mscale and s.mscale_all_dim:
        return yarn_mscale(s.factor, s.mscale) / yarn_mscale(s.factor, s.mscale_all_dim)
    return yarn_mscale(s.factor)


def softmax_scale(qk_head_dim: int, s: RopeScaling | None, deepseek_mscale: bool = False) -> float:
    """1/sqrt(qk_head_dim), times mscale(factor, mscale_all_dim)^2 for DeepSeek-V3 under YaRN."""
    scale = qk_head_dim ** -0.5
    if deepseek_mscale and s is not None and s.rope_type != "default" and s.mscale_all_dim:
        m = yarn_mscale(s.factor, s.mscale_all_dim)
        scale *= m * m
    return scale


def inv_freq(dim: int, theta: float, s: RopeScaling | None = None, device=None) -> torch.Tensor:
    """[dim / 2] float64 inverse frequencies."""
    extrap = 1.0 / (theta ** (torch.arange(0, dim, 2, device=device, dtype=torch.float64) / dim))
    if s is None or s.rope_type == "default":
        return extrap

    def correction_dim(rotations: float) -> float:
        return dim * math.log(s.original_max_position_embeddings / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low, high = correction_dim(s.beta_fast), correction_dim(s.beta_slow)
    if s.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # as transformers does: avoids a zero-width ramp
    ramp = ((torch.arange(dim // 2, device=device, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
    extrap_weight = 1.0 - ramp
    return extrap / s.factor * (1.0 - extrap_weight) + extrap * extrap_weight


def cos_sin(positions: torch.Tensor, dim: int, theta: float, s: RopeScaling | None = None) -> tuple:
    """cos, sin [N, dim / 2] float32 at each position, the attention factor folded in (float64, then rounded)."""
    angles = positions.to(torch.float64)[:, None] * inv_freq(dim, theta, s, positions.device)[None, :]
    f = attention_factor(s)
    return (angles.cos() * f).float(), (angles.sin() * f).float()

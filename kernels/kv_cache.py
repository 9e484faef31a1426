"""KV-cache append: write the new token's k and v into each sequence's cache at its position.

k, v [B, Hkv, D]; k_cache, v_cache [B, Hkv, S, D]; positions [B] (int64). No FLOPs: pure traffic,
read 2 B Hkv D elements and write as many.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.dtypes import generator, randn
from kernels.op import Inputs, as_float64


@dataclass(frozen=True)
class AppendShape:
    batch: int
    kv_heads: int
    head_dim: int
    context: int


def flops(s: AppendShape) -> int:
    return 0


def min_bytes(s: AppendShape, element_bytes: int) -> int:
    return 4 * s.batch * s.kv_heads * s.head_dim * element_bytes + s.batch * 8  # + positions (int64)


def make_inputs(s: AppendShape, dtype: torch.dtype, device, seed: int) -> Inputs:
    g = generator(seed, device)
    cache_shape = (s.batch, s.kv_heads, s.context, s.head_dim)
    return {
        "k": randn((s.batch, s.kv_heads, s.head_dim), dtype, device, g),
        "v": randn((s.batch, s.kv_heads, s.head_dim), dtype, device, g),
        "k_cache": randn(cache_shape, dtype, device, g),
        "v_cache": randn(cache_shape, dtype, device, g),
        "positions": torch.randint(0, s.context, (s.batch,), generator=g, device=device),
    }


def poison(inputs: Inputs) -> None:
    """NaN in the slots the op must write, so a slot it skips fails the check."""
    rows = torch.arange(inputs["positions"].shape[0], device=inputs["positions"].device)
    for name in ("k_cache", "v_cache"):
        inputs[name][rows, :, inputs["positions"]] = float("nan")


def written_slots(inputs: Inputs, _result=None) -> tuple:
    rows = torch.arange(inputs["positions"].shape[0], device=inputs["positions"].device)
    pos = inputs["positions"]
    return (inputs["k_cache"][rows, :, pos], inputs["v_cache"][rows, :, pos])


def reference(k, v, **_) -> tuple:
    return (as_float64(k), as_float64(v))


def torch_append(k, v, k_cache, v_cache, positions, **_) -> None:
    """Advanced-index store: cache[b, :, positions[b]] = new[b]."""
    rows = torch.arange(k.shape[0], device=k.device)
    k_cache[rows, :, positions] = k
    v_cache[rows, :, positions] = v

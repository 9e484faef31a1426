"""KV-cache write of a prompt chunk: the chunk's T keys and values go into each sequence's cache at
positions start .. start + T - 1.

k, v [B, T, Hkv, D] (the rows the QKV projection produced, token-major); k_cache, v_cache [B, Hkv, S, D].
No FLOPs: read 2 B T Hkv D elements, write as many. Both backends use a strided tensor copy (one library
copy kernel per tensor): a bespoke kernel would move the same bytes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.dtypes import generator, randn
from kernels.op import Inputs, as_float64


@dataclass(frozen=True)
class ChunkWriteShape:
    batch: int
    kv_heads: int
    head_dim: int
    chunk: int
    start: int  # the prefix already cached


def flops(s: ChunkWriteShape) -> int:
    return 0


def min_bytes(s: ChunkWriteShape, element_bytes: int) -> int:
    return 4 * s.batch * s.chunk * s.kv_heads * s.head_dim * element_bytes


def make_inputs(s: ChunkWriteShape, dtype: torch.dtype, device, seed: int) -> Inputs:
    g = generator(seed, device)
    cache_shape = (s.batch, s.kv_heads, s.start + s.chunk, s.head_dim)
    return {
        "k": randn((s.batch, s.chunk, s.kv_heads, s.head_dim), dtype, device, g),
        "v": randn((s.batch, s.chunk, s.kv_heads, s.head_dim), dtype, device, g),
        "k_cache": randn(cache_shape, dtype, device, g),
        "v_cache": randn(cache_shape, dtype, device, g),
        "start": s.start,
    }


def torch_write_chunk(k, v, k_cache, v_cache, start: int, **_) -> None:
    t = k.shape[1]
    k_cache[:, :, start: start + t].copy_(k.transpose(1, 2))
    v_cache[:, :, start: start + t].copy_(v.transpose(1, 2))


def poison(inputs: Inputs) -> None:
    """NaN in the slots the write must fill, so a slot it skips fails the check."""
    t, start = inputs["k"].shape[1], inputs["start"]
    for name in ("k_cache", "v_cache"):
        inputs[name][:, :, start: start + t] = float("nan")


def written_slots(inputs: Inputs, _result=None) -> tuple:
    t, start = inputs["k"].shape[1], inputs["start"]
    return (inputs["k_cache"][:, :, start: start + t], inputs["v_cache"][:, :, start: start + t])


def reference(k, v, **_) -> tuple:
    return (as_float64(k).transpose(1, 2), as_float64(v).transpose(1, 2))

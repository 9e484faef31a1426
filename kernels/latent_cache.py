"""MLA's cache append: the new token's normalised latent c_kv [B, kv_lora_rank] and its rotated rope key
k_pe [B, qk_rope_head_dim] written side by side into the latent cache [B, S, kv_lora_rank + qk_rope_head_dim]
at each sequence's position (vLLM's concat_and_cache_mla). The cache holds (kv_lora_rank + qk_rope_head_dim)
elements per token per layer (DeepSeek-V3: 576, 1152 bytes in bf16), shared by all heads, instead of
2 H D for GQA. No FLOPs: read and write B (kv_lora_rank + qk_rope_head_dim) elements, plus the positions.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.dtypes import generator, randn
from kernels.op import Inputs, as_float64


@dataclass(frozen=True)
class LatentAppendShape:
    batch: int
    context: int
    kv_lora_rank: int = 512
    qk_rope_head_dim: int = 64

    @property
    def width(self) -> int:
        return self.kv_lora_rank + self.qk_rope_head_dim


def flops(s: LatentAppendShape) -> int:
    return 0


def min_bytes(s: LatentAppendShape, element_bytes: int) -> int:
    return 2 * s.batch * s.width * element_bytes + 8 * s.batch


def make_inputs(s: LatentAppendShape, dtype: torch.dtype, device, seed: int) -> Inputs:
    g = generator(seed, device)
    return {
        "c_kv": randn((s.batch, s.kv_lora_rank), dtype, device, g),
        "k_pe": randn((s.batch, s.qk_rope_head_dim), dtype, device, g),
        "cache": randn((s.batch, s.context, s.width), dtype, device, g),
        "positions": torch.randperm(s.context, generator=g, device=device)[: s.batch] if s.batch <= s.context
        else torch.randint(0, s.context, (s.batch,), generator=g, device=device),
    }


def reference(c_kv, k_pe, cache, positions, **_) -> tuple:
    rows = torch.arange(c_kv.shape[0], device=c_kv.device)
    out = as_float64(cache).clone()
    out[rows, positions] = torch.cat([as_float64(c_kv), as_float64(k_pe)], dim=-1)
    return (out[rows, positions],)


def written_slots(inputs: Inputs, _result) -> tuple:
    """The slots the append wrote, in reference's order (the op works in place)."""
    rows = torch.arange(inputs["c_kv"].shape[0], device=inputs["c_kv"].device)
    return (inputs["cache"][rows, inputs["positions"]],)


def poison(inputs: Inputs) -> None:
    rows = torch.arange(inputs["c_kv"].shape[0], device=inputs["c_kv"].device)
    inputs["cache"][rows, inputs["positions"]] = float("nan")


def torch_latent_append(c_kv, k_pe, cache, positions, **_) -> None:
    """Two indexed writes (PyTorch's index_put), in place."""
    rows = torch.arange(c_kv.shape[0], device=c_kv.device)
    r = c_kv.shape[1]
    cache[rows, positions, :r] = c_kv
    cache[rows, positions, r:] = k_pe.reshape(k_pe.shape[0], -1)

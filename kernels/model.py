"""A whole decode step of a Llama-style model composed from the ops: embedding gather, the layers,
final norm, LM head, with the implementation chosen per op kind (as in kernels.layer).

Weights: {"embed": [V, H], "layers": [layer weights dict, ...], "final_norm": [H], "lm_head": [V, H]}.
Caches: one (k_cache, v_cache) pair per layer, [B, Hkv, S, D]; every sequence's new token goes to
positions[b]. Used by the Hugging Face parity test; the harness times layers and ops, not this.
"""
from __future__ import annotations

import torch

from kernels import rope
from kernels.backends import implementation
from kernels.layer import LayerDims, layer_forward


def model_decode_step(d: LayerDims, backends: dict, weights: dict, tokens: torch.Tensor, kv_caches: list,
                      positions: torch.Tensor) -> torch.Tensor:
    """Next-token logits [B, V] for `tokens` [B]; writes the new K/V into `kv_caches` in place."""
    if len(kv_caches) != len(weights["layers"]):
        raise ValueError(f"{len(kv_caches)} cache pairs for {len(weights['layers'])} layers")
    cos, sin = rope.cos_sin(positions, d.head_dim, d.rope_theta)
    x = weights["embed"][tokens]  # [B, H]: a gather of B rows, negligible traffic
    # the first layer's residual stream is the embedding itself: x + 0 (a real zero, not test input)
    residual = torch.zeros_like(x)
    for layer_weights, (k_cache, v_cache) in zip(weights["layers"], kv_caches):
        x, residual = layer_forward(d, backends, layer_weights, x, residual, k_cache, v_cache, positions,
                                    cos, sin)
    final_norm = implementation("norm", backends["norm"])
    h, _ = final_norm(x=x, residual=residual, w=weights["final_norm"], eps=d.norm_eps)
    return implementation("gemm", backends["gemm"])(x=h, w=weights["lm_head"], b=None)

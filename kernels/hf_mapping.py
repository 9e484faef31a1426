"""The one place that maps Hugging Face Llama weights and caches to tokenbench's and back.

Ours fuse projections: qkv = cat(q_proj, k_proj, v_proj) rows, gate_up = cat(gate_proj, up_proj) rows
(both in nn.Linear [out, in] layout, as HF stores them). transformers is a test-only dependency: it is
imported inside functions, never at module import. Works with transformers 4.45+ and 5.x (5.x renamed
the `past_key_values` argument and output to `cache`).
"""
from __future__ import annotations

import inspect

import torch

from kernels.layer import LayerDims

# our layer weight name -> HF parameter names (relative to a decoder layer), concatenated along rows
LAYER_MAP = {
    "attn_norm": ("input_layernorm.weight",),
    "qkv": ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"),
    "qkv_bias": ("self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"),
    "o": ("self_attn.o_proj.weight",),
    "ffn_norm": ("post_attention_layernorm.weight",),
    "gate_up": ("mlp.gate_proj.weight", "mlp.up_proj.weight"),
    "down": ("mlp.down_proj.weight",),
}
# our model weight name -> HF LlamaForCausalLM parameter name
MODEL_MAP = {
    "embed": "model.embed_tokens.weight",
    "final_norm": "model.norm.weight",
    "lm_head": "lm_head.weight",
}


def _row_sizes(name: str, d: LayerDims) -> tuple:
    return {"qkv": (d.q_size, d.kv_size, d.kv_size), "qkv_bias": (d.q_size, d.kv_size, d.kv_size),
            "gate_up": (d.ffn, d.ffn)}.get(name, (None,))


def llama_config(d: LayerDims, layers: int, **overrides):
    """A transformers LlamaConfig with the dims of `d` (eager attention: the plain reference path)."""
    from transformers import LlamaConfig

    cfg = LlamaConfig(
        vocab_size=d.vocab, hidden_size=d.hidden, intermediate_size=d.ffn, num_hidden_layers=layers,
        num_attention_heads=d.heads, num_key_value_heads=d.kv_heads, head_dim=d.head_dim,
        rms_norm_eps=d.norm_eps, rope_theta=d.rope_theta, attention_bias=d.qkv_bias, mlp_bias=False,
        hidden_act="silu", tie_word_embeddings=False, max_position_embeddings=4096, **overrides,
    )
    cfg._attn_implementation = "eager"
    return cfg


def layer_weights_from_hf(state: dict, d: LayerDims, prefix: str = "") -> dict:
    """Our layer weights dict from a decoder layer's state dict (keys under `prefix`)."""
    out = {}
    for ours, names in LAYER_MAP.items():
        keys = [prefix + n for n in names]
        if ours == "qkv_bias" and not d.qkv_bias:
            out[ours] = None
            continue
        out[ours] = torch.cat([state[k] for k in keys], dim=0).detach().clone()
    return out


def layer_weights_to_hf(weights: dict, d: LayerDims, prefix: str = "") -> dict:
    """The inverse: a decoder layer state dict (keys under `prefix`) from our weights."""
    return {prefix + n: p.clone() for n, p in layer_weights_to_hf_views(weights, d).items()}


def model_weights_from_hf(model, d: LayerDims) -> dict:
    """{"embed", "final_norm", "lm_head": tensors; "layers": [our layer weights]} from a LlamaForCausalLM
    (kernels.model.model_forward takes the last three; the embedding gather happens before it)."""
    state = model.state_dict()
    layers = model.config.num_hidden_layers
    weights = {ours: state[hf].detach().clone() for ours, hf in MODEL_MAP.items()}
    weights["layers"] = [layer_weights_from_hf(state, d, f"model.layers.{i}.") for i in range(layers)]
    return weights


def cache_kwarg(fn) -> str:
    """The name HF's forward takes its KV cache under: 'cache' (5.x) or 'past_key_values' (4.x)."""
    return "cache" if "cache" in inspect.signature(fn).parameters else "past_key_values"


def output_cache(output):
    return output.cache if hasattr(output, "cache") else output.past_key_values


def cache_layer_kv(cache, layer: int) -> tuple:
    """(keys, values) [B, Hkv, S, D] held by a DynamicCache for one layer, in either API."""
    if hasattr(cache, "layers"):
        return cache.layers[layer].keys, cache.layers[layer].values
    return cache.key_cache[layer], cache.value_cache[layer]


def layer_weights_to_hf_views(weights: dict, d: LayerDims) -> dict:
    """Like layer_weights_to_hf but views, not copies: HF parameters that share our fused tensors' storage
    (row slices of a contiguous tensor are contiguous), so a benchmark holds the weights once."""
    state = {}
    for ours, names in LAYER_MAP.items():
        if weights.get(ours) is None:
            continue
        sizes = _row_sizes(ours, d)
        parts = torch.split(weights[ours], sizes, dim=0) if sizes[0] is not None else (weights[ours],)
        state.update(zip(names, parts))
    return state

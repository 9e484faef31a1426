"""Hugging Face transformers' attention modules (DeepseekV3Attention, GptOssAttention, Qwen3Attention, and
the Llama family) mapped to the attention blocks of kernels/mla_block.py and kernels/attention_block.py:
dims from a config, weights from a module. transformers is a test-only dependency: configs are read as
attributes, modules as state dicts, and nothing here imports it.

DeepSeek's rope_interleave rotates the pairs (2i, 2i + 1) of q_pe and k_pe and returns them as
[evens, odds]; permuting those rows of q_b_proj (or q_proj) and kv_a_proj_with_mqa into [evens, odds] order
offline makes the plain half-split rotation give the same values in the same layout, so the runtime rope and
the cached k_pe are transformers' own.
"""
from __future__ import annotations

import torch

from kernels.attention_block import AttentionDims
from kernels.mla_block import MlaDims
from kernels.rope_scaling import RopeScaling


def _rope_parameters(cfg) -> dict:
    params = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    return dict(params)


def rope_theta(cfg) -> float:
    return float(_rope_parameters(cfg).get("rope_theta", getattr(cfg, "rope_theta", 10000.0)))


def rope_scaling(cfg) -> RopeScaling | None:
    """The config's YaRN parameters, None for plain RoPE; another rope type is refused (ValueError)."""
    p = _rope_parameters(cfg)
    kind = p.get("rope_type", p.get("type", "default"))
    if kind == "default":
        return None
    factor = p.get("factor")
    original = p.get("original_max_position_embeddings")
    if factor is None:  # transformers: the ratio of the context lengths
        factor = cfg.max_position_embeddings / original
    return RopeScaling(rope_type=kind, factor=float(factor), original_max_position_embeddings=int(original),
                       beta_fast=float(p.get("beta_fast") or 32), beta_slow=float(p.get("beta_slow") or 1),
                       mscale=p.get("mscale"), mscale_all_dim=p.get("mscale_all_dim"),
                       attention_factor=p.get("attention_factor"), truncate=bool(p.get("truncate", True)))


def mla_dims(cfg) -> MlaDims:
    return MlaDims(hidden=cfg.hidden_size, heads=cfg.num_attention_heads, q_lora_rank=cfg.q_lora_rank or 0,
                   kv_lora_rank=cfg.kv_lora_rank, qk_nope_head_dim=cfg.qk_nope_head_dim,
                   qk_rope_head_dim=cfg.qk_rope_head_dim, v_head_dim=cfg.v_head_dim,
                   o_bias=bool(cfg.attention_bias), norm_eps=cfg.rms_norm_eps, rope_theta=rope_theta(cfg),
                   rope_scaling=rope_scaling(cfg))


def attention_dims(cfg, layer_idx: int, qk_norm: bool = False) -> AttentionDims:
    """GQA dims of layer `layer_idx`: its window from layer_types (gpt-oss, Qwen3, Mistral-style configs),
    sinks for gpt-oss, biases from attention_bias (gpt-oss: q/k/v and o; Qwen2 sets its qkv bias itself)."""
    layer_types = getattr(cfg, "layer_types", None)
    sliding = layer_types is not None and layer_types[layer_idx] == "sliding_attention"
    window = int(cfg.sliding_window) if sliding and getattr(cfg, "sliding_window", None) else 0
    bias = bool(getattr(cfg, "attention_bias", False))
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return AttentionDims(hidden=cfg.hidden_size, heads=cfg.num_attention_heads, kv_heads=cfg.num_key_value_heads,
                         head_dim=head_dim, qkv_bias=bias, o_bias=bias, qk_norm=qk_norm, window=window,
                         sinks=cfg.model_type == "gpt_oss", norm_eps=cfg.rms_norm_eps, rope_theta=rope_theta(cfg),
                         rope_scaling=rope_scaling(cfg))


def deinterleave(dim: int) -> torch.Tensor:
    """Row order [0, 2, 4, ..., 1, 3, 5, ...] of a rope block of `dim` rows."""
    return torch.cat([torch.arange(0, dim, 2), torch.arange(1, dim, 2)])


def _permute_rope_rows(w: torch.Tensor, blocks: int, block: int, rope_from: int, interleave: bool) -> torch.Tensor:
    """w's rows in `blocks` groups of `block`; in each, rows rope_from.. put in [evens, odds] order."""
    if w is None or not interleave:
        return None if w is None else w.detach().clone()
    g = w.detach().reshape(blocks, block, *w.shape[1:])
    perm = torch.cat([torch.arange(rope_from), rope_from + deinterleave(block - rope_from)]).to(w.device)
    return g[:, perm].reshape(w.shape).clone()


def mla_weights(state: dict, d: MlaDims, interleave: bool, prefix: str = "") -> dict:
    """kernels/mla_block weights from a DeepseekV3Attention state dict (keys under `prefix`)."""
    def get(name):
        t = state.get(prefix + name)
        return None if t is None else t.detach().clone()

    dn, dr, r = d.qk_nope_head_dim, d.qk_rope_head_dim, d.kv_lora_rank
    w = {"kv_a": _permute_rope_rows(state[prefix + "kv_a_proj_with_mqa.weight"], 1, r + dr, r, interleave),
         "kv_a_bias": _permute_rope_rows(state.get(prefix + "kv_a_proj_with_mqa.bias"), 1, r + dr, r, interleave),
         "kv_a_norm": get("kv_a_layernorm.weight"), "kv_b": get("kv_b_proj.weight"),
         "o": get("o_proj.weight"), "o_bias": get("o_proj.bias")}
    if d.q_lora_rank:
        w.update({"q_a": get("q_a_proj.weight"), "q_a_bias": get("q_a_proj.bias"),
                  "q_a_norm": get("q_a_layernorm.weight"),
                  "q_b": _permute_rope_rows(state[prefix + "q_b_proj.weight"], d.heads, dn + dr, dn, interleave)})
    else:
        w["q"] = _permute_rope_rows(state[prefix + "q_proj.weight"], d.heads, dn + dr, dn, interleave)
    return w


def attention_weights(state: dict, d: AttentionDims, prefix: str = "") -> dict:
    """kernels/attention_block weights from a Llama-family / Qwen3 / gpt-oss attention state dict."""
    def cat(kind):
        parts = [state.get(f"{prefix}{p}_proj.{kind}") for p in ("q", "k", "v")]
        return None if parts[0] is None else torch.cat([t.detach() for t in parts], dim=0).clone()

    def get(name):
        t = state.get(prefix + name)
        return None if t is None else t.detach().clone()

    return {"qkv": cat("weight"), "qkv_bias": cat("bias"), "o": get("o_proj.weight"), "o_bias": get("o_proj.bias"),
            "q_norm": get("q_norm.weight"), "k_norm": get("k_norm.weight"), "sinks": get("sinks")}

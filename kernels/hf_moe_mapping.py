"""Hugging Face MoE blocks' weights in kernels/moe_block.py's layout: MixtralSparseMoeBlock,
Qwen3MoeSparseMoeBlock, DeepseekV3MoE and GptOssMLP, as transformers 4.5x-5.x hold them.

Ours: router_w [E, H]; w_gate_up [E, 2F, H] gate rows then up rows; w_down [E, H, F]; biases b_gate_up [E, 2F]
(same order), b_down [E, H]; DeepSeek's shared MLP w_shared_gate_up [2 S Fs, H], w_shared_down [H, S Fs].
transformers' layouts differ by model and version:
  - 5.x Mixtral, Qwen3-MoE, DeepSeek-V3: experts.gate_up_proj [E, 2F, H] (gate first), down_proj [E, H, F];
  - 4.x Mixtral: a list of experts with w1 (gate), w3 (up), w2 (down) Linear layers; 4.x Qwen3-MoE and
    DeepSeek-V3: a list of experts with gate_proj, up_proj, down_proj;
  - gpt-oss: gate_up_proj [E, H, 2F] (input-major) with gate and up INTERLEAVED along the last axis (gate at
    even, up at odd columns), gate_up_proj_bias [E, 2F] interleaved alike, down_proj [E, F, H]; its router is
    `router` (weight and bias), the others' `gate`.
transformers is imported by the caller (tests); nothing here imports it.
"""
from __future__ import annotations

import torch

from kernels.moe_block import GPTOSS_ALPHA, MoeBlockShape
from kernels.moe_router import RouterSpec


def _stack(experts, names) -> torch.Tensor:
    return torch.stack([getattr(e, n).weight for e in experts])


def _routed_experts(ex) -> tuple:
    """(w_gate_up [E, 2F, H], w_down [E, H, F]) from a Mixtral/Qwen3-MoE/DeepSeek-V3 experts module."""
    if hasattr(ex, "gate_up_proj"):  # fused 3-D parameters, gate first
        return ex.gate_up_proj, ex.down_proj
    first = ex[0]
    gate, up, down = ("w1", "w3", "w2") if hasattr(first, "w1") else ("gate_proj", "up_proj", "down_proj")
    return torch.cat([_stack(ex, gate), _stack(ex, up)], 1), _stack(ex, down)


def block_weights(block) -> dict:
    """Our inputs (without x) from one of the four blocks."""
    out = {"router_bias": None, "correction_bias": None, "b_gate_up": None, "b_down": None,
           "w_shared_gate_up": None, "w_shared_down": None}
    if hasattr(block, "router"):  # gpt-oss
        ex = block.experts
        gu = ex.gate_up_proj  # [E, H, 2F] interleaved
        out.update(router_w=block.router.weight, router_bias=block.router.bias,
                   w_gate_up=torch.cat([gu[..., ::2], gu[..., 1::2]], -1).transpose(1, 2),
                   w_down=ex.down_proj.transpose(1, 2),
                   b_gate_up=torch.cat([ex.gate_up_proj_bias[..., ::2], ex.gate_up_proj_bias[..., 1::2]], -1),
                   b_down=ex.down_proj_bias)
    else:
        w_gu, w_d = _routed_experts(block.experts)
        out.update(router_w=block.gate.weight, w_gate_up=w_gu, w_down=w_d)
        if hasattr(block.gate, "e_score_correction_bias"):
            out["correction_bias"] = block.gate.e_score_correction_bias
        shared = getattr(block, "shared_experts", None)
        if shared is not None:
            out.update(w_shared_gate_up=torch.cat([shared.gate_proj.weight, shared.up_proj.weight], 0),
                       w_shared_down=shared.down_proj.weight)
    return {k: (v.detach().contiguous() if v is not None else None) for k, v in out.items()}


def block_shape(config, tokens: int) -> MoeBlockShape:
    """The MoeBlockShape of a Mixtral, Qwen3-MoE, DeepSeek-V3 or gpt-oss config at `tokens`."""
    kind = config.model_type
    h = config.hidden_size
    if kind == "mixtral":
        return MoeBlockShape(tokens, h, config.intermediate_size, config.num_local_experts,
                             config.num_experts_per_tok)
    if kind == "qwen3_moe":
        return MoeBlockShape(tokens, h, config.moe_intermediate_size, config.num_experts,
                             config.num_experts_per_tok, RouterSpec(norm_topk_prob=config.norm_topk_prob))
    if kind == "deepseek_v3":
        router = RouterSpec("deepseek_group_sigmoid", config.norm_topk_prob, config.n_group,
                            config.topk_group, config.routed_scaling_factor)
        return MoeBlockShape(tokens, h, config.moe_intermediate_size, config.n_routed_experts,
                             config.num_experts_per_tok, router, shared=config.n_shared_experts)
    if kind == "gpt_oss":
        if getattr(config, "swiglu_alpha", GPTOSS_ALPHA) != GPTOSS_ALPHA:
            raise ValueError(f"gpt-oss swiglu_alpha {config.swiglu_alpha} is not the modelled 1.702")
        return MoeBlockShape(tokens, h, config.intermediate_size, config.num_local_experts,
                             config.num_experts_per_tok, RouterSpec("gptoss"), expert_bias=True,
                             activation="gptoss_swiglu", limit=config.swiglu_limit)
    raise ValueError(f"no MoE block for model_type {kind!r}")

"""The routers' selection fused in one Triton kernel: from float32 logits [T, E] to each token's top-k expert
ids and weights, for the three router kinds of kernels/moe_router.py.

In PyTorch DeepSeek's group-limited top-k is about a dozen kernels (sigmoid, add, view/topk/sum per group,
topk of groups, scatter, mask, topk, gather, sum, divide, scale), each a launch and a round trip of [T, E]
through memory; here each program holds BLOCK_T tokens' logits in registers and writes only [T, k] ids and
weights. Top-k is k rounds of (max, first index reaching it, mask it out): k and topk_group are small
(<= 8 and <= 4 in the served models). Ties go to the lower expert index (torch.topk leaves tie order
unspecified; the float64 check tolerates no flip, and random logits tie with probability ~0).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

KIND_CODE = {"softmax_topk": 0, "deepseek_group_sigmoid": 1, "gptoss": 2}


@triton.jit
def _argmax_rows(v, offs, N_PAD: tl.constexpr):
    """(max [BT], first column index reaching it [BT]) of each row of v [BT, N_PAD]."""
    m = tl.max(v, axis=1)
    idx = tl.min(tl.where(v == m[:, None], offs[None, :], N_PAD), axis=1)
    return m, idx


@triton.jit
def _router_select_kernel(
    logit_ptr, stride_lt, stride_le,  # [T, E] float32
    bias_ptr,  # [E] float32 correction bias (DeepSeek only)
    ids_ptr, w_ptr, stride_ot,  # [T, K] int64 ids, [T, K] float32 weights (same row stride)
    T, E: tl.constexpr, E_PAD: tl.constexpr, K: tl.constexpr, K_PAD: tl.constexpr,
    KIND: tl.constexpr, NORM: tl.constexpr,
    N_GROUP: tl.constexpr, G_PAD: tl.constexpr, TOPK_GROUP: tl.constexpr, SCALE: tl.constexpr,
    BLOCK_T: tl.constexpr,
):
    offs_t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_e = tl.arange(0, E_PAD)
    mask_t = offs_t < T
    mask_e = offs_e < E
    neg_inf = float("-inf")
    logit = tl.load(logit_ptr + offs_t[:, None] * stride_lt + offs_e[None, :] * stride_le,
                    mask=mask_t[:, None] & mask_e[None, :], other=0.0)
    logit = tl.where(mask_e[None, :], logit, neg_inf)  # padding experts never chosen; padding tokens finite
    if KIND == 1:  # DeepSeek: choose on sigmoid + correction bias, within the topk_group best groups
        score = tl.sigmoid(logit)
        bias = tl.load(bias_ptr + offs_e, mask=mask_e, other=0.0)
        choice = tl.where(mask_e[None, :], score + bias[None, :], neg_inf)
        GS: tl.constexpr = E // N_GROUP
        group_of = offs_e // GS
        offs_g = tl.arange(0, G_PAD)
        group_score = tl.full((BLOCK_T, G_PAD), neg_inf, tl.float32)
        for grp in tl.static_range(N_GROUP):  # each group's top-2 sum
            in_g = (group_of == grp)[None, :]
            v = tl.where(in_g, choice, neg_inf)
            m1, i1 = _argmax_rows(v, offs_e, E_PAD)
            m2 = tl.max(tl.where(offs_e[None, :] == i1[:, None], neg_inf, v), axis=1)
            group_score = tl.where(offs_g[None, :] == grp, (m1 + m2)[:, None], group_score)
        keep = tl.zeros((BLOCK_T, E_PAD), dtype=tl.int1)
        for _ in tl.static_range(TOPK_GROUP):
            _, gi = _argmax_rows(group_score, offs_g, G_PAD)
            keep = keep | (group_of[None, :] == gi[:, None])
            group_score = tl.where(offs_g[None, :] == gi[:, None], neg_inf, group_score)
        choice = tl.where(keep, choice, neg_inf)
    else:  # softmax top-k and gpt-oss: choose on the logits (softmax is monotone)
        choice = logit
        if KIND == 0:
            row_max = tl.max(logit, axis=1)
            denom_all = tl.sum(tl.exp(logit - row_max[:, None]), axis=1)  # exp(-inf) = 0 at padding
    if KIND == 2:
        top = tl.max(logit, axis=1)  # the largest chosen logit, for a stable softmax over the k
    offs_k = tl.arange(0, K_PAD)
    ids = tl.zeros((BLOCK_T, K_PAD), dtype=tl.int64)
    vals = tl.zeros((BLOCK_T, K_PAD), dtype=tl.float32)
    for j in tl.static_range(K):  # ids, and the values the weights are made of, kept in registers
        m, idx = _argmax_rows(choice, offs_e, E_PAD)
        picked = offs_e[None, :] == idx[:, None]
        if KIND == 1:
            val = tl.sum(tl.where(picked, score, 0.0), axis=1)  # the unbiased score
        elif KIND == 0:
            val = tl.exp(m - row_max) / denom_all  # softmax probability over all experts
        else:
            val = tl.exp(m - top)
        ids = tl.where(offs_k[None, :] == j, idx.to(tl.int64)[:, None], ids)
        vals = tl.where(offs_k[None, :] == j, val[:, None], vals)
        choice = tl.where(picked, neg_inf, choice)
    if KIND == 2 or NORM:
        total = tl.sum(vals, axis=1)  # the unused K_PAD columns hold 0
        if KIND == 1:
            total += 1e-20  # as transformers' DeepseekV3TopkRouter
        vals = vals / total[:, None]
    vals = vals * SCALE
    out_mask = mask_t[:, None] & (offs_k < K)[None, :]
    tl.store(ids_ptr + offs_t[:, None] * stride_ot + offs_k[None, :], ids, mask=out_mask)
    tl.store(w_ptr + offs_t[:, None] * stride_ot + offs_k[None, :], vals, mask=out_mask)


def block_t_for(experts_pad: int) -> int:
    """Tokens per program: about 2048 logits held at once (16 a thread at 4 warps), at least 1, at most 16."""
    return max(1, min(16, 2048 // experts_pad))


def triton_select(logit: torch.Tensor, spec, top_k: int, correction_bias=None):
    """(ids [T, k] int64, weights [T, k] float32) from float32 logits [T, E]; `spec` a kernels.moe_router
    RouterSpec (passed in, so this module imports nothing from kernels.moe_router)."""
    if logit.dtype != torch.float32 or logit.dim() != 2:
        raise ValueError(f"router logits must be float32 [T, E], got {logit.dtype} {tuple(logit.shape)}")
    t, e = logit.shape
    deepseek = spec.kind == "deepseek_group_sigmoid"
    if deepseek and (correction_bias is None or correction_bias.shape != (e,)):
        raise ValueError("the DeepSeek router needs its correction bias [E]")
    ids = torch.empty((t, top_k), dtype=torch.int64, device=logit.device)
    w = torch.empty((t, top_k), dtype=torch.float32, device=logit.device)
    e_pad = triton.next_power_of_2(e)
    bt = block_t_for(e_pad)
    bias = correction_bias.float().contiguous() if deepseek else logit  # any pointer when unused
    _router_select_kernel[(triton.cdiv(t, bt),)](
        logit, logit.stride(0), logit.stride(1), bias, ids, w, ids.stride(0),
        t, e, e_pad, top_k, triton.next_power_of_2(top_k), KIND_CODE[spec.kind],
        bool(spec.norm_topk_prob) and spec.kind != "gptoss",
        spec.n_group, triton.next_power_of_2(spec.n_group), spec.topk_group,
        float(spec.routed_scaling_factor),
        BLOCK_T=bt,
    )
    return ids, w

"""The experts of an MoE block in Triton: the grouped expert GEMM (tokens sorted by expert, one program per
(expert, N-tile), each active expert's weights read once per step, as kernels/triton/moe.py) with what the
served models add to it: per-expert gate_up and down biases and gpt-oss's clamped activation (ACT 1) beside
SwiGLU (ACT 0), and the shared experts run through the same two kernels as one expert every token picks.

Kept apart from kernels/triton/moe.py, whose kernels also take low-precision expert weights: these take the
block's biases and activations in the activation dtype; the routing sort (`sort_by_expert`) and the row-block
rule (`block_m_for`) are that module's.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.triton._common import linear_tile
from kernels.triton.moe import block_m_for, sort_by_expert

ACT_CODE = {"swiglu": 0, "gptoss_swiglu": 1}
GPTOSS_ALPHA = 1.702  # the value kernels/moe_block.py uses (passed as a constexpr)


@triton.jit
def _block_gate_up_kernel(
    x_ptr, stride_xm, stride_xk,  # x [T, H]
    w_ptr, stride_we, stride_wn, stride_wk,  # w_gate_up [E, 2F, H], gate rows first
    b_ptr, stride_be,  # b_gate_up [E, 2F] (HAS_BIAS)
    act_ptr, stride_am, stride_an,  # act [T k, F], rows sorted by expert
    tok_ptr, start_ptr, count_ptr,  # per sorted row: token; per expert: first row, row count
    H: tl.constexpr, F: tl.constexpr, max_rows: tl.constexpr,
    HAS_BIAS: tl.constexpr, ACT: tl.constexpr, LIMIT: tl.constexpr, ALPHA: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """act[r, n] = act(x[tok r] Wg[e, n]^T + bg[e, n], x[tok r] Wu[e, n]^T + bu[e, n]), in fp32."""
    e = tl.program_id(0)
    count = tl.load(count_ptr + e)
    start = tl.load(start_ptr + e)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < F
    w_base = w_ptr + e.to(tl.int64) * stride_we
    for m0 in range(0, max_rows, BLOCK_M):  # max_rows = tokens >= any expert's rows
        if m0 < count:  # experts with no (more) rows skip, loading no weights
            offs_m = m0 + tl.arange(0, BLOCK_M)
            mask_m = offs_m < count
            tok = tl.load(tok_ptr + start + offs_m, mask=mask_m, other=0)
            g = linear_tile(x_ptr, tok, mask_m, stride_xm, stride_xk, w_base, offs_n, mask_n, stride_wn,
                            stride_wk, H, BLOCK_M, BLOCK_N, BLOCK_K, False)
            u = linear_tile(x_ptr, tok, mask_m, stride_xm, stride_xk, w_base, offs_n + F, mask_n, stride_wn,
                            stride_wk, H, BLOCK_M, BLOCK_N, BLOCK_K, False)
            if HAS_BIAS:
                b_base = b_ptr + e.to(tl.int64) * stride_be
                g += tl.load(b_base + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
                u += tl.load(b_base + F + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
            if ACT == 1:  # gpt-oss: gate clamped from above, up both ways; (up + 1) gate sigmoid(alpha gate)
                g = tl.minimum(g, LIMIT)
                u = tl.minimum(tl.maximum(u, -LIMIT), LIMIT)
                a = (u + 1.0) * (g * tl.sigmoid(ALPHA * g))
            else:
                a = g * tl.sigmoid(g) * u
            rows = start + offs_m
            tl.store(act_ptr + rows[:, None] * stride_am + offs_n[None, :] * stride_an,
                     a.to(act_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


@triton.jit
def _block_down_kernel(
    act_ptr, stride_am, stride_ak,  # act [T k, F], sorted rows
    w_ptr, stride_we, stride_wn, stride_wk,  # w_down [E, H, F]
    b_ptr, stride_be,  # b_down [E, H] (HAS_BIAS)
    y_ptr, stride_ym, stride_yn,  # y_pair [T k, H] float32, in original pair order
    pair_ptr, p_ptr, start_ptr, count_ptr,  # per sorted row: pair index; per pair: routing weight
    H: tl.constexpr, F: tl.constexpr, max_rows: tl.constexpr, HAS_BIAS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """y_pair[pair r, n] = p[pair r] * (act[r] Wd[e, n]^T + bd[e, n])."""
    e = tl.program_id(0)
    count = tl.load(count_ptr + e)
    start = tl.load(start_ptr + e)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < H
    w_base = w_ptr + e.to(tl.int64) * stride_we
    for m0 in range(0, max_rows, BLOCK_M):
        if m0 < count:
            offs_m = m0 + tl.arange(0, BLOCK_M)
            mask_m = offs_m < count
            rows = start + offs_m
            acc = linear_tile(act_ptr, rows, mask_m, stride_am, stride_ak, w_base, offs_n, mask_n, stride_wn,
                              stride_wk, F, BLOCK_M, BLOCK_N, BLOCK_K, False)
            if HAS_BIAS:
                acc += tl.load(b_ptr + e.to(tl.int64) * stride_be + offs_n, mask=mask_n,
                               other=0.0).to(tl.float32)[None, :]
            pair = tl.load(pair_ptr + rows, mask=mask_m, other=0)
            p = tl.load(p_ptr + pair, mask=mask_m, other=0.0)
            tl.store(y_ptr + pair[:, None] * stride_ym + offs_n[None, :] * stride_yn, acc * p[:, None],
                     mask=mask_m[:, None] & mask_n[None, :])


def grouped_experts(x, ids, p, w_gate_up, w_down, b_gate_up=None, b_down=None, activation: str = "swiglu",
                    limit: float = 0.0, block_n: int = 64, block_k: int = 64) -> torch.Tensor:
    """sum_j p[t, j] * expert_{ids[t, j]}(x[t]) as float32 [T, H]: x [T, H], ids [T, k] int64, p [T, k]
    float32, weights [E, 2F, H] and [E, H, F], optional biases [E, 2F] and [E, H]."""
    t, h = x.shape
    e_total, two_f, h_w = w_gate_up.shape
    f = two_f // 2
    if h_w != h or w_down.shape != (e_total, h, f):
        raise ValueError(f"bad MoE weight shapes: w_gate_up {tuple(w_gate_up.shape)}, w_down "
                         f"{tuple(w_down.shape)} for x {tuple(x.shape)}")
    has_bias = b_gate_up is not None
    if has_bias and (b_down is None or b_gate_up.shape != (e_total, two_f) or b_down.shape != (e_total, h)):
        raise ValueError("expert biases need b_gate_up [E, 2F] and b_down [E, H] together")
    kk = ids.shape[1]
    tok, pair, starts, counts = sort_by_expert(ids, e_total)
    act = torch.empty((t * kk, f), dtype=x.dtype, device=x.device)
    y_pair = torch.empty((t * kk, h), dtype=torch.float32, device=x.device)
    bm = block_m_for(t)
    b_gu = b_gate_up if has_bias else w_gate_up  # any pointer when there is no bias
    b_d = b_down if has_bias else w_down
    _block_gate_up_kernel[(e_total, triton.cdiv(f, block_n))](
        x, x.stride(0), x.stride(1),
        w_gate_up, w_gate_up.stride(0), w_gate_up.stride(1), w_gate_up.stride(2),
        b_gu, b_gu.stride(0),
        act, act.stride(0), act.stride(1),
        tok, starts, counts, h, f, t, has_bias, ACT_CODE[activation], float(limit), GPTOSS_ALPHA,
        BLOCK_M=bm, BLOCK_N=block_n, BLOCK_K=block_k,
    )
    _block_down_kernel[(e_total, triton.cdiv(h, block_n))](
        act, act.stride(0), act.stride(1),
        w_down, w_down.stride(0), w_down.stride(1), w_down.stride(2),
        b_d, b_d.stride(0),
        y_pair, y_pair.stride(0), y_pair.stride(1),
        pair, p.float().contiguous().view(-1), starts, counts, h, f, t, has_bias,
        BLOCK_M=bm, BLOCK_N=block_n, BLOCK_K=block_k,
    )
    return y_pair.view(t, kk, h).sum(1)  # a fixed-order sum: deterministic


def triton_experts(x, ids, p, w_gate_up, w_down, b_gate_up, b_down, activation: str, limit: float,
                   w_shared_gate_up=None, w_shared_down=None) -> torch.Tensor:
    """The block's experts: routed (with their biases and activation), then the shared MLP as one expert
    every token picks with weight 1."""
    y = grouped_experts(x, ids, p, w_gate_up, w_down, b_gate_up, b_down, activation, limit)
    if w_shared_gate_up is not None:
        t = x.shape[0]
        one = torch.zeros((t, 1), dtype=torch.int64, device=x.device)
        y += grouped_experts(x, one, torch.ones((t, 1), dtype=torch.float32, device=x.device),
                             w_shared_gate_up.unsqueeze(0), w_shared_down.unsqueeze(0))
    return y.to(x.dtype)

"""Grouped expert GEMM for MoE decode: tokens sorted by expert, one program per (expert, N-tile).

Two kernels, each reading every active expert's weights once per step:
  1. gate_up + SwiGLU: act[r] = silu(x[tok(r)] Wg[e]^T) * (x[tok(r)] Wu[e]^T) for the rows r of expert e
  2. down:             y_pair[pair(r)] = p[pair(r)] * act[r] Wd[e]^T
then y[t] = sum over t's k pairs of y_pair (a fixed-order sum in torch, no atomics: deterministic).

Rows are the (token, expert) pairs sorted by expert; expert e owns rows [start[e], start[e] + count[e]).
Programs of experts no token picked skip their loop at once. A program covers its expert's rows in blocks
of BLOCK_M; BLOCK_M is chosen >= the batch (up to 64), and an expert never gets more rows than tokens, so
at decode batches up to 64 each weight tile is loaded exactly once. Larger batches loop over row blocks
and re-read the tile (from L2 in practice).
Routing (float32 logits, top-k, softmax) and the sort run in torch with no host sync.
Loop bounds (H, F, and max_rows = tokens) are constexpr: one compile per model shape and batch, and
Triton 3.6's interpreter cannot take a runtime scalar as a range bound under numpy 2.4.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.triton._common import linear_tile


@triton.jit
def _expert_program(count_ptr, start_ptr, w_ptr, stride_we, N: tl.constexpr, BLOCK_N: tl.constexpr):
    """This program's expert e (axis 0) and N-tile (axis 1): (e's row count, e's first sorted row, the tile's
    columns < N and their mask, e's weight matrix)."""
    e = tl.program_id(0)
    pid_n = tl.program_id(1)
    count = tl.load(count_ptr + e)
    start = tl.load(start_ptr + e)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    return count, start, offs_n, offs_n < N, w_ptr + e.to(tl.int64) * stride_we


@triton.jit
def _gate_up_swiglu_kernel(
    x_ptr, stride_xm, stride_xk,  # x [T, H]
    w_ptr, stride_we, stride_wn, stride_wk,  # w_gate_up [E, 2F, H]
    act_ptr, stride_am, stride_an,  # act [T*k, F], rows sorted by expert
    tok_ptr, start_ptr, count_ptr,  # per sorted row: token; per expert: first row, row count
    H: tl.constexpr, F: tl.constexpr, max_rows: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """act[r, n] = silu(sum_k x[tok r, k] Wg[e, n, k]) * sum_k x[tok r, k] Wu[e, n, k], accumulated in fp32."""
    count, start, offs_n, mask_n, w_base = _expert_program(count_ptr, start_ptr, w_ptr, stride_we, F, BLOCK_N)
    for m0 in range(0, max_rows, BLOCK_M):  # max_rows = tokens >= any expert's rows
        if m0 < count:  # experts with no (more) rows skip, loading no weights
            offs_m = m0 + tl.arange(0, BLOCK_M)
            mask_m = offs_m < count
            tok = tl.load(tok_ptr + start + offs_m, mask=mask_m, other=0)
            acc_g = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            acc_u = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            for k0 in range(0, H, BLOCK_K):
                offs_k = k0 + tl.arange(0, BLOCK_K)
                mask_k = offs_k < H
                xa = tl.load(x_ptr + tok[:, None] * stride_xm + offs_k[None, :] * stride_xk,
                             mask=mask_m[:, None] & mask_k[None, :], other=0.0)  # [BM, BK]
                wmask = mask_k[:, None] & mask_n[None, :]
                wg = tl.load(w_base + offs_n[None, :] * stride_wn + offs_k[:, None] * stride_wk,
                             mask=wmask, other=0.0)  # [BK, BN] gate rows n
                wu = tl.load(w_base + (offs_n[None, :] + F) * stride_wn + offs_k[:, None] * stride_wk,
                             mask=wmask, other=0.0)  # [BK, BN] up rows F + n
                acc_g = tl.dot(xa, wg, acc_g)
                acc_u = tl.dot(xa, wu, acc_u)
            act = acc_g * tl.sigmoid(acc_g) * acc_u
            rows = start + offs_m
            tl.store(act_ptr + rows[:, None] * stride_am + offs_n[None, :] * stride_an,
                     act.to(act_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


@triton.jit
def _down_kernel(
    act_ptr, stride_am, stride_ak,  # act [T*k, F], sorted rows
    w_ptr, stride_we, stride_wn, stride_wk,  # w_down [E, H, F]
    y_ptr, stride_ym, stride_yn,  # y_pair [T*k, H] float32, in original pair order
    pair_ptr, p_ptr, start_ptr, count_ptr,  # per sorted row: pair index; per pair: routing weight
    H: tl.constexpr, F: tl.constexpr, max_rows: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """y_pair[pair r, n] = p[pair r] * sum_k act[r, k] Wd[e, n, k]."""
    count, start, offs_n, mask_n, w_base = _expert_program(count_ptr, start_ptr, w_ptr, stride_we, H, BLOCK_N)
    for m0 in range(0, max_rows, BLOCK_M):  # max_rows = tokens >= any expert's rows
        if m0 < count:  # experts with no (more) rows skip, loading no weights
            offs_m = m0 + tl.arange(0, BLOCK_M)
            mask_m = offs_m < count
            rows = start + offs_m
            acc = linear_tile(act_ptr, rows, mask_m, stride_am, stride_ak, w_base, offs_n, mask_n, stride_wn,
                              stride_wk, F, BLOCK_M, BLOCK_N, BLOCK_K, False)
            pair = tl.load(pair_ptr + rows, mask=mask_m, other=0)
            p = tl.load(p_ptr + pair, mask=mask_m, other=0.0)
            tl.store(y_ptr + pair[:, None] * stride_ym + offs_n[None, :] * stride_yn, acc * p[:, None],
                     mask=mask_m[:, None] & mask_n[None, :])


def block_m_for(tokens: int) -> int:
    """Rows per block: >= tokens (an expert's most rows) up to 64, and >= 16 (tl.dot's minimum)."""
    return max(16, min(64, triton.next_power_of_2(tokens)))


def sort_by_expert(ids: torch.Tensor, experts: int):
    """(token of each sorted row, pair of each sorted row, start[e], count[e]) with no host sync."""
    flat = ids.flatten()  # [T*k], pair index = t * k + j
    order = torch.argsort(flat, stable=True)
    counts = torch.zeros(experts, dtype=torch.int32, device=ids.device)
    counts.scatter_add_(0, flat, torch.ones_like(flat, dtype=torch.int32))
    starts = (torch.cumsum(counts, 0) - counts).to(torch.int32)
    return (order // ids.shape[1]).to(torch.int32), order.to(torch.int32), starts, counts


def triton_moe(x, ids, p, w_gate_up, w_down, block_n: int = 64, block_k: int = 64):
    """The experts of a routed MoE MLP: x [T, H], ids and p [T, k+S] from kernels.moe.route (the caller
    routes, so this module needs nothing from kernels.moe), weights [E+S, 2F, H] and [E+S, H, F]."""
    t, h = x.shape
    e_total, two_f, h_w = w_gate_up.shape
    f = two_f // 2
    if h_w != h or w_down.shape != (e_total, h, f):
        raise ValueError(f"bad MoE weight shapes: w_gate_up {tuple(w_gate_up.shape)}, w_down "
                         f"{tuple(w_down.shape)} for x {tuple(x.shape)}")
    kk = ids.shape[1]
    tok, pair, starts, counts = sort_by_expert(ids, e_total)
    act = torch.empty((t * kk, f), dtype=x.dtype, device=x.device)
    y_pair = torch.empty((t * kk, h), dtype=torch.float32, device=x.device)
    bm = block_m_for(t)
    _gate_up_swiglu_kernel[(e_total, triton.cdiv(f, block_n))](
        x, x.stride(0), x.stride(1),
        w_gate_up, w_gate_up.stride(0), w_gate_up.stride(1), w_gate_up.stride(2),
        act, act.stride(0), act.stride(1),
        tok, starts, counts, h, f, t,
        BLOCK_M=bm, BLOCK_N=block_n, BLOCK_K=block_k,
    )
    _down_kernel[(e_total, triton.cdiv(h, block_n))](
        act, act.stride(0), act.stride(1),
        w_down, w_down.stride(0), w_down.stride(1), w_down.stride(2),
        y_pair, y_pair.stride(0), y_pair.stride(1),
        pair, p.contiguous().view(-1), starts, counts, h, f, t,
        BLOCK_M=bm, BLOCK_N=block_n, BLOCK_K=block_k,
    )
    return y_pair.view(t, kk, h).sum(1).to(x.dtype)

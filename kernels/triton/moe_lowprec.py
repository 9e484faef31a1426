"""Grouped expert GEMMs with low-precision expert weights (kernels/expert_weights.py): the two kernels of
kernels/triton/moe.py (gate_up + SwiGLU, then down, one program per (expert, N-tile) over the rows sorted
by expert, each active expert's weights read once per step) with the weight tiles decoded in the K loop.

fp8-block (W8A8, needs FP8 tensor cores: sm_89 and later): x quantized per token and 128-wide K group
(torch, before the first kernel), one 128-wide K step at a time: acc += dot(x_q, W_q) * sx[rows, k/128] *
sw[n/128, k/128] with both operands e4m3 into fp32 (what vLLM's and SGLang's block-FP8 fused MoE do:
BLOCK_K divides the 128 group, so one scale pair covers a K step). The SwiGLU output is written in the
activation dtype, quantized per token group (torch), and the down kernel runs the same loop.
mxfp4 (weight-only, W4A16: any GPU Triton targets, sm_80 included): each K step loads BLOCK_K/2 packed
bytes a column and their E8M0 scales, decodes the low nibbles (even K) and high nibbles (odd K) to the
activation dtype (exact), and multiplies them with x's even and odd columns: two dots of BLOCK_K/2 each,
so no register interleave of the nibbles is needed.
What Triton 3.6 emits for sm_90 (PTX of kernels/triton/compile_check_lowprec.py's launches): fp8-block at
64-row tiles a native e4m3 wgmma (m64n64k32), at 16-row tiles e4m3 widened to f16 (exact) into mma.sync;
mxfp4 bf16 wgmma (64 rows) or mma.sync (16 rows). The weights cross memory at 1 or 0.5 bytes either way.
Routing and the sort by expert are kernels/triton/moe.py's; loop bounds (H, F, tokens) are constexpr as
there. Under the interpreter (CPU tests) a fixed config runs; a GPU runs the same fixed config (block
sizes chosen for decode batches, not autotuned).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.expert_weights import FP8_BLOCK, MX_BLOCK, Fp8BlockWeight, Mxfp4Weight, quantize_groups
from kernels.triton._common import check_tensors
from kernels.triton.moe import _expert_program, block_m_for, sort_by_expert


@triton.jit
def _fp8_block_step(acc, a, sa, w_base, offs_n, mask_n, offs_k, mask_k, stride_wn, stride_wk,
                    ws_base, stride_wsn, stride_wsk, k_group):
    """acc + (a @ W[offs_n, offs_k]^T) * sa[:, None] * sw[n // 128, k_group]: one K step inside one
    128-wide scale group; a [BM, BK] e4m3 with its row scales sa [BM]."""
    w = tl.load(w_base + offs_n[None, :] * stride_wn + offs_k[:, None] * stride_wk,
                mask=mask_k[:, None] & mask_n[None, :], other=0.0)  # [BK, BN] e4m3
    sw = tl.load(ws_base + (offs_n // 128) * stride_wsn + k_group * stride_wsk, mask=mask_n, other=0.0)
    return acc + tl.dot(a, w) * sa[:, None] * sw[None, :]


@triton.jit
def _fp8_gate_up_kernel(
    x_ptr, stride_xm, stride_xk,  # x_q [T, H] e4m3
    xs_ptr, stride_xsm, stride_xsk,  # x scales [T, ceil(H/128)] float32
    w_ptr, stride_we, stride_wn, stride_wk,  # w_gate_up q [E, 2F, H] e4m3
    ws_ptr, stride_wse, stride_wsn, stride_wsk,  # its block scales [E, ceil(2F/128), ceil(H/128)]
    act_ptr, stride_am, stride_an,  # act [T*k, F] activation dtype, rows sorted by expert
    tok_ptr, start_ptr, count_ptr,
    H: tl.constexpr, F: tl.constexpr, max_rows: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """act[r, n] = silu(gate) * up, gate and up the block-scaled FP8 products over H in fp32."""
    count, start, offs_n, mask_n, w_base = _expert_program(count_ptr, start_ptr, w_ptr, stride_we, F, BLOCK_N)
    ws_base = ws_ptr + tl.program_id(0).to(tl.int64) * stride_wse
    for m0 in range(0, max_rows, BLOCK_M):
        if m0 < count:
            offs_m = m0 + tl.arange(0, BLOCK_M)
            mask_m = offs_m < count
            tok = tl.load(tok_ptr + start + offs_m, mask=mask_m, other=0)
            acc_g = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            acc_u = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            for k0 in range(0, H, BLOCK_K):
                offs_k = k0 + tl.arange(0, BLOCK_K)
                mask_k = offs_k < H
                a = tl.load(x_ptr + tok[:, None] * stride_xm + offs_k[None, :] * stride_xk,
                            mask=mask_m[:, None] & mask_k[None, :], other=0.0)
                sa = tl.load(xs_ptr + tok * stride_xsm + (k0 // 128) * stride_xsk, mask=mask_m, other=0.0)
                acc_g = _fp8_block_step(acc_g, a, sa, w_base, offs_n, mask_n, offs_k, mask_k, stride_wn,
                                        stride_wk, ws_base, stride_wsn, stride_wsk, k0 // 128)
                acc_u = _fp8_block_step(acc_u, a, sa, w_base, offs_n + F, mask_n, offs_k, mask_k, stride_wn,
                                        stride_wk, ws_base, stride_wsn, stride_wsk, k0 // 128)
            act = acc_g * tl.sigmoid(acc_g) * acc_u
            rows = start + offs_m
            tl.store(act_ptr + rows[:, None] * stride_am + offs_n[None, :] * stride_an,
                     act.to(act_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


@triton.jit
def _fp8_down_kernel(
    a_ptr, stride_am, stride_ak,  # act_q [T*k, F] e4m3, sorted rows
    as_ptr, stride_asm, stride_ask,  # its scales [T*k, ceil(F/128)]
    w_ptr, stride_we, stride_wn, stride_wk,  # w_down q [E, H, F] e4m3
    ws_ptr, stride_wse, stride_wsn, stride_wsk,  # its block scales [E, ceil(H/128), ceil(F/128)]
    y_ptr, stride_ym, stride_yn,  # y_pair [T*k, H] float32, in pair order
    pair_ptr, p_ptr, start_ptr, count_ptr,
    H: tl.constexpr, F: tl.constexpr, max_rows: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """y_pair[pair r, n] = p[pair r] * the block-scaled FP8 product of act row r with W_down[e] over F."""
    count, start, offs_n, mask_n, w_base = _expert_program(count_ptr, start_ptr, w_ptr, stride_we, H, BLOCK_N)
    ws_base = ws_ptr + tl.program_id(0).to(tl.int64) * stride_wse
    for m0 in range(0, max_rows, BLOCK_M):
        if m0 < count:
            offs_m = m0 + tl.arange(0, BLOCK_M)
            mask_m = offs_m < count
            rows = start + offs_m
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            for k0 in range(0, F, BLOCK_K):
                offs_k = k0 + tl.arange(0, BLOCK_K)
                mask_k = offs_k < F
                a = tl.load(a_ptr + rows[:, None] * stride_am + offs_k[None, :] * stride_ak,
                            mask=mask_m[:, None] & mask_k[None, :], other=0.0)
                sa = tl.load(as_ptr + rows * stride_asm + (k0 // 128) * stride_ask, mask=mask_m, other=0.0)
                acc = _fp8_block_step(acc, a, sa, w_base, offs_n, mask_n, offs_k, mask_k, stride_wn,
                                      stride_wk, ws_base, stride_wsn, stride_wsk, k0 // 128)
            pair = tl.load(pair_ptr + rows, mask=mask_m, other=0)
            p = tl.load(p_ptr + pair, mask=mask_m, other=0.0)
            tl.store(y_ptr + pair[:, None] * stride_ym + offs_n[None, :] * stride_yn, acc * p[:, None],
                     mask=mask_m[:, None] & mask_n[None, :])


@triton.jit
def _e2m1_widen(codes, scale, dtype: tl.constexpr):
    """4-bit E2M1 codes (int32, sign in bit 3) times their power-of-two scale (float32), in `dtype`: exact.
    Magnitude codes 2..7 are the float32 bits (code << 22) + (126 << 23) (1, 1.5, 2, 3, 4, 6); 0 and 1 are
    0 and 0.5."""
    mag = codes & 7
    big = ((mag << 22) + (126 << 23)).to(tl.float32, bitcast=True)
    val = tl.where(mag >= 2, big, mag.to(tl.float32) * 0.5)
    val = tl.where((codes & 8) != 0, -val, val)
    return (val * scale).to(dtype)


@triton.jit
def _mxfp4_step(acc, a_even, a_odd, w_base, offs_n, mask_n, k0, stride_wn, stride_wk,
                s_base, stride_sn, stride_sk, K: tl.constexpr, BLOCK_K: tl.constexpr):
    """acc + a[:, k0:k0+BK] @ W[offs_n, k0:k0+BK]^T with W packed E2M1 + E8M0: a_even / a_odd [BM, BK/2]
    are a's even and odd columns of the step; packed byte j holds elements k0 + 2j (low) and k0 + 2j + 1."""
    offs_j = k0 // 2 + tl.arange(0, BLOCK_K // 2)
    mask = (offs_j < K // 2)[:, None] & mask_n[None, :]
    packed = tl.load(w_base + offs_n[None, :] * stride_wn + offs_j[:, None] * stride_wk, mask=mask,
                     other=0).to(tl.int32)  # [BK/2, BN]
    s = tl.load(s_base + offs_n[None, :] * stride_sn + ((2 * offs_j) // 32)[:, None] * stride_sk, mask=mask,
                other=127).to(tl.int32)
    scale = (s << 23).to(tl.float32, bitcast=True)  # 2^(s - 127); the quantizer keeps s >= 1
    w_even = _e2m1_widen(packed & 0xF, scale, a_even.dtype)
    w_odd = _e2m1_widen(packed >> 4, scale, a_even.dtype)
    acc = tl.dot(a_even, w_even, acc)
    return tl.dot(a_odd, w_odd, acc)


@triton.jit
def _load_even_odd(a_ptr, rows, mask_m, stride_am, stride_ak, k0, K: tl.constexpr, BLOCK_K: tl.constexpr):
    """a[rows, k0 + 2j] and a[rows, k0 + 2j + 1] for j < BLOCK_K/2 (MXFP4 keeps K even)."""
    offs_e = k0 + 2 * tl.arange(0, BLOCK_K // 2)
    mask = mask_m[:, None] & (offs_e < K)[None, :]
    base = a_ptr + rows[:, None] * stride_am + offs_e[None, :] * stride_ak
    return tl.load(base, mask=mask, other=0.0), tl.load(base + stride_ak, mask=mask, other=0.0)


@triton.jit
def _mxfp4_gate_up_kernel(
    x_ptr, stride_xm, stride_xk,  # x [T, H] activation dtype
    w_ptr, stride_we, stride_wn, stride_wk,  # w_gate_up blocks [E, 2F, H/2] uint8
    s_ptr, stride_se, stride_sn, stride_sk,  # its scales [E, 2F, ceil(H/32)] uint8
    act_ptr, stride_am, stride_an,  # act [T*k, F], rows sorted by expert
    tok_ptr, start_ptr, count_ptr,
    H: tl.constexpr, F: tl.constexpr, max_rows: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """act[r, n] = silu(gate) * up with the MXFP4 gate and up rows widened in registers."""
    count, start, offs_n, mask_n, w_base = _expert_program(count_ptr, start_ptr, w_ptr, stride_we, F, BLOCK_N)
    s_base = s_ptr + tl.program_id(0).to(tl.int64) * stride_se
    for m0 in range(0, max_rows, BLOCK_M):
        if m0 < count:
            offs_m = m0 + tl.arange(0, BLOCK_M)
            mask_m = offs_m < count
            tok = tl.load(tok_ptr + start + offs_m, mask=mask_m, other=0)
            acc_g = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            acc_u = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            for k0 in range(0, H, BLOCK_K):
                a_even, a_odd = _load_even_odd(x_ptr, tok, mask_m, stride_xm, stride_xk, k0, H, BLOCK_K)
                acc_g = _mxfp4_step(acc_g, a_even, a_odd, w_base, offs_n, mask_n, k0, stride_wn, stride_wk,
                                    s_base, stride_sn, stride_sk, H, BLOCK_K)
                acc_u = _mxfp4_step(acc_u, a_even, a_odd, w_base, offs_n + F, mask_n, k0, stride_wn,
                                    stride_wk, s_base, stride_sn, stride_sk, H, BLOCK_K)
            act = acc_g * tl.sigmoid(acc_g) * acc_u
            rows = start + offs_m
            tl.store(act_ptr + rows[:, None] * stride_am + offs_n[None, :] * stride_an,
                     act.to(act_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


@triton.jit
def _mxfp4_down_kernel(
    a_ptr, stride_am, stride_ak,  # act [T*k, F], sorted rows
    w_ptr, stride_we, stride_wn, stride_wk,  # w_down blocks [E, H, F/2] uint8
    s_ptr, stride_se, stride_sn, stride_sk,  # its scales [E, H, ceil(F/32)] uint8
    y_ptr, stride_ym, stride_yn,  # y_pair [T*k, H] float32, in pair order
    pair_ptr, p_ptr, start_ptr, count_ptr,
    H: tl.constexpr, F: tl.constexpr, max_rows: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """y_pair[pair r, n] = p[pair r] * act row r @ W_down[e]^T with W_down MXFP4 widened in registers."""
    count, start, offs_n, mask_n, w_base = _expert_program(count_ptr, start_ptr, w_ptr, stride_we, H, BLOCK_N)
    s_base = s_ptr + tl.program_id(0).to(tl.int64) * stride_se
    for m0 in range(0, max_rows, BLOCK_M):
        if m0 < count:
            offs_m = m0 + tl.arange(0, BLOCK_M)
            mask_m = offs_m < count
            rows = start + offs_m
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            for k0 in range(0, F, BLOCK_K):
                a_even, a_odd = _load_even_odd(a_ptr, rows, mask_m, stride_am, stride_ak, k0, F, BLOCK_K)
                acc = _mxfp4_step(acc, a_even, a_odd, w_base, offs_n, mask_n, k0, stride_wn, stride_wk,
                                  s_base, stride_sn, stride_sk, F, BLOCK_K)
            pair = tl.load(pair_ptr + rows, mask=mask_m, other=0)
            p = tl.load(p_ptr + pair, mask=mask_m, other=0.0)
            tl.store(y_ptr + pair[:, None] * stride_ym + offs_n[None, :] * stride_yn, acc * p[:, None],
                     mask=mask_m[:, None] & mask_n[None, :])


# Decode batches: weight streams. 64 output columns a program keep many programs per expert. FP8 steps 128
# wide along K (one scale group); MXFP4 steps 64 wide (two scale blocks): its decoded bf16 tiles live in
# registers, and at 128 wide the 64-row gate_up tile (two accumulators and four decoded tiles) passed 255
# registers and spilled (ptxas, Triton 3.6, sm_80/90/100).
BLOCK_N = 64
BLOCK_K = 128
MXFP4_BLOCK_K = 64


def _check(x, ids, p, n_gu: tuple, n_d: tuple, what: str):
    t, h = x.shape
    e_total, two_f, h_w = n_gu
    f = two_f // 2
    if h_w != h or n_d != (e_total, h, f):
        raise ValueError(f"bad {what} MoE weight shapes: gate_up {n_gu}, down {n_d} for x {tuple(x.shape)}")
    check_tensors(f"{what} MoE", x, ids=ids, p=p)
    return t, h, f, e_total


def triton_moe_fp8_block(x, ids, p, w_gate_up: Fp8BlockWeight, w_down: Fp8BlockWeight,
                         block_n: int = BLOCK_N, block_k: int = BLOCK_K):
    """x [T, H] (bf16 on a GPU), ids and p [T, k+S] from kernels.moe.route, experts in FP8 with 128x128
    block scales. x and the SwiGLU output are quantized per token and 128-wide group here, per call."""
    if FP8_BLOCK % block_k:
        raise ValueError(f"block_k {block_k} must divide the {FP8_BLOCK}-wide scale group")
    t, h, f, e_total = _check(x, ids, p, tuple(w_gate_up.shape), tuple(w_down.shape), "fp8-block")
    kk = ids.shape[1]
    tok, pair, starts, counts = sort_by_expert(ids, e_total)
    x_q, x_s = quantize_groups(x)
    act = torch.empty((t * kk, f), dtype=x.dtype, device=x.device)
    y_pair = torch.empty((t * kk, h), dtype=torch.float32, device=x.device)
    bm = block_m_for(t)
    wq, ws = w_gate_up
    _fp8_gate_up_kernel[(e_total, triton.cdiv(f, block_n))](
        x_q, *x_q.stride(), x_s, *x_s.stride(), wq, *wq.stride(), ws, *ws.stride(),
        act, *act.stride(), tok, starts, counts, h, f, t,
        BLOCK_M=bm, BLOCK_N=block_n, BLOCK_K=block_k,
    )
    a_q, a_s = quantize_groups(act)
    wq, ws = w_down
    _fp8_down_kernel[(e_total, triton.cdiv(h, block_n))](
        a_q, *a_q.stride(), a_s, *a_s.stride(), wq, *wq.stride(), ws, *ws.stride(),
        y_pair, *y_pair.stride(), pair, p.contiguous().view(-1), starts, counts, h, f, t,
        BLOCK_M=bm, BLOCK_N=block_n, BLOCK_K=block_k,
    )
    return y_pair.view(t, kk, h).sum(1).to(x.dtype)


def triton_moe_mxfp4(x, ids, p, w_gate_up: Mxfp4Weight, w_down: Mxfp4Weight,
                     block_n: int = BLOCK_N, block_k: int = MXFP4_BLOCK_K):
    """x [T, H] (bf16 on a GPU; H and F even), experts in MXFP4, weight-only."""
    if block_k % MX_BLOCK:
        raise ValueError(f"block_k {block_k} must be a multiple of the {MX_BLOCK}-element scale block")
    t, h, f, e_total = _check(x, ids, p, tuple(w_gate_up.shape), tuple(w_down.shape), "mxfp4")
    kk = ids.shape[1]
    tok, pair, starts, counts = sort_by_expert(ids, e_total)
    act = torch.empty((t * kk, f), dtype=x.dtype, device=x.device)
    y_pair = torch.empty((t * kk, h), dtype=torch.float32, device=x.device)
    bm = block_m_for(t)
    wb, ws = w_gate_up
    _mxfp4_gate_up_kernel[(e_total, triton.cdiv(f, block_n))](
        x, *x.stride(), wb, *wb.stride(), ws, *ws.stride(), act, *act.stride(), tok, starts, counts, h, f, t,
        BLOCK_M=bm, BLOCK_N=block_n, BLOCK_K=block_k,
    )
    wb, ws = w_down
    _mxfp4_down_kernel[(e_total, triton.cdiv(h, block_n))](
        act, *act.stride(), wb, *wb.stride(), ws, *ws.stride(), y_pair, *y_pair.stride(),
        pair, p.contiguous().view(-1), starts, counts, h, f, t,
        BLOCK_M=bm, BLOCK_N=block_n, BLOCK_K=block_k,
    )
    return y_pair.view(t, kk, h).sum(1).to(x.dtype)

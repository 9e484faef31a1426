"""Triton FP8 GEMM for decode: y[M, N] = (x_q[M, K] * sx) @ (W_q[N, K] * sw)^T in bf16.

Both operands float8_e4m3fn (Triton's fp8e4nv), fed to tl.dot as they are (FP8 tensor cores, fp32
accumulation); the scales are applied once to the accumulator: per tensor (two scalars) or per token x
per channel (sx [M], sw [N]). Decode M is 1..256, so a program covers BLOCK_M = 16..64 rows and a narrow
BLOCK_N: at M = 1 the kernel is a weight stream, and many N-tiles keep every SM reading.
What Triton 3.6 emits for sm_90 (seen in the PTX from kernels/triton/compile_check_scale.py): at BLOCK_M 64
a native FP8 wgmma (m64n32k32 e4m3); at BLOCK_M 16 it widens e4m3 to f16 in registers (exact: every e4m3
value is an f16 value) and runs f16 mma.sync. Either way the weights cross memory as 1 byte, which is what
a memory-bound decode GEMM needs; only batches > 32 take the FP8 tensor-core path.
Needs compute capability >= 8.9. Under the interpreter (CPU tests) a fixed config runs; GPU tests cover
the autotuned path.
"""
from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

from kernels.triton._common import autotune_options, linear_tile


def _configs():
    return [triton.Config({"BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=s)
            for bn, bk, w, s in ((32, 128, 4, 4), (64, 128, 4, 4), (64, 256, 8, 3), (128, 128, 8, 3))]


@triton.jit
def _fp8_linear_kernel(
    x_ptr, stride_xm, stride_xk,  # x_q [M, K] fp8
    xs_ptr,  # [M] (PER_ROW) or [1] float32
    w_ptr, stride_wn, stride_wk,  # W_q [N, K] fp8
    ws_ptr,  # [N] (PER_ROW) or [1] float32
    y_ptr, stride_ym, stride_yn,  # y [M, N] bf16 (or the out_dtype asked for)
    M, N, K: tl.constexpr,
    PER_ROW: tl.constexpr, WEIGHT_ONLY: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """acc = sum_k x_q[m, k] W_q[n, k] in fp32, then y = acc * sx[m] * sw[n] rounded to y's type (bf16).
    WEIGHT_ONLY (W8A16): x is bf16/fp16 as it is (sx = 1) and each W tile is widened to x's type in
    registers, so the weights still cross memory as 1 byte and no activation quantization runs."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m = offs_m < M
    mask_n = offs_n < N
    # WEIGHT_ONLY: each W tile widened to x's type (e4m3 -> bf16/fp16 is exact)
    acc = linear_tile(x_ptr, offs_m, mask_m, stride_xm, stride_xk, w_ptr, offs_n, mask_n, stride_wn,
                      stride_wk, K, BLOCK_M, BLOCK_N, BLOCK_K, WEIGHT_ONLY)
    if PER_ROW:
        sx = tl.load(xs_ptr + offs_m, mask=mask_m, other=0.0)
        sw = tl.load(ws_ptr + offs_n, mask=mask_n, other=0.0)
        acc = acc * sx[:, None] * sw[None, :]
    else:
        acc = acc * (tl.load(xs_ptr) * tl.load(ws_ptr))
    tl.store(y_ptr + offs_m[:, None] * stride_ym + offs_n[None, :] * stride_yn, acc.to(y_ptr.dtype.element_ty),
             mask=mask_m[:, None] & mask_n[None, :])


@functools.cache
def _autotuned():
    """The autotuned kernel, built on the first autotuned launch (nothing is built at import)."""
    return triton.autotune(configs=_configs(), key=["M", "N", "K"], **autotune_options())(_fp8_linear_kernel)


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def triton_fp8_linear(x_q: torch.Tensor, x_scale, w_q: torch.Tensor, w_scale: torch.Tensor,
                      out_dtype: torch.dtype = torch.bfloat16):
    """x_q [M, K] and W_q [N, K] float8_e4m3fn; scales both 0-d (per tensor) or [M, 1] and [N, 1].
    x_q in bf16/fp16 with x_scale None: weight-only FP8 (W8A16). y [M, N] in out_dtype (a layer with fp16
    activations, as the interpreter tests run, asks for float16)."""
    m, k = x_q.shape
    weight_only = x_q.dtype != w_q.dtype
    if weight_only:
        if x_scale is not None:
            raise ValueError("weight-only FP8 takes x as it is: x_scale must be None")
        x_scale = torch.ones(m if w_scale.numel() > 1 else 1, dtype=torch.float32, device=x_q.device)
    n, k_w = w_q.shape
    if k != k_w:
        raise ValueError(f"x_q {tuple(x_q.shape)} and W_q {tuple(w_q.shape)} disagree on K")
    per_row = x_scale.numel() > 1 or w_scale.numel() > 1
    if per_row and (x_scale.numel() != m or w_scale.numel() != n):
        raise ValueError("per-row scales must be [M] for x and [N] for W")
    y = torch.empty((m, n), dtype=out_dtype, device=x_q.device)
    block_m = max(16, min(64, triton.next_power_of_2(m)))

    def grid(meta):
        return (triton.cdiv(m, block_m), triton.cdiv(n, meta["BLOCK_N"]))

    args = (x_q, x_q.stride(0), x_q.stride(1), x_scale.reshape(-1).float().contiguous(),
            w_q, w_q.stride(0), w_q.stride(1), w_scale.reshape(-1).float().contiguous(),
            y, y.stride(0), y.stride(1), m, n, k)
    if _interpreting():  # the autotuner needs a GPU to time configs; the interpreter runs one fixed config
        _fp8_linear_kernel[grid](*args, PER_ROW=per_row, WEIGHT_ONLY=weight_only, BLOCK_M=block_m, BLOCK_N=32,
                                 BLOCK_K=32)
    else:
        _autotuned()[grid](*args, PER_ROW=per_row, WEIGHT_ONLY=weight_only, BLOCK_M=block_m)
    return y

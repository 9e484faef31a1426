"""Decode GEMM in Triton: y = x @ W^T (+ b), x [M, K], W [N, K] (nn.Linear layout), M = batch (1..256).

At decode the weight dominates traffic (N K elements against M K + M N), so both kernels are built to
stream W exactly once at full bandwidth:
- tiled: grid (cdiv(M, BLOCK_M), cdiv(N, BLOCK_N)), each program loops over all of K. With M <= BLOCK_M
  there is one M tile, so every weight element is read by exactly one program. Used for M > 16, and for
  M <= 16 when N alone gives enough programs to fill the machine (e.g. gate/up, lm_head).
- split-K (M <= 16): when cdiv(N, BLOCK_N) programs would leave SMs idle (o_proj, down_proj at
  batch 1), K is cut into SPLIT_K ranges; each program writes an fp32 partial sum to a
  [SPLIT_K, M, N] buffer and a second kernel adds the partials (and bias) and casts.
  Partials + reduction rather than atomic adds into an fp32 buffer: the result is bit-reproducible run
  to run (atomics sum in arrival order), no zero-fill launch is needed before the GEMM, and the extra
  traffic, 2 * SPLIT_K * M * N * 4 bytes, is under 3% of the weight bytes for M <= 16 at
  K / SPLIT_K >= 256 and mostly stays in L2.
The fused gate/up projection is this same GEMM on the concatenated [2F, K] weight (one launch, one pass).

Autotune configs come from one function per architecture, chosen on first call from the device's
compute capability (never at import); under TRITON_INTERPRET=1 one small fixed config is used instead.
Autotuning benchmarks each config, so it must happen in warm-up: the first call for each (M, N, K,
dtype) must not be inside a CUDA graph capture. After that a call only launches (no host syncs).
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from kernels.fp8 import Fp8Weight
from kernels.triton._common import (
    capability,
    cdiv,
    check_out,
    check_same_dtype,
    check_shape,
    check_tensors,
    autotune_options,
    interpreting,
    next_pow2,
    note_config,
    sm_count,
)

SPLIT_K_MAX_M = 16  # split-K only where one BLOCK_M = 16 tile holds the whole batch
MIN_K_PER_SPLIT = 256  # a split streams at least 256 weight columns: per-program setup stays small
MAX_SPLIT_K = 16
NOMINAL_BLOCK_N = 64  # tile width the split heuristic assumes (the configs use 32..128)
WAVES = 2  # programs per SM to aim for, so one SM's tail does not idle the others' memory pipes
REDUCE_BLOCK_N = 256

INTERPRETER_TILED = {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 32}
INTERPRETER_SPLITK = {"BLOCK_N": 32, "BLOCK_K": 32}


@triton.jit
def _gemm_tiled_kernel(
    x_ptr, stride_xm, stride_xk,  # [M, K]
    w_ptr, stride_wn, stride_wk,  # [N, K]
    b_ptr,  # [N] (read only if HAS_BIAS)
    y_ptr, stride_ym, stride_yn,  # [M, N]
    M, N, K,
    HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """y[m, n] = sum_k x[m, k] w[n, k] (+ b[n]), accumulated in fp32, one [BLOCK_M, BLOCK_N] tile.

    Traffic per program: read BLOCK_M K (x) + BLOCK_N K (w); write BLOCK_M BLOCK_N.
    Over the grid: W read cdiv(M, BLOCK_M) times (once at decode sizes), x read cdiv(N, BLOCK_N) times
    (from L2: x is only M K elements).
    """
    # axis 0 (fastest) walks M so the programs sharing a weight tile run together and share it in L2
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    x_ptrs = x_ptr + offs_m[:, None] * stride_xm + offs_k[None, :] * stride_xk  # [BLOCK_M, BLOCK_K]
    # int64 rows: N K reaches 2^31 for 405B-class LM heads (128256 x 16384 is 2.1e9)
    w_ptrs = w_ptr + offs_k[:, None] * stride_wk + offs_n.to(tl.int64)[None, :] * stride_wn  # [BK, BN] = W^T
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k_ok = (k0 + offs_k) < K
        x = tl.load(x_ptrs, mask=(offs_m[:, None] < M) & k_ok[None, :], other=0.0)
        w = tl.load(w_ptrs, mask=k_ok[:, None] & (offs_n[None, :] < N), other=0.0)
        acc = tl.dot(x, w, acc, input_precision=PRECISION)
        x_ptrs += BLOCK_K * stride_xk
        w_ptrs += BLOCK_K * stride_wk
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_n, mask=offs_n < N, other=0.0).to(tl.float32)[None, :]
    y_ptrs = y_ptr + offs_m[:, None] * stride_ym + offs_n[None, :] * stride_yn
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=(offs_m[:, None] < M) & (offs_n[None, :] < N))


@triton.jit
def _gemm_splitk_kernel(
    x_ptr, stride_xm, stride_xk,  # [M, K], M <= 16
    w_ptr, stride_wn, stride_wk,  # [N, K]
    p_ptr, stride_ps, stride_pm,  # [SPLIT_K, M, N] fp32 partial sums, unit stride over N
    M, N, K, SPLIT_K,
    PRECISION: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """p[s, m, n] = sum over k in split s of x[m, k] w[n, k], in fp32; the whole batch is one 16-row tile.

    Traffic: read N K (each weight element by exactly one program) + SPLIT_K cdiv(N, BLOCK_N) x-slices
    (L2); write SPLIT_K M N fp32.
    """
    BLOCK_M: tl.constexpr = 16  # tl.dot's smallest M; rows >= M are masked to zero
    pid_n = tl.program_id(0)
    pid_s = tl.program_id(1)
    # split s covers [k_lo, k_hi): equal spans rounded up to BLOCK_K, the last one shorter (maybe empty)
    k_span = tl.cdiv(tl.cdiv(K, SPLIT_K), BLOCK_K) * BLOCK_K
    k_lo = pid_s * k_span
    k_hi = tl.minimum(k_lo + k_span, K)
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = k_lo + tl.arange(0, BLOCK_K)
    x_ptrs = x_ptr + offs_m[:, None] * stride_xm + offs_k[None, :] * stride_xk
    w_ptrs = w_ptr + offs_k[:, None] * stride_wk + offs_n.to(tl.int64)[None, :] * stride_wn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(k_lo, k_hi, BLOCK_K):
        k_ok = (k0 - k_lo + offs_k) < k_hi
        x = tl.load(x_ptrs, mask=(offs_m[:, None] < M) & k_ok[None, :], other=0.0)
        w = tl.load(w_ptrs, mask=k_ok[:, None] & (offs_n[None, :] < N), other=0.0)
        acc = tl.dot(x, w, acc, input_precision=PRECISION)
        x_ptrs += BLOCK_K * stride_xk
        w_ptrs += BLOCK_K * stride_wk
    p_ptrs = p_ptr + pid_s * stride_ps + offs_m[:, None] * stride_pm + offs_n[None, :]
    tl.store(p_ptrs, acc, mask=(offs_m[:, None] < M) & (offs_n[None, :] < N))


@triton.jit
def _splitk_reduce_kernel(
    p_ptr, stride_ps, stride_pm,  # [SPLIT_K, M, N] fp32
    b_ptr,  # [N]
    y_ptr, stride_ym, stride_yn,  # [M, N]
    N, SPLIT_K,
    HAS_BIAS: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """y[m, n] = sum_s p[s, m, n] (+ b[n]), cast to y's dtype. Read SPLIT_K M N fp32; write M N."""
    pid_m = tl.program_id(0)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_s = tl.arange(0, BLOCK_S)
    mask = (offs_s[:, None] < SPLIT_K) & (offs_n[None, :] < N)
    p_ptrs = p_ptr + offs_s[:, None] * stride_ps + pid_m * stride_pm + offs_n[None, :]
    p = tl.load(p_ptrs, mask=mask, other=0.0)
    y = tl.sum(p, axis=0)
    if HAS_BIAS:
        y += tl.load(b_ptr + offs_n, mask=offs_n < N, other=0.0).to(tl.float32)
    tl.store(y_ptr + pid_m * stride_ym + offs_n * stride_yn, y.to(y_ptr.dtype.element_ty), mask=offs_n < N)


# ---------------------------------------------------------------------------------------------------
# Autotune configs, one function per architecture. Entries: (BLOCK_M, BLOCK_N, BLOCK_K, warps, stages)
# for the tiled kernel, (BLOCK_N, BLOCK_K, warps, stages) for split-K. Shared memory per stage is
# (BLOCK_M + BLOCK_N) * BLOCK_K * 2 bytes in 16-bit types; every list fits its architecture's budget.
# Decode is a weight stream, so the lists favour deep pipelines (many bytes in flight per SM) over
# large M tiles; BLOCK_M 64/128 entries exist only for batches where the tiled kernel nears compute.


def _hopper_configs():
    """sm_90 (H100/H200): 228 KB shared memory per SM, 132 SMs. 4-5 stages of 128-256-wide K slices
    keep about 150-180 KB of weight loads in flight per SM, what 4.8 TB/s needs to hide latency."""
    tiled = [(16, 64, 256, 4, 4), (16, 128, 128, 4, 5), (32, 64, 128, 4, 5),
             (64, 64, 128, 4, 4), (64, 128, 64, 4, 4), (128, 128, 64, 8, 3),
             # prefill (M in the thousands, compute-bound): a 128 x 256 wgmma tile, 3 x 48 KB stages
             (128, 256, 64, 8, 3)]
    splitk = [(64, 256, 4, 4), (128, 128, 4, 4), (32, 256, 4, 5)]
    return tiled, splitk


def _blackwell_configs():
    """sm_100 (B200/GB200): same 228 KB shared memory, 148 SMs, ~8 TB/s: more in flight per SM, so
    wider N tiles at the same depth."""
    tiled = [(16, 64, 256, 4, 5), (16, 128, 128, 4, 5), (32, 128, 128, 4, 4),
             (64, 128, 128, 8, 3), (128, 128, 64, 8, 4), (128, 256, 64, 8, 3)]
    splitk = [(64, 256, 4, 5), (128, 128, 4, 5), (128, 256, 4, 3)]
    return tiled, splitk


def _ampere_configs():
    """sm_80 (A100, 164 KB) and the ~100 KB parts (sm_86/89, consumer Blackwell sm_120): every entry
    stays under 100 KB of shared memory so one list serves them all."""
    tiled = [(16, 64, 128, 4, 4), (16, 128, 64, 4, 4), (32, 64, 128, 4, 3),
             (64, 64, 64, 4, 4), (64, 128, 64, 4, 3), (128, 128, 32, 8, 4),
             (128, 256, 32, 8, 3)]  # prefill: 3 x 24 KB stages
    splitk = [(64, 128, 4, 4), (128, 64, 4, 4), (32, 256, 4, 3)]
    return tiled, splitk


def configs_for(cap: tuple) -> tuple:
    """(tiled, splitk) lists of triton.Config for compute capability `cap`."""
    if cap[0] == 9:
        tiled, splitk = _hopper_configs()
    elif cap[0] == 10:
        tiled, splitk = _blackwell_configs()
    else:
        tiled, splitk = _ampere_configs()
    return (
        [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=s)
         for bm, bn, bk, w, s in tiled],
        [triton.Config({"BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=s) for bn, bk, w, s in splitk],
    )


def _fit_element_size(configs, element_size: int):
    """The lists are sized for 16-bit operands; fp32 operands take twice the shared memory per stage,
    so halve BLOCK_K to keep every config's footprint (and so its fit) the same."""
    if element_size <= 2:
        return configs
    return [triton.Config({**c.kwargs, "BLOCK_K": c.kwargs["BLOCK_K"] // 2}, num_warps=c.num_warps,
                          num_stages=c.num_stages) for c in configs]


def _prune_tiled(configs, named_args, **_):
    """Drop tiles taller than the batch needs (rows past M are wasted loads and math)."""
    limit = max(16, next_pow2(named_args["M"]))
    kept = [c for c in configs if c.kwargs["BLOCK_M"] <= limit] or configs[:1]
    return _fit_element_size(kept, named_args["x_ptr"].element_size())


def _prune_splitk(configs, named_args, **_):
    return _fit_element_size(configs, named_args["x_ptr"].element_size())


@functools.cache
def _autotuned(cap: tuple):
    tiled, splitk = configs_for(cap)
    return (
        triton.autotune(tiled, key=["M", "N", "K"], prune_configs_by={"early_config_prune": _prune_tiled},
                        **autotune_options())(_gemm_tiled_kernel),
        triton.autotune(splitk, key=["M", "N", "K", "SPLIT_K"],
                        prune_configs_by={"early_config_prune": _prune_splitk}, **autotune_options())(
            _gemm_splitk_kernel),
    )


def choose_split_k(m: int, n: int, k: int, sms: int) -> int:
    """Splits of K for a decode GEMM: 1 (tiled kernel) unless M <= 16 and N's tiles leave SMs idle.

    Aim for WAVES programs per SM counting NOMINAL_BLOCK_N-wide tiles, round up to a power of two,
    keep each split at least MIN_K_PER_SPLIT long. Llama-3.1-8B on 132 SMs: qkv (N 6144) 4,
    o_proj (4096 x 4096) 8, down_proj (K 14336) 8, gate/up (N 28672) and lm_head 1.
    """
    if m > SPLIT_K_MAX_M:
        return 1
    want = cdiv(WAVES * sms, cdiv(n, NOMINAL_BLOCK_N))
    return max(1, min(next_pow2(want), k // MIN_K_PER_SPLIT, MAX_SPLIT_K))


def triton_linear(x, w, b=None, out=None, split_k=None, **_) -> torch.Tensor:
    """y = x @ w^T (+ b) in x's dtype. `split_k` overrides the heuristic (only for M <= 16); `out`
    is an optional [M, N] output buffer. W held in FP8 (an Fp8Weight): x quantized per step, then the
    Triton FP8 GEMM (kernels/fp8_linear.py)."""
    if isinstance(w, Fp8Weight):
        from kernels.fp8 import linear_triton

        return linear_triton(x, w, b)
    op = "triton_linear"
    check_tensors(op, x, x=x, w=w, b=b, out=out)
    check_same_dtype(op, x, w=w, b=b)
    if x.dim() != 2 or w.dim() != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(f"{op}: expected x [M, K] and w [N, K], got {tuple(x.shape)} and {tuple(w.shape)}")
    (m, k), n = x.shape, w.shape[0]
    if b is not None:
        check_shape(op, "b", b, (n,))
    y = check_out(op, out, (m, n), x.dtype, x.device)
    if m == 0 or n == 0:
        return y
    if k == 0:
        return y.copy_(b.expand(m, n) if b is not None else torch.zeros_like(y))
    if split_k is None:
        split_k = choose_split_k(m, n, k, sm_count(x.device))
    elif split_k < 1 or (split_k > 1 and m > SPLIT_K_MAX_M):
        raise ValueError(f"{op}: split_k={split_k} needs 1 <= split_k and M <= {SPLIT_K_MAX_M} (M = {m})")
    # fp32 operands: full-precision products (tl.dot would otherwise use tf32, ~1e-3 relative error)
    precision = "ieee" if x.dtype == torch.float32 else "tf32"
    bias = b if b is not None else y  # placeholder pointer, never read when HAS_BIAS is False
    if interpreting():
        tiled, splitk = _gemm_tiled_kernel, _gemm_splitk_kernel
    else:
        tiled, splitk = _autotuned(capability(x.device))
    if split_k == 1:
        grid = lambda meta: (cdiv(m, meta["BLOCK_M"]), cdiv(n, meta["BLOCK_N"]))
        extra = INTERPRETER_TILED if interpreting() else {}
        tiled[grid](x, x.stride(0), x.stride(1), w, w.stride(0), w.stride(1), bias,
                    y, y.stride(0), y.stride(1), m, n, k,
                    HAS_BIAS=b is not None, PRECISION=precision, **extra)
        if not interpreting():
            note_config(f"gemm M={m} N={n} K={k}", tiled)
        return y
    partial = torch.empty((split_k, m, n), dtype=torch.float32, device=x.device)
    grid = lambda meta: (cdiv(n, meta["BLOCK_N"]), split_k)
    extra = INTERPRETER_SPLITK if interpreting() else {}
    splitk[grid](x, x.stride(0), x.stride(1), w, w.stride(0), w.stride(1), partial, partial.stride(0),
                 partial.stride(1), m, n, k, split_k, PRECISION=precision, **extra)
    if not interpreting():
        note_config(f"gemm M={m} N={n} K={k} split_k={split_k}", splitk)
    _splitk_reduce_kernel[(m, cdiv(n, REDUCE_BLOCK_N))](
        partial, partial.stride(0), partial.stride(1), bias, y, y.stride(0), y.stride(1), n, split_k,
        HAS_BIAS=b is not None, BLOCK_S=next_pow2(split_k), BLOCK_N=REDUCE_BLOCK_N)
    return y

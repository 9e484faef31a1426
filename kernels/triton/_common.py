"""Helpers every Triton launcher shares: interpreter detection, device facts, argument checks, and the
@triton.jit pieces more than one kernel is built from (inlined into each kernel that calls them).

Nothing here runs at import time except the interpreter shim below, which only acts when
TRITON_INTERPRET=1 (a CPU run) and touches no device.
"""
from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

DTYPES = (torch.float16, torch.bfloat16, torch.float32)
# Stand-in SM count under the interpreter: programs run one after another on the CPU, so any small
# number keeps the split heuristics cheap there; tests pass split counts explicitly to cover splitting.
INTERPRETER_SMS = 4


def interpreting() -> bool:
    """True when Triton runs kernels under its CPU interpreter (read when asked, never cached)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.cache
def _cuda_sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of `device` (queried once per device, on first use)."""
    if interpreting() or device.type != "cuda":
        return INTERPRETER_SMS
    return _cuda_sm_count(device.index if device.index is not None else torch.cuda.current_device())


@functools.cache
def _cuda_capability(index: int) -> tuple:
    return torch.cuda.get_device_capability(index)


def capability(device: torch.device) -> tuple:
    """(major, minor) compute capability, e.g. (9, 0) Hopper; queried lazily and cached."""
    return _cuda_capability(device.index if device.index is not None else torch.cuda.current_device())


# Autotuning times each config with Triton's default benchmarker (25 ms warm-up + 100 ms repetitions, about
# 70 configs for a decode GEMM). TOKENBENCH_FAST_AUTOTUNE=1 (the GPU check sets it) times each with 5 + 20 ms:
# enough to rank configs whose runtimes differ by more than a few percent. Results are cached on disk by
# Triton itself with TRITON_CACHE_AUTOTUNING=1 (or cache_results below), under TRITON_CACHE_DIR.
FAST_AUTOTUNE_MS = (5, 20)


def _fast_bench(kernel_call, quantiles):
    import triton.testing

    return triton.testing.do_bench(kernel_call, warmup=FAST_AUTOTUNE_MS[0], rep=FAST_AUTOTUNE_MS[1],
                                   quantiles=quantiles)


def autotune_options() -> dict:
    """Extra triton.autotune arguments from the environment (read when the autotuner is built)."""
    opts = {"cache_results": os.environ.get("TRITON_CACHE_AUTOTUNING", "0") == "1"}
    if os.environ.get("TOKENBENCH_FAST_AUTOTUNE", "0") == "1":
        opts["do_bench"] = _fast_bench
    return opts


_RECORDERS: list = []


class record_configs:
    """Collects {launch: chosen config} for autotuned launches made inside the block (rows record them)."""

    def __enter__(self) -> dict:
        self.seen = {}
        _RECORDERS.append(self.seen)
        return self.seen

    def __exit__(self, *exc) -> bool:
        _RECORDERS.remove(self.seen)
        return False


def note_config(label: str, tuner) -> None:
    """After an autotuned launch: its chosen config, for the active recorders (a no-op when none is)."""
    config = getattr(tuner, "best_config", None)
    if _RECORDERS and config is not None:
        for seen in _RECORDERS:
            seen[label] = ", ".join(f"{k}={v}" for k, v in config.all_kwargs().items())


def next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def check_tensors(op: str, dtype_from: torch.Tensor, **tensors) -> None:
    """Same device for all, on CUDA unless interpreting, float dtype shared with `dtype_from`."""
    if dtype_from.dtype not in DTYPES:
        raise ValueError(f"{op}: dtype {dtype_from.dtype} not supported; use one of {DTYPES}")
    for name, t in tensors.items():
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.device != dtype_from.device:
            raise ValueError(f"{op}: {name} is on {t.device}, expected {dtype_from.device}")
    if not interpreting() and dtype_from.device.type != "cuda":
        raise ValueError(
            f"{op}: Triton kernels need CUDA tensors (got {dtype_from.device}); on a CPU set "
            "TRITON_INTERPRET=1 before importing kernels.triton")


def check_shape(op: str, name: str, t: torch.Tensor, shape: tuple) -> None:
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{op}: {name} has shape {tuple(t.shape)}, expected {tuple(shape)}")


def check_same_dtype(op: str, ref: torch.Tensor, **tensors) -> None:
    for name, t in tensors.items():
        if t is not None and t.dtype != ref.dtype:
            raise ValueError(f"{op}: {name} is {t.dtype}, expected {ref.dtype} like the other operands")


def check_out(op: str, out, shape: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Validate a caller-given output buffer, or allocate one."""
    if out is None:
        return torch.empty(shape, dtype=dtype, device=device)
    check_shape(op, "out", out, shape)
    if out.dtype != dtype or out.device != device:
        raise ValueError(f"{op}: out is {out.dtype} on {out.device}, expected {dtype} on {device}")
    if out.stride(-1) != 1:
        raise ValueError(f"{op}: out must have unit stride in its last dimension")
    return out


def unit_last_stride(t: torch.Tensor) -> torch.Tensor:
    """Kernels index the last dimension densely; views from the fused qkv output already are."""
    return t if t.stride(-1) == 1 else t.contiguous()


@triton.jit
def linear_tile(
    a_ptr, rows, mask_m, stride_am, stride_ak,  # A [*, K]: the tile's rows (any row indices) and their mask
    w_ptr, offs_n, mask_n, stride_wn, stride_wk,  # W [N, K] (nn.Linear layout): the tile's columns and mask
    K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    WIDEN_W: tl.constexpr,
):
    """acc[BLOCK_M, BLOCK_N] = A[rows, :] @ W[offs_n, :]^T accumulated in fp32: per K step one
    [BLOCK_M, BLOCK_K] tile of A and one [BLOCK_K, BLOCK_N] tile of W^T (masked elements read as zero).
    WIDEN_W: each W tile is converted to A's type in registers before the dot (FP8 weights, 16-bit x)."""
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask_k = offs_k < K
        a = tl.load(a_ptr + rows[:, None] * stride_am + offs_k[None, :] * stride_ak,
                    mask=mask_m[:, None] & mask_k[None, :], other=0.0)
        w = tl.load(w_ptr + offs_n[None, :] * stride_wn + offs_k[:, None] * stride_wk,
                    mask=mask_k[:, None] & mask_n[None, :], other=0.0)
        if WIDEN_W:
            w = w.to(a_ptr.dtype.element_ty)
        acc = tl.dot(a, w, acc)
    return acc


def _patch_interpreter_for_numpy_2_4() -> None:
    """Triton 3.6's interpreter turns a scalar into Python int with int(array of shape (1,)), which
    numpy >= 2.4 rejects, so any loop with a runtime bound fails (triton-lang/triton#9171, fixed
    after 3.6). Wrap its tensor patch to convert through .item(); a no-op where the bug is absent."""
    import numpy as np

    if tuple(int(p) for p in np.__version__.split(".")[:2]) < (2, 4):
        return
    from triton.runtime import interpreter

    original = getattr(interpreter, "_patch_lang_tensor", None)
    if original is None or getattr(original, "_tokenbench_fixed", False):
        return

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    patched._tokenbench_fixed = True
    interpreter._patch_lang_tensor = patched


if interpreting():
    _patch_interpreter_for_numpy_2_4()

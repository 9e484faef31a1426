"""Compile the MoE grouped GEMM and the FP8 GEMM for real GPU targets on a machine without a GPU.

    python -m kernels.triton.compile_check_scale sm_80 sm_90 sm_100

Same method as kernels/triton/compile_check.py (whose `specialise` it reuses): each kernel, with the
arguments its launcher passes at Mixtral-like and Llama-3.1-8B-like decode shapes, is compiled to a cubin
with Triton's bundled ptxas. The MoE kernels compile in bf16 for every target; the FP8 kernel (every
autotune config, both scalings) for targets with FP8 tensor cores (sm_90, sm_100; sm_80 has none).
Must run without TRITON_INTERPRET=1. Exit status 1 and one line per failure.
"""
from __future__ import annotations

import sys

import torch

from kernels.triton import _common
from kernels.triton import compile_check as base
from kernels.triton import fp8 as tfp8
from kernels.triton import moe as tmoe

FP8_TARGETS = {(9, 0), (10, 0)}
POINTER = {**base.POINTER, torch.float8_e4m3fn: "*fp8e4nv"}


def moe_launches(dt=torch.bfloat16) -> list:
    """(jit_fn, args, kwargs) of both MoE kernels at hidden 4096, expert FFN 14336, 8 experts top-2."""
    t, h, f, e, k = 8, 4096, 14336, 8, 2
    x = torch.empty((t, h), dtype=dt)
    w_gu, w_d = torch.empty((e, 2 * f, h), dtype=dt), torch.empty((e, h, f), dtype=dt)
    act, y = torch.empty((t * k, f), dtype=dt), torch.empty((t * k, h), dtype=torch.float32)
    i32 = torch.empty(t * k, dtype=torch.int32)
    per_e = torch.empty(e, dtype=torch.int32)
    p = torch.empty(t * k, dtype=torch.float32)
    meta = {"BLOCK_M": tmoe.block_m_for(t), "BLOCK_N": 64, "BLOCK_K": 64}
    return [
        (tmoe._gate_up_swiglu_kernel, (x, h, 1, w_gu, *w_gu.stride(), act, f, 1, i32, per_e, per_e, h, f, t), meta),
        (tmoe._down_kernel, (act, f, 1, w_d, *w_d.stride(), y, h, 1, i32, p, per_e, per_e, h, f, t), meta),
    ]


def fp8_launches() -> list:
    m, k, n = 16, 4096, 14336
    xq, wq = torch.empty((m, k), dtype=torch.float8_e4m3fn), torch.empty((n, k), dtype=torch.float8_e4m3fn)
    y = torch.empty((m, n), dtype=torch.bfloat16)
    out = []
    for per_row in (False, True):
        xs = torch.empty(m if per_row else 1, dtype=torch.float32)
        ws = torch.empty(n if per_row else 1, dtype=torch.float32)
        x16 = torch.empty((m, k), dtype=torch.bfloat16)
        for x, weight_only in ((xq, False), (x16, True)):
            args = (x, k, 1, xs, wq, k, 1, ws, y, n, 1, m, n, k)
            for cfg in tfp8._configs():
                out.append((tfp8._fp8_linear_kernel, args,
                            {"PER_ROW": per_row, "WEIGHT_ONLY": weight_only, "BLOCK_M": 16, **cfg.kwargs,
                             "num_warps": cfg.num_warps, "num_stages": cfg.num_stages}))
    return out


def check(cap: tuple) -> list:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    launches = moe_launches() + (fp8_launches() if cap in FP8_TARGETS else [])
    target = GPUTarget("cuda", cap[0] * 10 + cap[1], 32)
    failures = []
    saved = base.POINTER
    base.POINTER = POINTER  # fp8 pointers, for specialise
    try:
        for fn, args, kwargs in launches:
            signature, constexprs, attrs, options = base.specialise(fn, args, kwargs)
            what = f"sm_{cap[0]}{cap[1]} {fn.__name__} {constexprs} {options}"
            try:
                compiled = triton.compile(ASTSource(fn, signature, constexprs, attrs), target=target,
                                          options=options)
            except Exception as exc:  # noqa: BLE001 - report every failing kernel, not just the first
                failures.append(f"{what}: {type(exc).__name__}: {str(exc)[-800:]}")
                continue
            if compiled.metadata.shared > base.SMEM_LIMIT[cap]:
                failures.append(f"{what}: {compiled.metadata.shared} B of shared memory > {base.SMEM_LIMIT[cap]}")
    finally:
        base.POINTER = saved
    return failures


def main(argv) -> int:
    if _common.interpreting():
        print("compile_check_scale must run without TRITON_INTERPRET=1", file=sys.stderr)
        return 2
    archs = argv or ["sm_90"]
    unknown = [a for a in archs if a not in base.TARGETS]
    if unknown:
        print(f"unknown targets {unknown}; choose from {', '.join(base.TARGETS)}", file=sys.stderr)
        return 2
    failures = [line for a in archs for line in check(base.TARGETS[a])]
    for line in failures:
        print(line)
    print(f"{len(failures)} failures for {', '.join(archs)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

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

from kernels.triton import compile_check as base
from kernels.triton import fp8 as tfp8
from kernels.triton import moe as tmoe

FP8_TARGETS = {(9, 0), (10, 0)}


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
    return base.compile_launches(moe_launches() + (fp8_launches() if cap in FP8_TARGETS else []), cap)


def main(argv) -> int:
    return base.run_main(argv, check, "compile_check_scale")

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

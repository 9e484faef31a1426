"""Compile the low-precision expert GEMMs (kernels/triton/moe_lowprec.py) for real GPU targets on a machine
without a GPU, and read each cubin's registers and spills.

    python -m kernels.triton.compile_check_lowprec sm_80 sm_90 sm_100

Same method as kernels/triton/compile_check.py (whose `specialise` and `compile_launches` steps it reuses):
the launchers run with every kernel replaced by a recorder, at DeepSeek-V3's expert shapes for fp8-block
(hidden 7168, expert FFN 2048, top-8 + 1 shared) and gpt-oss-120b's for mxfp4 (hidden 2880, expert FFN 2880,
top-4), bf16 activations, decode batches 1 and 64 (16- and 64-row tiles: the two MMA paths); only 8
experts are allocated (never touched: the kernels see strides, not the expert count). Each launch is
compiled to a cubin with Triton's bundled ptxas, and the bundled cuobjdump reports its resource usage:
a kernel that spills (local memory or a stack frame) is a failure like one that does not compile.
fp8-block needs FP8 tensor cores (sm_90, sm_100; sm_80 has none); mxfp4 weight-only compiles for all three.
Must run without TRITON_INTERPRET=1. Prints one line per compiled kernel (registers, spill bytes), one per
failure, and exits 1 if there is any.
"""
from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
from unittest import mock

import torch

from kernels import expert_weights as ew
from kernels.triton import _common
from kernels.triton import compile_check as base
from kernels.triton import moe_lowprec as tlow

FP8_TARGETS = {(9, 0), (10, 0)}
FP8_SHAPE = (7168, 2048, 8, 1)  # hidden, expert FFN, top-k, shared: DeepSeek-V3
MXFP4_SHAPE = (2880, 2880, 4, 0)  # gpt-oss-120b
BATCHES = (1, 64)
EXPERTS_ALLOCATED = 8
FP8_KERNELS = ("_fp8_gate_up_kernel", "_fp8_down_kernel")
MXFP4_KERNELS = ("_mxfp4_gate_up_kernel", "_mxfp4_down_kernel")


def _weights(fmt: str, e: int, n: int, k: int):
    if fmt == "fp8-block":
        return ew.Fp8BlockWeight(torch.empty((e, n, k), dtype=ew.fp8_dtype()),
                                 torch.empty((e, -(-n // 128), -(-k // 128)), dtype=torch.float32))
    return ew.Mxfp4Weight(torch.empty((e, n, k // 2), dtype=torch.uint8),
                          torch.empty((e, n, k // ew.MX_BLOCK), dtype=torch.uint8))


def record_launches(fmt: str) -> list:
    """(jit_fn, args, kwargs) of both kernels of `fmt` at each decode batch."""
    calls = []
    names = FP8_KERNELS if fmt == "fp8-block" else MXFP4_KERNELS
    h, f, k, shared = FP8_SHAPE if fmt == "fp8-block" else MXFP4_SHAPE
    run = tlow.triton_moe_fp8_block if fmt == "fp8-block" else tlow.triton_moe_mxfp4
    e = EXPERTS_ALLOCATED
    with contextlib.ExitStack() as stack:
        for name in names:
            stack.enter_context(mock.patch.object(tlow, name, base._Recorder(getattr(tlow, name), calls)))
        # the launchers' device check must accept the CPU tensors used here
        stack.enter_context(mock.patch.object(_common, "interpreting", lambda: True))
        for t in BATCHES:
            x = torch.randn(t, h).to(torch.bfloat16)
            ids = torch.randint(0, e, (t, k + shared))
            p = torch.rand(t, k + shared)
            run(x, ids, p, _weights(fmt, e, 2 * f, h), _weights(fmt, e, h, f))
    return calls


def resource_usage(cubin: bytes) -> dict:
    """{"REG": .., "STACK": .., "LOCAL": .., "SHARED": ..} of the cubin's one kernel, from cuobjdump."""
    from triton.backends.nvidia import __file__ as nvidia_init

    tool = os.path.join(os.path.dirname(nvidia_init), "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([tool, "-res-usage", f.name], capture_output=True, text=True, check=True).stdout
    return {k: int(v) for k, v in re.findall(r"\b(REG|STACK|LOCAL|SHARED):(\d+)", out)}


def compile_and_measure(calls: list, cap: tuple) -> tuple[list, list]:
    """(one line per compiled kernel with its registers and spill bytes, failure lines)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    target = GPUTarget("cuda", cap[0] * 10 + cap[1], 32)
    lines, failures = [], []
    for fn, args, kwargs in calls:
        signature, constexprs, attrs, options = base.specialise(fn, args, kwargs)
        blocks = ", ".join(f"{k}={v}" for k, v in constexprs.items() if k.startswith("BLOCK"))
        what = f"sm_{cap[0]}{cap[1]} {fn.__name__} ({blocks})"
        try:
            compiled = triton.compile(ASTSource(fn, signature, constexprs, attrs), target=target,
                                      options=options)
            usage = resource_usage(compiled.asm["cubin"])
        except Exception as exc:  # noqa: BLE001 - a compiler error of any kind is a failure line
            failures.append(f"{what}: {type(exc).__name__}: {str(exc)[-800:]}")
            continue
        spill = usage.get("LOCAL", 0) + usage.get("STACK", 0)
        lines.append(f"{what}: {usage.get('REG')} registers, {spill} bytes local/stack (spills), "
                     f"{compiled.metadata.shared} B shared")
        if spill:
            failures.append(f"{what}: spills ({usage})")
        if compiled.metadata.shared > base.SMEM_LIMIT[cap]:
            failures.append(f"{what}: {compiled.metadata.shared} B of shared memory > {base.SMEM_LIMIT[cap]}")
    return lines, failures


def check(cap: tuple) -> list:
    calls = record_launches("mxfp4") + (record_launches("fp8-block") if cap in FP8_TARGETS else [])
    lines, failures = compile_and_measure(calls, cap)
    for line in lines:
        print(line)
    return failures


def main(argv) -> int:
    return base.run_main(argv, check, "compile_check_lowprec")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

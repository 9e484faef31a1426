"""Compile the MoE block's Triton kernels (the fused router selection, the grouped expert GEMM with biases and
gpt-oss's activation) for real GPU targets on a machine without a GPU, and check that none spills registers.

    python -m kernels.triton.compile_check_moe sm_80 sm_90 sm_100

Same method as kernels/triton/compile_check.py (its `specialise`, compile loop and command line): each
kernel with the arguments its launcher passes at the served models' shapes, in bf16, compiled to a cubin
with Triton's bundled ptxas. Then each kernel's PTX goes through that ptxas again with -v, and any
"bytes spill stores/loads" above zero is a failure line (the base check reads only shared memory).
Shapes: routers at Mixtral (8 experts, top-2), Qwen3-30B-A3B (128, top-8, not renormalised), DeepSeek-V3
(256 in 8 groups, 4 kept, top-8, x2.5) and gpt-oss-120b (128, top-4), at decode 8 and prefill 4096 tokens;
experts at gpt-oss-120b (hidden 2880, width 2880, biases, clamp 7) and DeepSeek-V3 (7168, 2048, no
bias; its shared MLP as one expert of width 2048) at 8 and 128 tokens.
Must run without TRITON_INTERPRET=1. Exit status 1 and one line per failure.
"""
from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from unittest import mock

import torch

from kernels.moe_router import RouterSpec
from kernels.triton import compile_check as base
from kernels.triton import moe_block as tblock
from kernels.triton import moe_router as trouter

ROUTERS = {  # name: (experts, top_k, spec)
    "mixtral": (8, 2, RouterSpec()),
    "qwen3-30b-a3b": (128, 8, RouterSpec(norm_topk_prob=False)),
    "deepseek-v3": (256, 8, RouterSpec("deepseek_group_sigmoid", True, 8, 4, 2.5)),
    "gpt-oss-120b": (128, 4, RouterSpec("gptoss")),
}
EXPERTS = {  # name: (hidden, width, top_k, biases, activation, limit)
    "gpt-oss-120b": (2880, 2880, 4, True, "gptoss_swiglu", 7.0),
    "deepseek-v3": (7168, 2048, 8, False, "swiglu", 0.0),
}


class _Recorder:
    def __init__(self, jit_fn, calls):
        self.jit_fn, self.calls = jit_fn, calls

    def __getitem__(self, _grid):
        def launch(*args, **kwargs):
            self.calls.append((self.jit_fn, args, kwargs))
        return launch


def moe_block_launches(dt=torch.bfloat16) -> list:
    """(jit_fn, args, kwargs) of every launch the launchers make at the shapes above (CPU tensors: the
    launchers only read shapes, strides and pointers to pass them on)."""
    calls = []
    patches = [mock.patch.object(module, name, _Recorder(getattr(module, name), calls))
               for module, name in ((trouter, "_router_select_kernel"), (tblock, "_block_gate_up_kernel"),
                                    (tblock, "_block_down_kernel"))]
    with patches[0], patches[1], patches[2]:
        for experts, top_k, spec in ROUTERS.values():
            for tokens in (8, 4096):
                trouter.triton_select(torch.empty(tokens, experts), spec, top_k, torch.empty(experts))
        for h, f, k, bias, act, limit in EXPERTS.values():
            e = 8  # the kernels see the expert count only in the grid: 8 keeps the (untouched) weights small
            for tokens in (8, 128):
                x = torch.empty(tokens, h, dtype=dt)
                ids = torch.zeros(tokens, k, dtype=torch.int64)
                p = torch.empty(tokens, k)
                none = (None, None)
                biases = (torch.empty(e, 2 * f, dtype=dt), torch.empty(e, h, dtype=dt)) if bias else none
                shared = (torch.empty(2 * f, h, dtype=dt), torch.empty(h, f, dtype=dt)) if not bias else none
                w_gu, w_d = torch.empty(e, 2 * f, h, dtype=dt), torch.empty(e, h, f, dtype=dt)
                tblock.triton_experts(x, ids, p, w_gu, w_d, *biases, act, limit, *shared)
    return calls


def _ptx_spills(ptx: str, cap: tuple) -> int:
    """Bytes of spill stores + loads ptxas -v reports for this PTX (the ptxas Triton compiled it with)."""
    from triton.backends.nvidia.compiler import get_ptxas

    arch = re.search(r"^\.target\s+(\S+)", ptx, re.M).group(1)
    with tempfile.NamedTemporaryFile("w", suffix=".ptx") as f:
        f.write(ptx)
        f.flush()
        run = subprocess.run([get_ptxas(cap[0] * 10 + cap[1]).path, "-v", "--gpu-name", arch, f.name,
                              "-o", "/dev/null"], capture_output=True, text=True, check=True)
    return sum(int(n) for n in re.findall(r"(\d+) bytes spill (?:stores|loads)", run.stdout + run.stderr))


def spill_failures(calls: list, cap: tuple) -> list:
    """One line per launch whose kernel spills registers on `cap`."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    target = GPUTarget("cuda", cap[0] * 10 + cap[1], 32)
    out, seen = [], set()
    for fn, args, kwargs in calls:
        signature, constexprs, attrs, options = base.specialise(fn, args, kwargs)
        key = (fn.__name__, repr(sorted(signature.items())), repr(sorted(constexprs.items())))
        if key in seen:
            continue
        seen.add(key)
        try:
            compiled = triton.compile(ASTSource(fn, signature, constexprs, attrs), target=target,
                                      options=options)
        except Exception:  # noqa: BLE001 - compile_launches reports compile errors; not repeated here
            continue
        spilled = _ptx_spills(compiled.asm["ptx"], cap)
        if spilled:
            out.append(f"sm_{cap[0]}{cap[1]} {fn.__name__} {constexprs}: {spilled} bytes of register spills")
    return out


def check(cap: tuple) -> list:
    calls = moe_block_launches()
    launched = {fn.__name__ for fn, _, _ in calls}
    want = {"_router_select_kernel", "_block_gate_up_kernel", "_block_down_kernel"}
    failures = [] if launched == want else [f"launched kernels {sorted(launched)}, expected {sorted(want)}"]
    return failures + base.compile_launches(calls, cap) + spill_failures(calls, cap)


def main(argv) -> int:
    return base.run_main(argv, check, "compile_check_moe")

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

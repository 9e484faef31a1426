"""Compile every Triton kernel for real GPU targets on a machine without a GPU.

    python -m kernels.triton.compile_check sm_80 sm_90 sm_100

The interpreter runs kernels as numpy and never sees the compiler, so a kernel can pass every CPU test
and still fail to compile for a GPU. This runs each launcher's GPU path (interpreting(), capability()
and the SM count patched) at Llama-3.1-8B-like shapes in bf16 (prefill attention also in fp16, at
head dims 64, 80 and 128), with every kernel replaced by a recorder; each recorded launch, and each
autotune config the GEMM and prefill attention would try, is then compiled down to
a cubin with Triton's bundled ptxas, specialised as the JIT would (ints equal to 1 become constants,
16-divisible ints and 16-byte-aligned pointers get divisibility hints). It must run in a process
without TRITON_INTERPRET=1: under the interpreter Triton's own library functions are not compilable.
Exit status 1 and one line per failure if anything does not compile or needs too much shared memory.
"""
from __future__ import annotations

import contextlib
import sys
from unittest import mock

import torch

from kernels import rope
from kernels.triton import _common, activation, attention, gemm, kv_cache, norm
from kernels.triton import prefill_attention as tprefill
from kernels.triton import rope as trope

MODULES = (gemm, attention, norm, trope, kv_cache, activation, tprefill)
TARGETS = {"sm_80": (8, 0), "sm_90": (9, 0), "sm_100": (10, 0)}
SMEM_LIMIT = {(8, 0): 163 * 1024, (9, 0): 227 * 1024, (10, 0): 227 * 1024}  # opt-in bytes per block
POINTER = {torch.float16: "*fp16", torch.bfloat16: "*bf16", torch.float32: "*fp32", torch.int32: "*i32",
           torch.int64: "*i64", torch.float8_e4m3fn: "*fp8e4nv", torch.uint8: "*u8"}
LAUNCHED_KERNELS = 11  # every @triton.jit function a launcher launches (helpers excluded)


class _Recorder:
    """Stands in for a kernel: `kernel[grid](*args, **kw)` records the launch (once per autotune config)."""

    def __init__(self, jit_fn, calls, configs=None, prune=None):
        self.jit_fn, self.calls, self.configs, self.prune = jit_fn, calls, configs, prune

    def __getitem__(self, _grid):
        def launch(*args, **kwargs):
            configs = self.configs
            if configs and self.prune:
                configs = self.prune(configs, dict(zip(self.jit_fn.arg_names, args)))
            for cfg in configs or [None]:
                extra = {} if cfg is None else {**cfg.kwargs, "num_warps": cfg.num_warps,
                                                "num_stages": cfg.num_stages}
                self.calls.append((self.jit_fn, args, {**kwargs, **extra}))
        return launch


def _kernels(module) -> dict:
    return {name: obj for name, obj in vars(module).items() if type(obj).__name__ == "JITFunction"}


def record_launches(cap: tuple) -> list:
    """(jit_fn, args, kwargs) of every launch the launchers make on a `cap` GPU."""
    calls = []
    with contextlib.ExitStack() as stack:
        patch = stack.enter_context
        for module in MODULES:
            for name, fn in _kernels(module).items():
                patch(mock.patch.object(module, name, _Recorder(fn, calls)))
            for name, value in (("interpreting", lambda: False), ("capability", lambda _d: cap),
                                ("sm_count", lambda _d: 132)):
                if hasattr(module, name):
                    patch(mock.patch.object(module, name, value))
        # _common.interpreting() stays as it is: its device check must accept the CPU tensors used here
        patch(mock.patch.object(_common, "interpreting", lambda: True))
        tiled, splitk = gemm.configs_for(cap)
        tuned = (_Recorder(gemm._gemm_tiled_kernel.jit_fn, calls, tiled, gemm._prune_tiled),
                 _Recorder(gemm._gemm_splitk_kernel.jit_fn, calls, splitk, gemm._prune_splitk))
        patch(mock.patch.object(gemm, "_autotuned", lambda _cap: tuned))
        prefill = _Recorder(tprefill._prefill_attn_kernel.jit_fn, calls, tprefill.configs_for(cap),
                            tprefill._prune)
        patch(mock.patch.object(tprefill, "_autotuned", lambda _cap: prefill))
        _launch_everything(torch.bfloat16)
        _launch_prefill()
    return calls


def _launch_everything(dt):
    """Each launcher once per code path (hidden 4096, 32 query / 8 KV heads, head dim 128)."""
    def r(*shape):
        return torch.randn(shape).to(dt)

    h, hq, hkv, d, s, b = 4096, 32, 8, 128, 1024, 2
    gemm.triton_linear(r(1, h), r(h, h))  # split-K + reduction
    gemm.triton_linear(r(256, h), r(1024, h), r(1024))  # tiled, with bias, every config kept
    qkv = r(b, (hq + 2 * hkv) * d)
    q, k, v = (qkv[:, : hq * d].view(b, hq, d), qkv[:, hq * d: (hq + hkv) * d].view(b, hkv, d),
               qkv[:, (hq + hkv) * d:].view(b, hkv, d))
    cache = r(b, hkv, s, d)
    lengths = torch.tensor([s, 700], dtype=torch.int32)
    attention.triton_decode_attention(r(b, hq, d), cache, cache, lengths=lengths)  # split + merge
    attention.triton_decode_attention(r(64, hq, d), r(64, hkv, 16, d), r(64, hkv, 16, d))  # one split
    pages = r(b * s // 16, hkv, 16, d)
    table = torch.arange(b * s // 16, dtype=torch.int32).view(b, -1)
    attention.triton_paged_decode_attention(r(b, hq, d), pages, pages, table, lengths)
    norm.triton_rmsnorm_residual(r(b, h), r(b, h), r(h), 1e-5)
    activation.triton_swiglu(r(b, 2 * 14336))
    positions = torch.tensor([s - 1, 699])
    cos, sin = rope.cos_sin(positions, d, 500000.0)
    trope.triton_rope(q, k, cos, sin)
    trope.triton_rope_append(q, k, v, cos, sin, cache, cache, positions)
    trope.triton_rope_append(q, k, v, cos, sin, pages, pages, positions, block_table=table)
    kv_cache.triton_append(k, v, cache, cache, positions)
    kv_cache.triton_paged_append(k, v, pages, pages, table, positions)


def _launch_prefill():
    """Prefill attention in both 16-bit types at each supported head dim (32 query / 8 KV heads), a chunk
    of 256 after a 128-token prefix (every config kept; 16-divisible sizes); and at head dim 80 a ragged
    chunk too (45 after 5: no divisibility hints on T and S, only 64-row query tiles kept)."""
    cases = [(d, 256, 128) for d in (64, 80, 128)] + [(80, 45, 5)]
    for dt in (torch.bfloat16, torch.float16):
        for d, t, prefix in cases:
            q = torch.randn(1, 32, t, d).to(dt)
            kv = torch.randn(1, 8, prefix + t, d).to(dt)
            tprefill.triton_prefill_attention(q, kv, kv, prefix)


def specialise(jit_fn, args, kwargs) -> tuple:
    """(signature, constexprs, attrs, options) as Triton's JIT builds them for these arguments."""
    kwargs = dict(kwargs)
    options = {k: kwargs.pop(k) for k in ("num_warps", "num_stages") if k in kwargs}
    values = {**dict(zip(jit_fn.arg_names, args)), **kwargs}
    signature, constexprs, attrs = {}, {}, {}
    for i, param in enumerate(jit_fn.params):
        name, v = param.name, values[param.name]
        if param.is_constexpr or isinstance(v, (bool, str)) or (isinstance(v, int) and v == 1):
            signature[name], constexprs[name] = "constexpr", v
        elif isinstance(v, torch.Tensor):
            signature[name] = POINTER[v.dtype]
            if v.data_ptr() % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
        elif isinstance(v, int):
            signature[name] = "i32" if abs(v) < 2**31 else "i64"
            if v % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
        elif isinstance(v, float):
            signature[name] = "fp32"
        else:
            raise TypeError(f"{jit_fn.__name__}.{name}: cannot specialise {type(v).__name__}")
    return signature, constexprs, attrs, options


def compile_launches(calls: list, cap: tuple) -> list:
    """Compile each recorded (jit_fn, args, kwargs) for compute capability `cap`; one line per failure
    (every failing kernel is reported, not just the first)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    target = GPUTarget("cuda", cap[0] * 10 + cap[1], 32)
    failures = []
    for fn, args, kwargs in calls:
        signature, constexprs, attrs, options = specialise(fn, args, kwargs)
        what = f"sm_{cap[0]}{cap[1]} {fn.__name__} {constexprs} {options}"
        try:
            compiled = triton.compile(ASTSource(fn, signature, constexprs, attrs), target=target, options=options)
        except Exception as exc:  # noqa: BLE001 - a compiler error of any kind is a failure line
            failures.append(f"{what}: {type(exc).__name__}: {str(exc)[-800:]}")
            continue
        if compiled.metadata.shared > SMEM_LIMIT[cap]:
            failures.append(f"{what}: {compiled.metadata.shared} B of shared memory > {SMEM_LIMIT[cap]}")
    return failures


def check(cap: tuple) -> list:
    """Failure lines for compute capability `cap` (empty when everything compiles and fits)."""
    calls = record_launches(cap)
    seen = {fn.__name__ for fn, _, _ in calls}
    failures = [] if len(seen) == LAUNCHED_KERNELS else [f"launched kernels {sorted(seen)}"]
    return failures + compile_launches(calls, cap)


def run_main(argv, check_fn, name: str) -> int:
    """The command line shared by the compile checks: targets in, one line per failure out."""
    if _common.interpreting():
        print(f"{name} must run without TRITON_INTERPRET=1", file=sys.stderr)
        return 2
    archs = argv or ["sm_90"]
    unknown = [a for a in archs if a not in TARGETS]
    if unknown:
        print(f"unknown targets {unknown}; choose from {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    failures = [line for a in archs for line in check_fn(TARGETS[a])]
    for line in failures:
        print(line)
    print(f"{len(failures)} failures for {', '.join(archs)}")
    return 1 if failures else 0


def main(argv) -> int:
    return run_main(argv, check, "compile_check")

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

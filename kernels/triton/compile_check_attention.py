"""Compile the attention kernels of the models served today for real GPU targets on a machine without a GPU:
sliding-window and sink variants of decode and prefill attention, q/k norm, RMSNorm, MLA's per-head GEMM,
latent-cache append, MLA decode (split + merge) and MLA prefill (every autotune config).

    python -m kernels.triton.compile_check_attention sm_80 sm_90 sm_100

Same method as kernels/triton/compile_check.py (its recorder, `specialise` and command line): each launcher's
GPU path runs with the kernels replaced by recorders, at DeepSeek-V3 / gpt-oss / Qwen3-8B-like shapes in bf16
(prefill also fp16), and every recorded launch is compiled to a cubin with Triton's bundled ptxas. On top of
the shared-memory limit this check also fails any kernel whose ptxas report shows register spills (spill
stores or loads > 0). Must run without TRITON_INTERPRET=1. Exit status 1 and one line per failure.
"""
from __future__ import annotations

import contextlib
import io
import re
import sys
from unittest import mock

import torch

from kernels.triton import _common
from kernels.triton import attention as tattn
from kernels.triton import compile_check as base
from kernels.triton import head_gemm as thg
from kernels.triton import latent_cache as tlc
from kernels.triton import mla_attention as tmla
from kernels.triton import mla_prefill_attention as tmlap
from kernels.triton import prefill_attention as tprefill
from kernels.triton import qk_norm as tqk
from kernels.triton import rmsnorm as trms

MODULES = (tattn, tprefill, tqk, trms, thg, tlc, tmla, tmlap)
# every @triton.jit function these launchers launch (helpers excluded)
EXPECTED_KERNELS = {"_attn_split_kernel", "_attn_merge_kernel", "_prefill_attn_kernel", "_qk_norm_kernel",
                    "_rmsnorm_kernel", "_head_gemm_kernel", "_latent_append_kernel", "_mla_split_kernel",
                    "_mla_merge_kernel", "_mla_prefill_kernel"}
SPILLS = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")


def record_launches(cap: tuple) -> list:
    calls = []
    with contextlib.ExitStack() as stack:
        patch = stack.enter_context
        for module in MODULES:
            for name, fn in base._kernels(module).items():
                patch(mock.patch.object(module, name, base._Recorder(fn, calls)))
            for name, value in (("interpreting", lambda: False), ("capability", lambda _d: cap),
                                ("sm_count", lambda _d: 132)):
                if hasattr(module, name):
                    patch(mock.patch.object(module, name, value))
        patch(mock.patch.object(_common, "interpreting", lambda: True))
        for module, kernel in ((tprefill, tprefill._prefill_attn_kernel), (tmlap, tmlap._mla_prefill_kernel)):
            def tuned(_cap, masked=False, module=module, kernel=kernel):
                configs = module.configs_for(cap, masked) if masked else module.configs_for(cap)
                return base._Recorder(kernel.jit_fn, calls, configs, tprefill._prune)
            patch(mock.patch.object(module, "_autotuned", tuned))
        _launch_everything()
    return calls


def _launch_everything():
    def r(*shape, dt=torch.bfloat16):
        return torch.randn(shape).to(dt)

    # gpt-oss-120b-like GQA: 64 query / 8 KV heads of 64, window 128, sinks
    b, hq, hkv, d, s = 2, 64, 8, 64, 1024
    sinks = torch.randn(hq)
    lengths = torch.tensor([s, 700], dtype=torch.int32)
    cache = r(b, hkv, s, d)
    tattn.triton_decode_attention(r(b, hq, d), cache, cache, lengths=lengths, window=512, sinks=sinks,
                                  num_splits=4)  # split + merge
    tattn.triton_decode_attention(r(64, hq, d), r(64, hkv, 128, d), r(64, hkv, 128, d), window=128,
                                  sinks=sinks, num_splits=1)
    pages = r(b * s // 16, hkv, 16, d)
    table = torch.arange(b * s // 16, dtype=torch.int32).view(b, -1)
    tattn.triton_paged_decode_attention(r(b, hq, d), pages, pages, table, lengths, window=128, sinks=sinks)
    # every config; fp16 once (same code, other MMA type); a ragged chunk keeps only 64-row tiles
    for dt, t, prefix, window, sink in ((torch.bfloat16, 256, 127, 128, sinks), (torch.bfloat16, 256, 128, 0, sinks),
                                        (torch.bfloat16, 256, 127, 128, None), (torch.bfloat16, 45, 5, 128, sinks),
                                        (torch.float16, 256, 127, 128, sinks)):
        kv = r(1, hkv, prefix + t, d, dt=dt)
        tprefill.triton_prefill_attention(r(1, hq, t, d, dt=dt), kv, kv, prefix, window=window, sinks=sink)
    # Qwen3-8B q/k norm on a fused qkv row: 32 query / 8 KV heads of 128
    qkv = r(8, (32 + 16) * 128)
    tqk.triton_qk_norm(qkv[:, :4096].view(8, 32, 128), qkv[:, 4096:5120].view(8, 8, 128), r(128), r(128), 1e-6)
    # DeepSeek-V3 MLA: 128 heads, q_lora 1536, kv_lora 512, rope 64, nope 128, v 128
    trms.triton_rmsnorm(r(8, 1536), r(1536), 1e-6)
    ckv = r(8, 576)
    trms.triton_rmsnorm(ckv[:, :512], r(512), 1e-6)
    kv_b = r(128 * 256, 512).view(128, 256, 512)
    for m in (8, 256):
        q = r(m, 128 * 192).view(m, 128, 192)
        thg.triton_head_gemm(q[..., :128], kv_b[:, :128].transpose(1, 2))  # q absorb: [H, 512, 128] view
        thg.triton_head_gemm(r(m, 128, 512), kv_b[:, 128:])  # out absorb
    latent = r(8, 4096, 576)
    tlc.triton_latent_append(ckv[:, :512], ckv[:, 512:], latent, torch.arange(8))
    q = r(2, 128, 192)
    tmla.triton_mla_decode(r(2, 128, 512), q[..., 128:], r(2, 4096, 576), 0.1,
                           lengths=torch.tensor([4096, 3000], dtype=torch.int32))  # split + merge
    tmla.triton_mla_decode(r(64, 16, 512), r(64, 16, 64), r(64, 256, 576), 0.1, num_splits=1)
    for dt, t, prefix in ((torch.bfloat16, 256, 128), (torch.bfloat16, 45, 5), (torch.float16, 256, 128)):
        cache = r(1, prefix + t, 576, dt=dt)
        tmlap.triton_mla_prefill(r(1, 16, t, 192, dt=dt), r(1, prefix + t, 16, 256, dt=dt), cache[..., 512:],
                                 prefix, 0.1)


def compile_with_spill_check(calls: list, cap: tuple) -> list:
    """base.compile_launches' failures, plus one line per kernel whose ptxas -v report shows spills."""
    import triton

    failures = []
    with mock.patch.object(triton.knobs.nvidia, "dump_ptxas_log", True), \
            mock.patch.object(triton.knobs.compilation, "always_compile", True):
        for call in calls:
            log = io.StringIO()
            with contextlib.redirect_stdout(log):
                failed = base.compile_launches([call], cap)
            failures += failed
            spills = [(int(a), int(b_)) for a, b_ in SPILLS.findall(log.getvalue())]
            _, constexprs, _, options = base.specialise(*call)
            what = f"sm_{cap[0]}{cap[1]} {call[0].__name__} {constexprs} {options}"
            if any(a or b_ for a, b_ in spills):
                failures.append(f"{what}: register spills (store, load bytes) {spills}")
            elif not spills and not failed:
                failures.append(f"{what}: no ptxas report to read spills from")
    return failures


def check(cap: tuple) -> list:
    calls = record_launches(cap)
    seen = {fn.__name__ for fn, _, _ in calls}
    failures = [] if seen == EXPECTED_KERNELS else [f"launched kernels {sorted(seen)}, expected "
                                                    f"{sorted(EXPECTED_KERNELS)}"]
    return failures + compile_with_spill_check(calls, cap)


def main(argv) -> int:
    return base.run_main(argv, check, "compile_check_attention")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

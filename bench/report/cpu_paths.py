"""What the CPU choosers found in this process, for a run's output: each GEMM and attention shape class's
candidates with the weight (or cache) bytes per second each reached, the winner starred, the ones that
failed their float64 check named; and, where the run's dtype has no native matmul on this CPU, a line that
says so with the best figure found, so a slow half-precision row is read as the CPU's, not the model's."""
from __future__ import annotations

from bench.configs.cpu_dtype import cpu_flags

_ELEMENT_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
# flags under which the CPU multiplies the dtype in hardware (oneDNN's native bf16 / fp16 matmul)
NATIVE_FLAGS = {"bf16": ("amx_bf16", "avx512_bf16"), "fp16": ("amx_fp16", "avx512_fp16")}


def gemm_lines() -> list[str]:
    from kernels.cpu_gemm import calibrations

    lines = []
    for m, k, n, dtype, choice in calibrations():
        elt = _ELEMENT_BYTES.get(dtype, 4)
        reached = ", ".join(f"{'*' if name == choice.name else ''}{name} {n * k * elt / s / 1e9:.3g}"
                            for name, s in sorted(choice.seconds.items(), key=lambda kv: kv[1]))
        failed = [name for name in choice.errors if name not in choice.seconds]
        lines.append(f"  {dtype} M={m} K={k} N={n}: {reached} GB/s of weights"
                     + (f"; failed check: {', '.join(failed)}" if failed else ""))
    return lines


def attention_lines() -> list[str]:
    from kernels.cpu_attention import calibrations

    lines = []
    for q_shape, cache_shape, dtype, choice in calibrations():
        b, hkv, s, d = cache_shape
        cache_bytes = 2 * b * hkv * s * d * _ELEMENT_BYTES[dtype]
        reached = ", ".join(f"{'*' if name == choice.name else ''}{name} {cache_bytes / sec / 1e9:.3g}"
                            for name, sec in sorted(choice.seconds.items(), key=lambda kv: kv[1]))
        failed = [name for name in choice.errors if name not in choice.seconds]
        lines.append(f"  {dtype} attention batch {b}, {hkv} KV heads x {s} x {d}: {reached} GB/s of cache"
                     + (f"; failed check: {', '.join(failed)}" if failed else ""))
    return lines


def paths_table() -> str:
    """Every calibrated class, GEMMs then attention (* = chosen, median seconds of the calibration)."""
    return "\n".join(["CPU paths measured in this process (* = chosen):", *gemm_lines(), *attention_lines()])


def lacking_note(dtype: str, flags: set[str] | None = None) -> str | None:
    """One line where `dtype` has no native matmul on this CPU, with the best GEMM figure found for it."""
    if dtype not in NATIVE_FLAGS:
        return None
    flags = cpu_flags() if flags is None else flags
    if any(f in flags for f in NATIVE_FLAGS[dtype]):
        return None
    from kernels.cpu_gemm import calibrations

    best = [(n * k * _ELEMENT_BYTES[dtype] / min(c.seconds.values()), c.name, m, k, n)
            for m, k, n, dt, c in calibrations() if dt == dtype]
    note = (f"{dtype} on this CPU: no native {dtype} matmul (no {' / '.join(NATIVE_FLAGS[dtype])} flag); "
            f"weights are widened to fp32 in cache or in registers")
    if best:
        gbps, name, m, k, n = max(best)
        note += f"; best path found {name}, {gbps / 1e9:.3g} GB/s of weights (M={m} K={k} N={n})"
    return note

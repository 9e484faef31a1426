"""The CPU run's default dtype: the one the CPU multiplies natively, so the default shows it at its best."""
# flags under which oneDNN runs a bf16 matmul in hardware rather than converting to fp32 first
_NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:  # not Linux: no flags to read, so fp32, the safe default
        pass
    return set()


def cpu_default_dtype(flags: set[str] | None = None) -> tuple[str, str]:
    """(dtype, why) for a CPU run given no --dtype."""
    flags = cpu_flags() if flags is None else flags
    native = [f for f in _NATIVE_BF16_FLAGS if f in flags]
    if native:
        return "bf16", f"CPU has native bf16 matmul ({', '.join(native)}); --dtype fp32 for fp32"
    return "fp32", "CPU has no native bf16 matmul (no amx_bf16 / avx512_bf16 flag)"

"""Derived figures from a measured time and the declared work, computed in one place.

Roofline bound = max(FLOPs / peak FLOP/s, bytes / bandwidth); efficiency = bound / measured time.
Both are given against the spec sheet and against what was measured on the same device.
"""
from __future__ import annotations

from bench.configs.device_catalog import PEAK_DTYPE


def roofline_seconds(flops: int, nbytes: int, peak_flops: float | None, bandwidth: float | None) -> float | None:
    """The larger of the compute and memory floors; None when a floor that matters is unknown."""
    if bandwidth is None or bandwidth <= 0:
        return None
    memory = nbytes / bandwidth
    if flops == 0:
        return memory
    if peak_flops is None or peak_flops <= 0:
        return None
    return max(flops / peak_flops, memory)


def bound_kind(flops: int, nbytes: int, peak_flops: float | None, bandwidth: float | None) -> str | None:
    if bandwidth is None or peak_flops is None or flops == 0:
        return "memory" if flops == 0 else None
    return "compute" if flops / peak_flops > nbytes / bandwidth else "memory"


def derive(flops: int, nbytes: int, seconds: float, dtype: str, spec=None, copy_bw: float | None = None,
           measured_peak_flops: float | None = None) -> dict:
    """TFLOP/s, GB/s, % of copy bandwidth and roofline efficiencies for one timed row."""
    peak_key = PEAK_DTYPE.get(dtype, dtype)
    spec_peak = None if spec is None else spec.peak_flops(peak_key)
    spec_bw = None if spec is None else spec.mem_bw_bytes_per_s
    roof_spec = roofline_seconds(flops, nbytes, spec_peak, spec_bw)
    roof_meas = roofline_seconds(flops, nbytes, measured_peak_flops, copy_bw)
    return {
        "tflops": flops / seconds / 1e12,
        "gbps": nbytes / seconds / 1e9,
        "intensity": flops / nbytes if nbytes else None,
        "pct_copy_bw": None if not copy_bw else nbytes / seconds / copy_bw,
        "pct_spec_bw": None if not spec_bw else nbytes / seconds / spec_bw,
        "pct_spec_flops": None if not spec_peak else flops / seconds / spec_peak,
        "pct_measured_flops": None if not measured_peak_flops else flops / seconds / measured_peak_flops,
        "bound": bound_kind(flops, nbytes, spec_peak, spec_bw),
        "roofline_seconds_spec": roof_spec,
        "efficiency_spec": None if roof_spec is None else roof_spec / seconds,
        "roofline_seconds_measured": roof_meas,
        "efficiency_measured": None if roof_meas is None else roof_meas / seconds,
    }

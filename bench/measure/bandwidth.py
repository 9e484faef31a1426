"""The device's measured copy bandwidth: the ceiling memory-bound ops are read against.

Counts bytes read plus bytes written, as datasheet bandwidth does (a 1 GiB copy moves 2 GiB).
"""
from __future__ import annotations

import torch

from bench.measure.timing import time_cpu, time_cuda


def copy_bandwidth(device, size_bytes: int | None = None, budget_s: float = 2.0) -> dict:
    """Median bytes/s of a large device-to-device (or RAM-to-RAM) copy, far larger than any cache."""
    if size_bytes is None:
        size_bytes = 1 << 30 if device.kind == "cuda" else 256 << 20
    n = size_bytes // 4
    src = torch.rand(n, device=device.torch_device)  # random, never zeros
    dst = torch.empty_like(src)
    timer = time_cuda if device.kind == "cuda" else time_cpu
    timing = timer(lambda _: dst.copy_(src), [None], budget_s, None)
    moved = 2 * n * 4
    return {
        "measured_copy_gbps": moved / timing.p50 / 1e9,
        "copy_bytes": moved,
        "copy_timing": timing.summary(),
    }


def copy_budget(case_budget_s: float) -> float:
    """The copy measurement's time budget: twice a run's per-case budget, within [0.2, 2] s. The default run
    (1 s a case) keeps 2 s; a quick run (the tests' 0.02 s) spends 0.2 s, not 2 s, on a figure that only
    scales its % of copy bandwidth column."""
    return min(2.0, max(0.2, 2.0 * case_budget_s))


def record_copy_bandwidth(device, record: dict, budget_s: float = 2.0):
    """Measure the copy bandwidth and set it as the record's measured ceiling (ceilings.measured_gbps, the
    one name it has), with the measurement's details beside it; returns the record's ceilings."""
    from bench.records.store import set_measured

    bw = copy_bandwidth(device, budget_s=budget_s)
    record.update(copy_bytes=bw["copy_bytes"], copy_timing=bw["copy_timing"])
    return set_measured(record, measured_gbps=bw["measured_copy_gbps"])


# Beyond this change between the copy bandwidth before and after the sweep, "% of copy bandwidth" figures
# are flagged: seen on a shared 2-core VM, whose copy bandwidth moved between about 40 and 70 GB/s.
BANDWIDTH_DRIFT = 0.15


def check_bandwidth_drift(device, record: dict, say=None, budget_s: float = 2.0) -> None:
    """Measure the copy bandwidth again after the sweep, so a machine whose memory bandwidth moved while
    it was measured is flagged rather than trusted."""
    after = copy_bandwidth(device, budget_s=budget_s)["measured_copy_gbps"]
    before = record["ceilings"].measured_gbps
    record["measured_copy_gbps_after"] = after
    drift = abs(after - before) / before
    record["bandwidth_drift"] = drift
    if drift > BANDWIDTH_DRIFT:
        record["bandwidth_warning"] = (f"copy bandwidth moved from {before:.1f} to {after:.1f} GB/s during the run: "
                                       "figures relative to it are unreliable on this machine")
        if say:
            say(record["bandwidth_warning"])

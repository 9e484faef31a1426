"""The device's measured copy bandwidth: the ceiling memory-bound ops are read against.

Counts bytes read plus bytes written, as datasheet bandwidth does (a 1 GiB copy moves 2 GiB).
"""
from __future__ import annotations

import torch

from bench.timing import time_cpu, time_cuda


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

"""Timers that measure the device, not the cache or the launch queue.

CUDA: events around each sample, the L2 flushed before a sample when the rotated input sets fit in it.
CPU:  perf_counter around each sample, the last-level cache flushed the same way.
Samples are taken until the noise (IQR / median) is under the target or the time budget ends.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

NOISE_TARGET = 0.05
MIN_SAMPLES = 10
MAX_SAMPLES = 2000
# A CPU sample shorter than this is dominated by perf_counter and Python call overhead,
# so short ops are repeated inside one sample (rotating input sets) up to this length.
CPU_MIN_SAMPLE_S = 200e-6


@dataclass
class Timing:
    samples: list  # seconds per call, one entry per sample
    warmup_s: float  # first-call time (compile, autotune, allocator), reported apart
    flushed: bool  # the cache was flushed before each sample
    inner: int = 1  # calls per sample

    @property
    def p10(self) -> float:
        return float(np.percentile(self.samples, 10))

    @property
    def p50(self) -> float:
        return float(np.median(self.samples))

    @property
    def p90(self) -> float:
        return float(np.percentile(self.samples, 90))

    @property
    def noise(self) -> float:
        q1, q3 = np.percentile(self.samples, [25, 75])
        return float((q3 - q1) / self.p50) if self.p50 > 0 else math.inf

    @property
    def noisy(self) -> bool:
        return self.noise > NOISE_TARGET

    def summary(self) -> dict:
        return {
            "seconds_p50": self.p50, "seconds_p10": self.p10, "seconds_p90": self.p90,
            "samples": len(self.samples), "noise": self.noise, "noisy": self.noisy,
            "warmup_s": self.warmup_s, "cache_flushed": self.flushed, "calls_per_sample": self.inner,
            "levels": distinct_levels(self.samples),
        }


def distinct_levels(samples, resolution: float = 0.02) -> int:
    """How many distinct values the samples take at 2% resolution: a timing stuck on a CPU scheduler's
    quantum (whole multiples of about 4 ms) takes two or three, a real measurement of the op many."""
    levels = []
    for s in sorted(samples):
        if not levels or s > levels[-1] * (1 + resolution):
            levels.append(s)
    return len(levels)


class CacheFlusher:
    """Writes a buffer twice the size of the last-level cache, evicting whatever the last call left."""

    def __init__(self, device: str, cache_bytes: int):
        self.buf = torch.empty(max(2 * cache_bytes, 1 << 20) // 4, dtype=torch.int32, device=device)
        self.counter = 0

    def __call__(self) -> None:
        self.counter += 1
        self.buf.fill_(self.counter)


# At most this many rotated input sets: with the flush fallback below, more sets buy nothing but memory.
MAX_ROTATION_SETS = 16


def tensor_bytes(obj) -> int:
    """Bytes held by the tensors in obj (a tensor, or dicts, lists and tuples of them)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def memory_budget(device) -> int:
    """Bytes the rotated input sets of one case may take."""
    if device.kind == "cuda":
        free, _ = torch.cuda.mem_get_info()
        return int(free * 0.4)
    return min(4 << 30, device.memory_bytes // 4)


def input_sets(make: Callable[[int], object], device, max_sets: int = MAX_ROTATION_SETS):
    """(sets, flusher, bytes per set): enough input sets (seeds 0..n-1) to exceed twice the last-level cache
    together, bounded by memory; where they still fit in it, a CacheFlusher to run before each sample."""
    from bench.configs.device_catalog import last_level_cache_bytes

    cache = last_level_cache_bytes(device)
    first = make(0)
    per_set = tensor_bytes(first)
    n = rotation_count(per_set, cache, max_sets, memory_budget(device))
    sets = [first] + [make(seed) for seed in range(1, n)]
    flusher = CacheFlusher(device.torch_device, cache) if per_set * n < 2 * cache else None
    return sets, flusher, per_set


def capture_graph(calls: Callable[[], None]):
    """`calls` captured into one CUDA graph, after a warm-up on a side stream as capture requires; raises
    RuntimeError where capture fails (the caller falls back to eager launches)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        calls()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        calls()
    return graph


def rotation_count(bytes_per_set: int, cache_bytes: int, max_sets: int, memory_budget: int) -> int:
    """Input sets to rotate among so that together they exceed twice the cache (bounded by memory)."""
    if bytes_per_set <= 0:
        return 1
    wanted = math.ceil(2 * cache_bytes / bytes_per_set) + 1
    affordable = max(1, memory_budget // bytes_per_set)
    return max(1, min(wanted, max_sets, affordable))


def _enough(samples: list, started: float, budget_s: float) -> bool:
    if len(samples) >= MAX_SAMPLES:
        return True
    if len(samples) < MIN_SAMPLES:
        return False
    if time.perf_counter() - started > budget_s:
        return True
    q1, q50, q3 = np.percentile(samples, [25, 50, 75])
    return (q3 - q1) / q50 < NOISE_TARGET


def time_cpu(fn: Callable, input_sets: Sequence, budget_s: float, flusher: CacheFlusher | None) -> Timing:
    t0 = time.perf_counter()
    fn(input_sets[0])
    warmup = time.perf_counter() - t0
    for inp in input_sets[1:]:
        fn(inp)
    # calibrate calls per sample so each sample lasts at least CPU_MIN_SAMPLE_S
    t0 = time.perf_counter()
    fn(input_sets[0])
    one = time.perf_counter() - t0
    inner = 1 if flusher is not None else max(1, min(1000, math.ceil(CPU_MIN_SAMPLE_S / max(one, 1e-9))))
    samples, started, i = [], time.perf_counter(), 0
    while not _enough(samples, started, budget_s):
        if flusher is not None:
            flusher()
        t0 = time.perf_counter()
        for _ in range(inner):
            fn(input_sets[i % len(input_sets)])
            i += 1
        samples.append((time.perf_counter() - t0) / inner)
    return Timing(samples, warmup, flusher is not None, inner)


def time_cuda(fn: Callable, input_sets: Sequence, budget_s: float, flusher: CacheFlusher | None,
              meter=None) -> Timing:
    """`meter`, a context manager (e.g. an NVML energy meter), is entered around the samples only."""
    sync = torch.cuda.synchronize
    sync()
    t0 = time.perf_counter()
    fn(input_sets[0])
    sync()
    warmup = time.perf_counter() - t0
    for inp in input_sets[1:]:
        fn(inp)
    samples, started = [], time.perf_counter()
    with meter or nullcontext():
        _sample_events(fn, input_sets, budget_s, flusher, samples, started)
    return Timing(samples, warmup, flusher is not None, 1)


def _sample_events(fn, input_sets, budget_s, flusher, samples, started, batch=25) -> None:
    """Event-timed samples, read back `batch` at a time so host syncs stay out of the timed region."""
    sync, i = torch.cuda.synchronize, 0
    while not _enough(samples, started, budget_s):
        events = []
        for _ in range(batch):
            if flusher is not None:
                flusher()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(input_sets[i % len(input_sets)])
            end.record()
            events.append((start, end))
            i += 1
        sync()
        samples.extend(s.elapsed_time(e) / 1e3 for s, e in events)


def time_cuda_graph(fn: Callable, input_sets: Sequence, budget_s: float, flusher: CacheFlusher | None,
                    meter=None) -> Timing:
    """Capture one call per input set into a CUDA graph and time replays, so launch gaps vanish.

    The first (eager) call is the warm-up: it compiles and autotunes outside the capture.
    """
    sync = torch.cuda.synchronize
    sync()
    t0 = time.perf_counter()
    for inp in input_sets:
        fn(inp)
    sync()
    warmup = time.perf_counter() - t0
    # With a flush per replay only the first call in a graph would start cold, so capture one call.
    captured = input_sets if flusher is None else input_sets[:1]

    def calls_once():
        for inp in captured:
            fn(inp)

    graph = capture_graph(calls_once)
    calls = len(captured)
    samples, started = [], time.perf_counter()
    with meter or nullcontext():
        while not _enough(samples, started, budget_s):
            events = []
            for _ in range(10):
                if flusher is not None:
                    flusher()
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                graph.replay()
                end.record()
                events.append((start, end))
            sync()
            samples.extend(s.elapsed_time(e) / 1e3 / calls for s, e in events)
    return Timing(samples, warmup, flusher is not None, calls)

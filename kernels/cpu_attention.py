"""Decode attention on a CPU over a bf16 / fp16 KV cache, chosen by measuring, as kernels/cpu_gemm.py
chooses a GEMM: SDPA straight on the half-width cache, or the cache widened to float32 one sequence at a
time into a reused buffer (a sequence's K and V at context 512, 8 KV heads of 64: 1 MiB in fp32, in L2 or
close) and SDPA in fp32, which on a CPU without bf16 instructions skips the slow reduced-precision matmul
while the cache in memory keeps its half bytes. Every candidate is checked against float64 on fresh random
inputs first (the float64 reference is kernels/attention.py's, passed in: that module calls this one); the
fastest that passed is kept per shape class for the process.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kernels.dtypes import SINGLE_OP_TOLERANCE, TOLERANCE

MAX_REPS = 5
CALIBRATION_BUDGET_S = 0.2
_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16"}


def _mask(lengths, s: int, device):
    if lengths is None:
        return None
    pos = torch.arange(s, device=device)
    return (pos[None, :] < lengths[:, None])[:, None, None, :]  # [B, 1, 1, S]


class WidenedSdpa:
    """Per sequence: K and V widened into reused fp32 buffers, then fp32 SDPA with the G query heads of a KV
    head folded into its query length (K/V read once)."""

    def __init__(self):
        self._buffers: dict = {}

    def __call__(self, q, k_cache, v_cache, lengths=None):
        b, hq, d = q.shape
        hkv, s = k_cache.shape[1], k_cache.shape[2]
        buf = self._buffers.get((hkv, s, d))
        if buf is None:
            buf = self._buffers[(hkv, s, d)] = torch.empty(2, hkv, s, d)
        mask = _mask(lengths, s, q.device)
        qg = q.float().view(b, hkv, hq // hkv, d)
        out = torch.empty(b, hkv, hq // hkv, d)
        for i in range(b):
            buf[0].copy_(k_cache[i])
            buf[1].copy_(v_cache[i])
            # 4-D, the layout CPU SDPA's fused kernel takes: with 3-D inputs this path ran 2-3x slower here
            out[i:i + 1] = F.scaled_dot_product_attention(qg[i:i + 1], buf[0:1], buf[1:2],
                                                          attn_mask=None if mask is None else mask[i:i + 1])
        return out.view(b, hq, d).to(q.dtype)


@dataclass(frozen=True)
class Candidate:
    name: str
    run: Callable  # (q, k_cache, v_cache, lengths) -> out


def candidates() -> list[Candidate]:
    return [Candidate("sdpa", lambda q, k, v, lengths=None: _native(q, k, v, lengths)),
            Candidate("widened_sdpa", WidenedSdpa())]


def _native(q, k_cache, v_cache, lengths):
    b, hq, d = q.shape
    hkv = k_cache.shape[1]
    out = F.scaled_dot_product_attention(q.view(b, hkv, hq // hkv, d), k_cache, v_cache,
                                         attn_mask=_mask(lengths, k_cache.shape[2], q.device))
    return out.reshape(b, hq, d)


def tolerance(dtype: torch.dtype) -> float:
    name = _NAMES[dtype]
    return SINGLE_OP_TOLERANCE.get(name, TOLERANCE[name])


def check(cand: Candidate, shape: tuple, dtype: torch.dtype, masked: bool, reference: Callable,
          seed: int = 0) -> float:
    """Relative error against float64 `reference` on fresh random inputs of the class's shape
    (batch, heads, kv_heads, head_dim, context); NaN: raised or non-finite."""
    b, hq, hkv, d, s = shape
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, hq, d, generator=g).to(dtype)
    k, v = (torch.randn(b, hkv, s, d, generator=g).to(dtype) for _ in range(2))
    lengths = torch.linspace(1, s, b).long() if masked else None  # ragged, the shortest one token
    try:
        out = cand.run(q, k, v, lengths).double()
    except RuntimeError:
        return float("nan")
    (ref,) = reference(q=q, k_cache=k, v_cache=v, lengths=lengths)
    if out.shape != ref.shape or not torch.isfinite(out).all():
        return float("nan")
    return ((out - ref).norm() / ref.norm()).item()


@dataclass
class Choice:
    name: str
    run: Callable
    seconds: dict  # candidate -> median seconds (passed candidates only)
    errors: dict  # candidate -> relative error against float64


_CHOSEN: dict = {}


def choose(q, k_cache, v_cache, lengths, reference: Callable, pool: list[Candidate] | None = None) -> Choice:
    b, hq, d = q.shape
    shape = (b, hq, k_cache.shape[1], d, k_cache.shape[2])
    pool = pool or candidates()
    errors = {c.name: check(c, shape, q.dtype, lengths is not None, reference) for c in pool}
    tol = tolerance(q.dtype)
    passed = [c for c in pool if errors[c.name] == errors[c.name] and errors[c.name] <= tol]
    if not passed:
        raise RuntimeError(f"no CPU attention path passed the float64 check for {shape}: {errors}")
    times = {c.name: [] for c in passed}
    for c in passed:
        c.run(q, k_cache, v_cache, lengths)
    started = time.perf_counter()
    for _ in range(MAX_REPS):
        for c in passed:  # alternating, as the GEMM chooser does
            t0 = time.perf_counter()
            c.run(q, k_cache, v_cache, lengths)
            times[c.name].append(time.perf_counter() - t0)
        if time.perf_counter() - started > CALIBRATION_BUDGET_S and len(times[passed[0].name]) >= 3:
            break
    seconds = {name: statistics.median(t) for name, t in times.items()}
    best = min(passed, key=lambda c: seconds[c.name])
    return Choice(best.name, best.run, seconds, errors)


def cpu_attention(q, k_cache, v_cache, lengths, reference: Callable):
    key = (tuple(q.shape), tuple(k_cache.shape), q.dtype, lengths is not None, torch.get_num_threads())
    choice = _CHOSEN.get(key)
    if choice is None:
        choice = _CHOSEN[key] = choose(q, k_cache, v_cache, lengths, reference)
    return choice.run(q, k_cache, v_cache, lengths)


def calibrations() -> list[tuple]:
    """(q shape, cache shape, dtype name, Choice) for every class calibrated in this process."""
    return [(qs, ks, _NAMES[dt], c) for (qs, ks, dt, _, _), c in _CHOSEN.items()]

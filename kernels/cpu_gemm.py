"""The CPU decode GEMM, chosen by measuring on this machine: which library path runs y = x @ W^T fastest
differs by CPU (an AMD EPYC's MKL ran an M = 1 float32 GEMV on one thread, so splitting W into row blocks
through bmm won there; on an AMX Xeon plain F.linear was twice as fast as that split; on a CPU without bf16
instructions a bf16 W is best widened to fp32 in cache or in registers, kernels/cpu_widen_gemm.py). So nothing is
hard-wired per vendor: on the first call per (M, K, N, dtype, bias, threads) every candidate is checked
against float64 on fresh random inputs, the ones that pass are timed on the caller's own tensors
(alternating, median of a few reps, a bounded budget), and the fastest is kept for the process, the way
Triton's autotune keeps a config. `chosen_paths()` says what won, for the result rows.
"""
from __future__ import annotations

import statistics
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kernels import cpu_widen_gemm as widen
from kernels.dtypes import SINGLE_OP_TOLERANCE, TOLERANCE

CALIBRATION_BUDGET_S = 0.3  # per shape class, timing only (the correctness check is apart)
MAX_REPS = 5
PRUNE_FACTOR = 4.0
_DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclass(frozen=True)
class Candidate:
    name: str
    run: Callable  # (x, w, b) -> y
    applies: Callable = lambda m, k, n: True


def _linear(x, w, b):
    return F.linear(x, w, b)


def _row_chunks(n: int) -> int | None:
    threads = torch.get_num_threads()
    for chunks in (4 * threads, threads):
        if threads > 1 and n % chunks == 0:
            return chunks
    return None


def _row_block_bmm(x, w, b):
    """W viewed as [C, N/C, K] through bmm: C independent products the library spreads over its threads,
    each block of weight rows read once for all M rows of x."""
    n, k = w.shape
    c = _row_chunks(n)
    # x.T.expand keeps a stride-0 batch dimension (MKL's GEMV path); a contiguous copy was 4x slower
    y = torch.bmm(w.view(c, n // c, k), x.T.expand(c, -1, -1))  # [C, N/C, M]
    y = y.permute(2, 0, 1).reshape(x.shape[0], n)
    return y if b is None else y + b


class _Packed:
    """oneDNN's linear with the weight reordered once into its blocked layout, cached per weight tensor
    (dropped when the tensor is freed, repacked if it is written in place)."""

    def __init__(self):
        self._cache = {}

    def weight(self, w, m):
        key = id(w)
        hit = self._cache.get(key)
        if hit is not None and hit[0] == w._version:
            return hit[1]
        packed = torch.ops.mkldnn._reorder_linear_weight(w, m)
        if hit is None:
            weakref.finalize(w, self._cache.pop, key, None)
        self._cache[key] = (w._version, packed)
        return packed

    def forget(self, w):
        self._cache.pop(id(w), None)

    def __call__(self, x, w, b):
        return torch.ops.mkldnn._linear_pointwise(x, self.weight(w, x.shape[0]), b, "none", [], "")


_PACKED = _Packed()


def _has_packed_linear() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise") \
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")


def _packed_supports(dtype: torch.dtype | None) -> bool:
    """oneDNN's packed linear in bf16 (fp16) needs the CPU's bf16 (fp16) instructions, AVX-512 BF16 / AMX
    (AVX-512 FP16 / AMX-FP16): without them (seen on an AMD EPYC) it returns NaN rather than refusing, so
    it is not offered there at all."""
    probes = {torch.bfloat16: "_is_mkldnn_bf16_supported", torch.float16: "_is_mkldnn_fp16_supported"}
    if dtype not in probes:
        return True
    probe = getattr(torch.ops.mkldnn, probes[dtype], None)
    return bool(probe()) if probe is not None else False


# 1 MiB a thread: a 256 KiB block ran slowest of all on the EPYC measured (512 KiB L2 a core), its per-block
# overhead (two library calls, each a parallel region) outweighing the cache it saved
_WIDEN_BLOCKS = {"widen_blocks_1m": widen.WidenedBlocks(1 << 20)}


def candidates(dtype: torch.dtype | None = None) -> list[Candidate]:
    """The CPU GEMM paths that can run `dtype` here (None: the paths for every dtype this torch has)."""
    out = [Candidate("linear", _linear),
           Candidate("row_block_bmm", _row_block_bmm, lambda m, k, n: _row_chunks(n) is not None)]
    if _has_packed_linear() and _packed_supports(dtype):
        out.append(Candidate("onednn_packed", _PACKED))
    if dtype in (torch.bfloat16, torch.float16):  # half-width weights widened to fp32 (kernels/cpu_widen_gemm.py)
        out += [Candidate(name, run) for name, run in _WIDEN_BLOCKS.items()]
        if widen.kernel_available():
            out.append(Candidate("widened_kernel", widen.widened_kernel))
    return out


def tolerance(dtype: torch.dtype) -> float:
    """The correctness gate's own tolerance for a single op."""
    name = _DTYPE_NAMES[dtype]
    return SINGLE_OP_TOLERANCE.get(name, TOLERANCE[name])


def check(cand: Candidate, m: int, k: int, n: int, dtype: torch.dtype, bias: bool, seed: int = 0) -> float:
    """Relative error of `cand` against float64 on fresh random inputs of the class's shape (NaN: failed)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=g).to(dtype)
    w = (torch.randn(n, k, generator=g) * k**-0.5).to(dtype)
    b = torch.randn(n, generator=g).to(dtype) if bias else None
    try:
        y = cand.run(x, w, b).double()
    except RuntimeError:
        return float("nan")
    finally:
        _PACKED.forget(w)
    if y.shape != (m, n) or not torch.isfinite(y).all():
        return float("nan")
    x64, err2, ref2 = x.double(), 0.0, 0.0
    for i in range(0, n, 8192):  # float64 W in row slices, so a 128K-row LM head is never held in float64
        ref = x64 @ w[i:i + 8192].double().T + (b[i:i + 8192].double() if bias else 0.0)
        err2 += (y[:, i:i + 8192] - ref).square().sum().item()
        ref2 += ref.square().sum().item()
    return (err2 / ref2) ** 0.5 if ref2 > 0 else float("nan")


@dataclass
class Choice:
    name: str
    run: Callable
    seconds: dict  # candidate -> median seconds on the caller's tensors (passed candidates only; one run
    # for those pruned as PRUNE_FACTOR x slower than the fastest)
    errors: dict  # candidate -> relative error against float64 (NaN: raised or non-finite)


_CHOSEN: dict = {}


def choose(x, w, b, pool: list[Candidate] | None = None) -> Choice:
    """Check every candidate, time those that pass on (x, w, b), keep the fastest for this shape class."""
    m, k = x.shape
    n = w.shape[0]
    pool = [c for c in (pool or candidates(x.dtype)) if c.applies(m, k, n)]
    tol = tolerance(x.dtype)
    errors = {c.name: check(c, m, k, n, x.dtype, b is not None) for c in pool}
    passed = [c for c in pool if errors[c.name] == errors[c.name] and errors[c.name] <= tol]
    if not passed:
        raise RuntimeError(f"no CPU GEMM path passed the float64 check for {m}x{k}x{n}: {errors}")
    times = {c.name: [] for c in passed}
    for c in passed:
        c.run(x, w, b)  # warm: packing, first-call dispatch
    for c in passed:
        t0 = time.perf_counter()
        c.run(x, w, b)
        times[c.name].append(time.perf_counter() - t0)
    # a path PRUNE_FACTOR x slower than the fastest in its first timed run keeps that one figure and is not
    # run again: a widened-block path 50x off took minutes of calibration on an LM head otherwise
    fastest = min(t[0] for t in times.values())
    timed = [c for c in passed if times[c.name][0] <= PRUNE_FACTOR * fastest]
    started = time.perf_counter()
    for _ in range(MAX_REPS - 1):
        for c in timed:  # alternating, so a noisy neighbour hurts every candidate alike
            t0 = time.perf_counter()
            c.run(x, w, b)
            times[c.name].append(time.perf_counter() - t0)
        if time.perf_counter() - started > CALIBRATION_BUDGET_S and len(times[timed[0].name]) >= 3:
            break
    seconds = {name: statistics.median(t) for name, t in times.items()}
    best = min(passed, key=lambda c: seconds[c.name])
    if best.run is not _PACKED:
        _PACKED.forget(w)  # a losing pack must not double the weight's memory
    return Choice(best.name, best.run, seconds, errors)


def _key(x, w, b) -> tuple:
    return (x.shape[0], x.shape[1], w.shape[0], x.dtype, b is not None, torch.get_num_threads())


def cpu_linear(x, w, b=None):
    key = _key(x, w, b)
    choice = _CHOSEN.get(key)
    if choice is None:
        choice = _CHOSEN[key] = choose(x, w, b)
    return choice.run(x, w, b)


def chosen_path(m: int, k: int, n: int, dtype: torch.dtype, bias: bool = False) -> str | None:
    choice = _CHOSEN.get((m, k, n, dtype, bias, torch.get_num_threads()))
    return choice.name if choice else None


def chosen_paths() -> dict:
    """'MxKxN dtype' -> the winning path, for every shape class calibrated in this process."""
    return {f"{m}x{k}x{n} {_DTYPE_NAMES.get(dt, dt)}{' +bias' if bias else ''}": c.name
            for (m, k, n, dt, bias, _), c in _CHOSEN.items()}


def calibrations() -> list[tuple]:
    """(m, k, n, dtype name, Choice) for every shape class calibrated in this process, for reports."""
    return [(m, k, n, _DTYPE_NAMES.get(dt, str(dt)), c) for (m, k, n, dt, _, _), c in _CHOSEN.items()]

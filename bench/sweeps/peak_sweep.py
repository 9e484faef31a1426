"""Measured ceilings: the fastest matmul per dtype a bounded shape sweep finds, and the achievable memory
bandwidth (a device-to-device copy and a read-only reduction), each read against the spec sheet.

Why measure them: spec-sheet peaks are not reachable. Max achievable bf16 matmul is about 80% of spec on
H100/H200, about 87% on A100 (docs/sources.md), so a kernel's efficiency is also given against what
this device was measured to do.

Method (docs/measurement.md):
- random normal operands, never zeros (zeros run about 13% faster on tensor cores);
- every shape is checked against a float64 reference (on its first CHECK_ROWS rows) before it is timed;
- input sets are rotated, or the cache flushed before each sample, so the cache is not what is measured;
- each shape's time is the median of its samples (bench.measure.timing); the dtype's ceiling is the best shape's;
- the sweep is bounded: shapes run from small to large and one whose predicted cost exceeds what is left
  of the dtype's share of `budget_s` is not started.

`PeakSweep` is `tokenbench peak`'s plan for the measuring engine (bench/sweeps/engine.py): the peak record
opened and filled as each row exists.
"""
from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from bench.configs.device_catalog import LocalDevice, last_level_cache_bytes
from bench.measure.timing import CacheFlusher, Timing, input_sets, time_cpu, time_cuda
from bench.measure.gate import is_oom
from bench.measure.gate import relative_error
from bench.records import environment, store
from bench.records.peak_files import PEAK_KIND, shape_label
from bench.records.schema import PeakRow
from bench.sweeps.engine import Case, Group, SweepPlan, SweepRun, run_plan
from kernels.dtypes import TOLERANCE as RUN_TOLERANCE
from kernels.dtypes import generator, randn, torch_dtype

PEAK_DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8")
# what tokenbench measures on a CPU (runs are fp32 there unless it has native bf16: bench/configs/cpu_dtype.py)
CPU_DTYPES = ("fp32", "bf16")

# ||out - ref|| / ||ref|| allowed against float64 on the same (rounded) operands. tf32 keeps 10 mantissa
# bits (about 3e-4 expected: docs/measurement.md); fp8 products come back in bf16, whose rounding dominates.
TOLERANCE = {**RUN_TOLERANCE, "tf32": 2e-3, "fp8": 1e-2}
CHECK_ROWS = 64  # rows of the output compared with the float64 reference; a full 16384^3 fp64 product is slow
FP8_MIN_CAPABILITY = (8, 9)  # Ada and Hopper onwards have fp8 tensor cores (torch._scaled_mm)
MAX_SHAPE_BUDGET_S = 2.0  # timing budget of one shape: enough for the noise target on any shape here

# (M, N, K), cheapest first. GPU: squares up to 16384 plus the rectangles mamf-finder style sweeps find
# best on Hopper; 8192^3 is where one H200 measured 769-798 TFLOP/s in bf16 (docs/sources.md).
GPU_SHAPES = ((2048, 2048, 2048), (4096, 4096, 4096), (4096, 8192, 4096), (6144, 6144, 6144),
              (8192, 8192, 4096), (8192, 8192, 8192), (4096, 16384, 8192), (12288, 12288, 12288),
              (16384, 16384, 8192), (16384, 16384, 16384))
CPU_SHAPES = ((256, 256, 256), (512, 512, 512), (768, 768, 768), (1024, 1024, 1024), (1536, 1536, 1536),
              (2048, 2048, 2048))
DEFAULT_BUDGET_S = {"cuda": 90.0, "cpu": 40.0}  # the issue: under 2 minutes on a GPU, 1 minute on a CPU
BANDWIDTH_SHARE = 0.15  # of the budget, for the copy and the reduction together

SKIP_REASONS_CPU = {
    "tf32": "TF32 is a CUDA tensor-core mode; a CPU has no TF32 matmul",
    "fp16": "no fp16 matmul ceiling on a CPU: tokenbench runs fp32 and bf16 there",
    "fp8": "fp8 matmul (torch._scaled_mm) needs a CUDA device of compute capability >= 8.9",
}


def unavailable_reason(dtype: str, device: LocalDevice) -> str | None:
    """Why `dtype` has no matmul ceiling on `device`, or None when it can be measured."""
    if device.kind != "cuda":
        return SKIP_REASONS_CPU.get(dtype)
    if dtype == "fp8":
        if device.details.get("hip"):
            return "fp8 ceiling is measured on NVIDIA devices only (torch._scaled_mm with e4m3 operands)"
        if not hasattr(torch, "_scaled_mm") or not hasattr(torch, "float8_e4m3fn"):
            return f"this torch ({torch.__version__}) has no fp8 matmul (torch._scaled_mm)"
        cap = tuple(int(x) for x in str(device.details.get("compute_capability", "0.0")).split("."))
        if cap < FP8_MIN_CAPABILITY:
            return (f"fp8 needs compute capability >= {FP8_MIN_CAPABILITY[0]}.{FP8_MIN_CAPABILITY[1]} "
                    f"(Ada/Hopper); this device is {cap[0]}.{cap[1]}")
    return None


@contextlib.contextmanager
def matmul_mode(dtype: str):
    """TF32 on for the tf32 row and explicitly off for every other row, restored afterwards."""
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


# ---------------------------------------------------------------------------------------------------
# Matmul


@dataclass(frozen=True)
class Matmul:
    """C[M, N] = A[M, K] @ B[K, N] in one dtype; fp8 is e4m3 x e4m3 -> bf16 with unit per-tensor scales."""

    dtype: str
    m: int
    n: int
    k: int
    device: str

    @property
    def flops(self) -> int:
        return 2 * self.m * self.n * self.k

    @property
    def shape(self) -> dict:
        return {"m": self.m, "n": self.n, "k": self.k}

    def make(self, seed: int) -> dict:
        g = generator(seed, self.device)
        if self.dtype == "fp8":
            a = torch.randn((self.m, self.k), generator=g, device=self.device).to(torch.float8_e4m3fn)
            # cuBLASLt wants B column-major: draw it as [N, K] and view it transposed
            b = torch.randn((self.n, self.k), generator=g, device=self.device).to(torch.float8_e4m3fn).t()
            return {"a": a, "b": b, "scale": torch.ones((), device=self.device)}  # float32 scalar scales
        element = torch_dtype("fp32" if self.dtype == "tf32" else self.dtype)
        a = randn((self.m, self.k), element, self.device, g)
        b = randn((self.k, self.n), element, self.device, g)
        return {"a": a, "b": b, "c": torch.empty((self.m, self.n), dtype=element, device=self.device)}

    def run(self, inp: dict) -> torch.Tensor:
        if self.dtype == "fp8":
            out = torch._scaled_mm(inp["a"], inp["b"], scale_a=inp["scale"], scale_b=inp["scale"],
                                   out_dtype=torch.bfloat16, use_fast_accum=True)
            return out[0] if isinstance(out, tuple) else out  # torch < 2.5 returned (out, amax)
        return torch.mm(inp["a"], inp["b"], out=inp["c"])

    def reference_rows(self, inp: dict, rows: int) -> torch.Tensor:
        # read A[:rows] (rows x K) and all of B (K x N) in float64: the exact product of the rounded operands
        return inp["a"][:rows].to(torch.float64) @ inp["b"].to(torch.float64)


def check_matmul(op: Matmul, seed: int = 1_000_003) -> dict:
    """Run `op` once on fresh operands and compare its first rows with float64; NaN never passes."""
    tol = TOLERANCE[op.dtype]
    try:
        inp = op.make(seed)
        if "c" in inp:
            inp["c"].fill_(float("nan"))  # an unwritten output element cannot pass
        out = op.run(inp)
        rows = min(CHECK_ROWS, op.m)
        err = relative_error(out[:rows], op.reference_rows(inp, rows))
    except torch.cuda.OutOfMemoryError:
        raise
    except Exception as exc:  # an unsupported shape or dtype is a failed check with its message
        return {"valid": False, "rel_error": None, "tolerance": tol,
                "check": f"raised {type(exc).__name__}: {exc}".splitlines()[0][:300]}
    if math.isnan(err):
        return {"valid": False, "rel_error": None, "tolerance": tol, "check": "NaN/inf in the output"}
    if err > tol:
        return {"valid": False, "rel_error": err, "tolerance": tol,
                "check": f"relative error {err:.2e} above tolerance {tol:.0e}"}
    return {"valid": True, "rel_error": err, "tolerance": tol, "check": "ok"}


def _timer(device: LocalDevice) -> Callable[..., Timing]:
    return time_cuda if device.kind == "cuda" else time_cpu


def _input_sets(make: Callable[[int], dict], device: LocalDevice) -> tuple[list, CacheFlusher | None]:
    """Enough input sets to exceed twice the last-level cache, else one set and a flush before each sample."""
    sets, flusher, _ = input_sets(make, device)
    return sets, flusher


def measure_matmul_shape(op: Matmul, device: LocalDevice, budget_s: float) -> dict:
    """Check, then time, one shape. The check comes first and a failed check is never timed."""
    row = {"shape": op.shape, "flops": op.flops, **check_matmul(op)}
    if not row["valid"]:
        return row
    sets, flusher = _input_sets(op.make, device)
    timing = _timer(device)(op.run, sets, budget_s, flusher)
    row.update(timing.summary(), rotation_sets=len(sets), tflops=op.flops / timing.p50 / 1e12)
    return row


def _predicted_s(work: float, rate: float | None, device: LocalDevice) -> float:
    """Seconds one more shape is expected to take at the last shape's rate: the check, warm-up, a second
    rotation set and the samples (time_cuda reads events in batches of 25; time_cpu takes at least 10)."""
    if not rate:
        return 0.0
    calls = 30 if device.kind == "cuda" else 14
    return work / rate * calls


def sweep_matmul(dtype: str, device: LocalDevice, budget_s: float, shapes=None) -> dict:
    """The ceiling row of one dtype: the best shape's median TFLOP/s against the spec sheet."""
    row = {"metric": "matmul", "dtype": dtype, "unit": "TFLOP/s", "measured": None, "spec": None,
           "ratio": None, "best_shape": None}
    if device.spec is not None:
        row["spec"] = device.spec.peak_tflops.get(dtype)
    reason = unavailable_reason(dtype, device)
    if reason:
        row["skipped"] = reason
        return row
    if dtype == "fp8":
        row["variant"] = "torch._scaled_mm, e4m3 x e4m3 -> bf16, per-tensor scales, use_fast_accum=True"
    elif dtype == "tf32":
        row["variant"] = "torch.mm on float32 with torch.backends.cuda.matmul.allow_tf32 = True"
    else:
        row["variant"] = "torch.mm" + (" (allow_tf32 = False)" if dtype == "fp32" else "")
    shapes = shapes or (GPU_SHAPES if device.kind == "cuda" else CPU_SHAPES)
    started = time.perf_counter()
    tried, rate = [], None
    with matmul_mode(dtype):
        for i, (m, n, k) in enumerate(shapes):
            op = Matmul(dtype, m, n, k, device.torch_device)
            left = budget_s - (time.perf_counter() - started)
            if tried and (left <= 0 or _predicted_s(op.flops, rate, device) > left):
                row["stopped"] = f"budget: {len(shapes) - i} larger shape(s) not tried"
                break
            try:
                shape_row = measure_matmul_shape(op, device, min(MAX_SHAPE_BUDGET_S, max(left, 0.05)
                                                                 / (len(shapes) - i)))
            except Exception as exc:
                if not is_oom(exc):
                    raise
                _free(device)
                shape_row = {"shape": op.shape, "valid": False,
                             "skipped": f"out of memory: {str(exc).splitlines()[0][:160]}"}
            tried.append(shape_row)
            if shape_row.get("tflops"):
                rate = shape_row["tflops"] * 1e12
            _free(device)
    row["shapes"] = tried
    timed = [r for r in tried if r.get("tflops")]
    if not timed:
        failed = next((r.get("check") or r.get("skipped") for r in tried if not r.get("valid")), "no shape timed")
        row["skipped"] = f"no shape passed its check: {failed}"
        return row
    best = max(timed, key=lambda r: r["tflops"])
    row.update(measured=best["tflops"], best_shape=best["shape"], seconds_p50=best["seconds_p50"],
               noise=best["noise"], rel_error=best["rel_error"], timer=_timer_name(device),
               sweep_s=time.perf_counter() - started)
    if row["spec"]:
        row["ratio"] = row["measured"] / row["spec"]
    return row


# ---------------------------------------------------------------------------------------------------
# Memory bandwidth


def bandwidth_sizes(device: LocalDevice) -> list[int]:
    """Buffer sizes far beyond the last-level cache (at least 4x), smallest first, within memory."""
    cache = last_level_cache_bytes(device)
    if device.kind == "cuda":
        sizes = [256 << 20, 1 << 30, 4 << 30]
        limit = torch.cuda.mem_get_info()[0] // 4
    else:
        base = max(4 * cache, 64 << 20)
        sizes = [base, 4 * base]
        limit = max(device.memory_bytes // 8, base)
    return [s for s in sizes if s <= limit and s >= 4 * cache] or [max(4 * cache, 64 << 20)]


def measure_bandwidth_size(metric: str, nbytes: int, device: LocalDevice, budget_s: float) -> dict:
    """One buffer size: check the copy (or sum) on fresh data, then time it. Bytes: copy moves read +
    write (2 x size, as datasheets count); the reduction reads the buffer once."""
    n = nbytes // 4
    g = generator(1_000_003, device.torch_device)
    src = torch.rand(n, generator=g, device=device.torch_device)  # random, never zeros
    if metric == "copy":
        dst = torch.full_like(src, float("nan"))
        dst.copy_(src)
        ok = bool(torch.equal(dst, src))
        check = {"valid": ok, "check": "ok" if ok else "copy differs from its source"}
        fn, moved = (lambda _: dst.copy_(src)), 2 * n * 4
    else:
        ref = src.to(torch.float64).sum()
        err = relative_error(src.sum().reshape(1), ref.reshape(1))
        ok = not math.isnan(err) and err <= RUN_TOLERANCE["fp32"]
        check = {"valid": ok, "rel_error": err, "tolerance": RUN_TOLERANCE["fp32"],
                 "check": "ok" if ok else f"sum relative error {err:.2e} above {RUN_TOLERANCE['fp32']:.0e}"}
        fn, moved = (lambda _: src.sum()), n * 4
    row = {"shape": {"bytes": nbytes}, "bytes_moved": moved, **check}
    if ok:
        timing = _timer(device)(fn, [None], budget_s, None)  # the buffer is >= 4x the cache: no flush
        row.update(timing.summary(), gbps=moved / timing.p50 / 1e9)
    return row


BANDWIDTH_METRICS = (("copy", "dst.copy_(src), float32; bytes = read + write"),
                     ("read", "src.sum(), float32; bytes = read"))


def sweep_bandwidth_metric(metric: str, variant: str, device: LocalDevice, budget_s: float) -> dict:
    """A copy or a read (reduction) row: the best size's median GB/s against the datasheet."""
    spec = None if device.spec is None else device.spec.mem_bw_gbs
    sizes = bandwidth_sizes(device)
    row = {"metric": metric, "dtype": "fp32", "unit": "GB/s", "measured": None, "spec": spec, "ratio": None,
           "best_shape": None, "variant": variant}
    started, tried, rate = time.perf_counter(), [], None
    for i, size in enumerate(sizes):
        left = budget_s - (time.perf_counter() - started)
        if tried and (left <= 0 or _predicted_s(size * (2 if metric == "copy" else 1), rate, device) > left):
            row["stopped"] = f"budget: {len(sizes) - i} larger size(s) not tried"
            break
        try:
            r = measure_bandwidth_size(metric, size, device, min(MAX_SHAPE_BUDGET_S, max(left, 0.05)
                                                                / (len(sizes) - i)))
        except Exception as exc:
            if not is_oom(exc):
                raise
            r = {"shape": {"bytes": size}, "valid": False,
                 "skipped": f"out of memory: {str(exc).splitlines()[0][:160]}"}
        _free(device)
        tried.append(r)
        if r.get("gbps"):
            rate = r["gbps"] * 1e9
    row["shapes"] = tried
    timed = [r for r in tried if r.get("gbps")]
    if timed:
        best = max(timed, key=lambda r: r["gbps"])
        row.update(measured=best["gbps"], best_shape=best["shape"], seconds_p50=best["seconds_p50"],
                   noise=best["noise"], timer=_timer_name(device))
        if spec:
            row["ratio"] = row["measured"] / spec
    else:
        row["skipped"] = next((r.get("check") or r.get("skipped") for r in tried), "nothing timed")
    return row


# ---------------------------------------------------------------------------------------------------


def _timer_name(device: LocalDevice) -> str:
    return "cuda-events" if device.kind == "cuda" else "cpu-perf-counter"


def _free(device: LocalDevice) -> None:
    if device.kind == "cuda":
        torch.cuda.empty_cache()


class PeakSweep(SweepPlan):
    """`tokenbench peak` for the measuring engine: its record (the matmul ceiling per dtype in
    measured_tflops, the copy and read bandwidth), the bandwidth rows (their share of the budget), then one
    matmul row per dtype, each dtype's share what is left over the dtypes still to measure (time one leaves
    unused goes to the next). `row_line(row)` is the line a row prints."""

    def __init__(self, device: LocalDevice, dtypes, budget_s: float, bandwidth: bool, out, console,
                 row_line: Callable):
        self.device, self.dtypes, self.budget_s, self.bandwidth, self.out = device, list(dtypes), budget_s, bandwidth, out
        self.console, self.row_line = console, row_line

    def open(self, device):
        return store.open_record(PEAK_KIND, self.out, device, environment.capture(), ("peak",),
                                 {"dtypes": self.dtypes, "budget_s": self.budget_s, "bandwidth": self.bandwidth},
                                 measured_tflops={})  # dtype -> the matmul ceiling `report` and `run` read

    def total(self) -> int:
        return len(self.dtypes) + (len(BANDWIDTH_METRICS) if self.bandwidth else 0)

    def groups(self):
        self.started = time.perf_counter()
        cases = []
        if self.bandwidth:
            share = self.budget_s * BANDWIDTH_SHARE / len(BANDWIDTH_METRICS)
            cases += [self._case(f"{metric} fp32", lambda m=metric, v=variant:
                                 sweep_bandwidth_metric(m, v, self.device, share))
                      for metric, variant in BANDWIDTH_METRICS]
        self.measurable = [d for d in self.dtypes if unavailable_reason(d, self.device) is None]
        cases += [self._case(f"matmul {dtype}", lambda d=dtype: self._matmul(d)) for dtype in self.dtypes]
        yield Group("peak", cases)

    def _matmul(self, dtype: str) -> dict:
        left = self.budget_s - (time.perf_counter() - self.started)
        share = left / max(1, len(self.measurable))
        if dtype in self.measurable:
            self.measurable.remove(dtype)
        return sweep_matmul(dtype, self.device, max(share, 0.0))

    def _case(self, label: str, sweep: Callable[[], dict]) -> Case:
        def run(phase):
            row = sweep()
            row["best_shape_label"] = shape_label(row.get("best_shape"))
            return [PeakRow.build(**row)]

        return Case(label, run, line=lambda rows: self.row_line(rows[0]), line_on_terminal=True)

    def keep_row(self, record, row) -> None:
        record["rows"].append(row)
        if row.metric == "matmul" and row.measured:
            record["measured_tflops"][row.dtype] = row.measured
        elif row.metric in ("copy", "read") and row.measured:
            record[{"copy": "measured_gbps", "read": "measured_read_gbps"}[row.metric]] = row.measured


def record_peaks(device: LocalDevice, dtypes, budget_s: float, bandwidth: bool, out, console,
                 row_line: Callable) -> SweepRun:
    """`tokenbench peak`: its record opened in `out` and filled as each row exists, on disk after every row;
    Ctrl-C or SIGTERM keeps the rows so far."""
    return run_plan(PeakSweep(device, dtypes, budget_s, bandwidth, out, console, row_line), device)

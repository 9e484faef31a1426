"""What the pytest-benchmark suites share: the shapes that matter, the GPU clock pytest-benchmark times with,
input rotation / cache flush / CUDA-graph capture around pedantic rounds, and the derived figures.

How a benchmark times (never anything pytest-benchmark did not time itself):
- `benchmark.pedantic(target, setup=...)`: `setup` runs before every round, outside the timed region; it
  flushes the cache when the rotated input sets fit in it, and on a GPU also queues a short spin kernel so
  the start event and the launch that follows queue behind it (host launch latency is then not timed).
- the timer: on a GPU `cuda_event_clock` (each reading records a CUDA event; the difference of two readings
  waits for the later event and returns the elapsed GPU time); on a CPU pytest-benchmark's own host clock.
- on a GPU the target replays a CUDA graph captured per input set (launch gaps vanish, as in the sweep);
  when capture fails the target launches eagerly and `extra_info["timer"]` says so.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from bench.derive import roofline
from bench.configs.device_catalog import LocalDevice, last_level_cache_bytes
from bench.measure.timing import capture_graph, input_sets, memory_budget, rotation_count, tensor_bytes

# A spin long enough to cover the host's work between setup and the launch inside the timed region
# (pytest-benchmark's runner, the start event, a graph launch: tens of microseconds in Python).
SPIN_SECONDS = 100e-6

# The shapes that matter, a small curated set per model: batch 1 (one user, bandwidth-bound) and a
# batch where decode GEMMs start to approach the ridge point; context 2048 (the run's default).
GPU_SHAPES = {
    "llama-3.1-8b": ((1, 2048), (32, 2048)),
    "llama-3.2-1b": ((1, 2048), (32, 2048)),
    "llama-3.1-70b": ((1, 2048), (32, 2048)),  # one GPU's view: full layer widths, no tensor parallelism
}
# On a CPU the suites run too, at small shapes, so CI exercises every path in seconds.
CPU_SHAPES = {"tiny": ((1, 64), (4, 64))}
GPU_DTYPE, CPU_DTYPE = "bf16", "fp32"
ROUNDS = {"cuda": 50, "cpu": 10}
STEP_ROUNDS = {"cuda": 20, "cpu": 5}
WARMUP_ROUNDS = {"cuda": 3, "cpu": 1}


def cuda_event_clock():
    """A pytest-benchmark timer that reads the GPU's clock.

    Each reading records a CUDA event on the current stream; `later - earlier` waits for the later event
    and returns the GPU time between the two in seconds, which pytest-benchmark stores as the round's time.
    """
    event = torch.cuda.Event(enable_timing=True)
    event.record()
    return _EventReading(event)


class _EventReading:
    __slots__ = ("event",)

    def __init__(self, event):
        self.event = event

    def __sub__(self, earlier: _EventReading) -> float:
        self.event.synchronize()
        return earlier.event.elapsed_time(self.event) / 1e3


def spin_cycles(device: LocalDevice) -> int:
    mhz = device.details.get("max_sm_clock_mhz") or device.details.get("sm_clock_mhz") or 2000
    return int(SPIN_SECONDS * mhz * 1e6)


@dataclass
class Rounds:
    rounds: int
    warmup_rounds: int


class Prepared:
    """Rotated input sets, the flush decision and (on a GPU) one CUDA graph per set, for pedantic rounds.

    `setup()` runs before every round outside the timed region and returns the set index the round uses;
    `target(i)` is the only thing timed.
    """

    def __init__(self, fn: Callable, make_inputs: Callable[[int], object], device: LocalDevice,
                 cuda_graph: bool = True):
        self.sets, self.flusher, per_set = input_sets(make_inputs, device)
        self.fn = fn
        self.device = device
        self.graphs = None
        self.index = 0
        self.set_bytes = per_set
        self.timer = "cpu-perf-counter"
        if device.kind == "cuda":
            self.spin = spin_cycles(device)
            self.timer = "cuda-events"
            if cuda_graph:
                try:
                    self.graphs = self._capture()
                    self.timer = "cuda-graph-replay (cuda-events)"
                except RuntimeError as exc:
                    torch.cuda.synchronize()
                    self.timer = f"cuda-events (graph capture failed: {str(exc).splitlines()[0][:120]})"

    def _capture(self) -> list:
        graphs = [capture_graph(lambda inp=inp: self.fn(inp)) for inp in self.sets]  # one graph per set
        torch.cuda.synchronize()
        return graphs

    def setup(self):
        if self.flusher is not None:
            self.flusher()
        if self.device.kind == "cuda" and hasattr(torch.cuda, "_sleep"):
            torch.cuda._sleep(self.spin)
        i = self.index % len(self.sets)
        self.index += 1
        return (i,), {}

    def target(self, i: int):
        if self.graphs is not None:
            self.graphs[i].replay()
            return None
        return self.fn(self.sets[i])

    def describe(self) -> dict:
        return {"timer": self.timer, "rotation_sets": len(self.sets), "set_bytes": self.set_bytes,
                "cache_flushed": self.flusher is not None}


def run_pedantic(benchmark, prepared: Prepared, rounds: Rounds) -> float | None:
    """Time `prepared.target` with pytest-benchmark's pedantic mode; the median it recorded, or None when
    benchmarking is disabled (--benchmark-disable runs the target once, untimed)."""
    benchmark.pedantic(prepared.target, setup=prepared.setup, rounds=rounds.rounds,
                       warmup_rounds=rounds.warmup_rounds)
    if prepared.device.kind == "cuda":
        torch.cuda.synchronize()
    stats = getattr(benchmark, "stats", None)
    return None if stats is None else stats.stats.median


def derived(flops: int, nbytes: int, seconds: float | None, dtype: str, device: LocalDevice,
            ceilings) -> dict:
    """TFLOP/s, GB/s, % of spec and of the measured ceilings, from pytest-benchmark's median time."""
    if not seconds:
        return {}
    d = roofline.derive(flops, nbytes, seconds, dtype, device.spec, ceilings.copy_bw,
                       ceilings.peak_flops)
    return {k: d[k] for k in ("tflops", "gbps", "pct_spec_flops", "pct_spec_bw", "pct_copy_bw", "bound",
                              "efficiency_spec", "efficiency_measured")}


def economics(device: LocalDevice, tokens_per_s: float) -> dict:
    """$/M tokens and tokens/s per MW at the catalog's price and all-in power, where it has them."""
    from costmodel.catalog import all_in_kw, catalog_price
    from costmodel.economics import cost_per_mtok, tokens_per_s_per_mw

    out = {"cost_per_mtok": None, "tokens_per_s_per_mw": None, "price_source": None}
    if device.key is None:
        return out
    price = catalog_price(device.key)
    if price is not None:
        out.update(cost_per_mtok=cost_per_mtok(price.price_per_hour, tokens_per_s), price_source=price.source,
                   price_per_hour=price.price_per_hour)
    kw = all_in_kw(device.key)
    if kw is not None:
        out["tokens_per_s_per_mw"] = tokens_per_s_per_mw(tokens_per_s, kw)
    return out


class DecodeStep:
    """One decode step of `model` as a single call and an OpCase: every layer, then final_norm and lm_head
    (kernels.model's forward and float64 reference).

    A real step reads distinct weights and KV cache per layer. Holding all of them (140 GB for a 70B model)
    is not needed to measure that: `layer_sets` distinct layers whose total exceeds twice the last-level
    cache are cycled through (layer i uses set i mod layer_sets), so every layer's reads come from memory
    as they would with all layers. The reference runs the same sequence in float64, so the gate
    (bench.measure.gate.check_case) checks the whole step; its tolerance grows with sqrt(layers) as
    kernels.model's does for the full model.
    """

    def __init__(self, model, batch: int, context: int, dtype: str, device: LocalDevice, backend: str):
        from kernels.dtypes import torch_dtype
        from kernels.layer import layer_min_bytes
        from kernels.model import model_case

        self.model, self.batch, self.context, self.dtype = model, batch, context, dtype
        self.device, self.backend = device, backend
        self.dims = model.layer_dims
        self.torch_dtype = torch_dtype(dtype)
        element = torch.empty((), dtype=self.torch_dtype).element_size()
        layer_bytes = layer_min_bytes(self.dims, batch, context, element)
        self.layer_sets = rotation_count(layer_bytes, last_level_cache_bytes(device), model.layers,
                                         memory_budget(device) // 2)
        full = model_case(self.dims, model.layers, batch, context, self.torch_dtype, device.torch_device,
                          [backend])  # FLOPs, bytes, forward and reference of the whole step
        self.case = dataclasses.replace(full, name="decode_step", kind="step", make_inputs=self.make_inputs,
                                        shape={**full.shape, "layer_sets": self.layer_sets})
        self.flops, self.bytes = self.case.flops, self.case.bytes
        self.run = self.case.impls[backend]

    def make_inputs(self, seed: int) -> dict:
        from kernels.model import make_model_inputs

        inp = make_model_inputs(self.dims, self.layer_sets, self.batch, self.context, self.torch_dtype,
                                self.device.torch_device, seed)
        inp["layers"] = [inp["layers"][i % self.layer_sets] for i in range(self.model.layers)]
        return inp

"""The pieces the benchmark suites time with, checked on the CPU: the CUDA-event clock's arithmetic (with a
stand-in event), and the rotation / flush / setup / target protocol pytest-benchmark's pedantic mode drives."""
import time

import pytest
import torch

from bench.configs import device_catalog

from bench.measure import timing
from benchmarks import harness


class FakeEvent:
    """Records host time where a CUDA event would record GPU time; elapsed_time in ms like CUDA's."""

    def __init__(self, enable_timing=True):
        self.t = None
        self.synced = False

    def record(self):
        self.t = time.perf_counter()

    def synchronize(self):
        self.synced = True

    def elapsed_time(self, end):
        return (end.t - self.t) * 1e3


def test_cuda_event_clock_difference_is_elapsed_seconds(monkeypatch):
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    start = harness.cuda_event_clock()
    time.sleep(0.01)
    end = harness.cuda_event_clock()
    elapsed = end - start  # what pytest-benchmark's runner computes: `end - start`
    assert end.event.synced  # the later event is waited for before reading
    # seconds, not the events' milliseconds: at least the 10 ms slept, and a loaded machine may add to it
    # (never 1,000 times it, which milliseconds would be)
    assert isinstance(elapsed, float) and 0.0099 <= elapsed < 1.0


def test_prepared_rotates_sets_and_flushes_small_working_sets():
    cpu = device_catalog.detect("cpu")
    calls = []

    def make(seed):
        return {"x": torch.full((4,), float(seed))}

    prepared = harness.Prepared(lambda inp: calls.append(inp["x"][0].item()), make, cpu)
    assert len(prepared.sets) == timing.MAX_ROTATION_SETS and prepared.flusher is not None
    for _ in range(20):
        args, kwargs = prepared.setup()
        prepared.target(*args, **kwargs)
    assert calls == [float(i % timing.MAX_ROTATION_SETS) for i in range(20)]
    assert prepared.describe()["timer"] == "cpu-perf-counter" and prepared.describe()["cache_flushed"]


def test_decode_step_rotates_distinct_layers_and_counts_the_whole_step():
    from bench.configs.model_configs import get_model
    from bench.measure.gate import check_case
    from kernels.layer import layer_flops, model_op_shapes
    from kernels.model import model_bytes

    cpu = device_catalog.detect("cpu")
    model = get_model("tiny")
    step = harness.DecodeStep(model, 2, 16, "fp32", cpu, "torch")
    d = model.layer_dims
    head = model_op_shapes(d, 2)
    assert step.flops == model.layers * layer_flops(d, 2, 16) + sum(m.flops(s) for _, m, s in head.values())
    assert step.bytes == model_bytes(d, model.layers, 2, 16, 4)  # the whole model's, as kernels.model counts
    assert step.layer_sets == model.layers  # tiny layers fit in cache: as many distinct ones as the model has
    inp = step.make_inputs(0)
    assert len(inp["layers"]) == model.layers
    assert not torch.equal(inp["layers"][0]["weights"]["qkv"], inp["layers"][1]["weights"]["qkv"])
    logits = step.run(inp)
    assert logits.shape == (2, model.vocab) and torch.isfinite(logits).all()
    assert check_case(step.case, "torch", "fp32").ok


def test_decode_step_cycles_fewer_sets_than_layers(monkeypatch):
    """With a small cache budget only two distinct layers are held, cycled over all the model's layers,
    and the gate still compares the whole sequence with float64."""
    from bench.configs.model_configs import ModelConfig
    from bench.measure.gate import check_case

    cpu = device_catalog.detect("cpu")
    monkeypatch.setattr(harness, "last_level_cache_bytes", lambda device: 1)
    model = ModelConfig("tiny-5", hidden=64, layers=5, heads=4, kv_heads=2, ffn=176, vocab=512, rope_theta=1e4)
    step = harness.DecodeStep(model, 2, 16, "fp32", cpu, "torch")
    assert step.layer_sets == 2
    inp = step.make_inputs(3)
    assert [id(layer) for layer in inp["layers"]] == [id(inp["layers"][i % 2]) for i in range(5)]
    check = check_case(step.case, "torch", "fp32")
    assert check.ok and check.error < 1e-5

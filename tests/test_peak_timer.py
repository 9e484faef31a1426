"""The pieces the benchmark suites time with, checked on the CPU: the CUDA-event clock's arithmetic (with a
stand-in event), and the rotation / flush / setup / target protocol pytest-benchmark's pedantic mode drives."""
import time

import pytest
import torch

from bench import devices
from bench.benchmarks import harness


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
    assert isinstance(elapsed, float) and elapsed == pytest.approx(0.01, abs=0.008)


def test_prepared_rotates_sets_and_flushes_small_working_sets():
    cpu = devices.detect("cpu")
    calls = []

    def make(seed):
        return {"x": torch.full((4,), float(seed))}

    prepared = harness.Prepared(lambda inp: calls.append(inp["x"][0].item()), make, cpu)
    assert len(prepared.sets) == harness.MAX_ROTATION_SETS and prepared.flusher is not None
    for _ in range(20):
        args, kwargs = prepared.setup()
        prepared.target(*args, **kwargs)
    assert calls == [float(i % harness.MAX_ROTATION_SETS) for i in range(20)]
    assert prepared.describe()["timer"] == "cpu-perf-counter" and prepared.describe()["cache_flushed"]


def test_decode_step_rotates_distinct_layers_and_counts_the_whole_step():
    from bench.models import get_model
    from kernels.layer import layer_flops, layer_min_bytes, model_op_shapes

    cpu = devices.detect("cpu")
    model = get_model("tiny")
    step = harness.DecodeStep(model, 2, 16, "fp32", cpu, "torch")
    d = model.layer_dims
    head = model_op_shapes(d, 2)
    assert step.flops == model.layers * layer_flops(d, 2, 16) + sum(m.flops(s) for _, m, s in head.values())
    assert step.bytes == model.layers * layer_min_bytes(d, 2, 16, 4) + sum(
        m.min_bytes(s, 4) for _, m, s in head.values())
    assert step.layer_sets == model.layers  # tiny layers fit in cache: as many distinct ones as the model has
    inp = step.make_inputs(0)
    assert len(inp["layers"]) == step.layer_sets
    assert not torch.equal(inp["layers"][0]["weights"]["qkv"], inp["layers"][1]["weights"]["qkv"])
    logits = step.run(inp)
    assert logits.shape == (2, model.vocab) and torch.isfinite(logits).all()
    assert [c.name for c in step.gate_cases()] == ["layer", "final_norm", "lm_head"]


def test_decode_step_matches_the_float64_composition():
    from bench.models import get_model
    from bench.verify import relative_error
    from kernels import gemm, norm
    from kernels.layer import layer_reference

    cpu = devices.detect("cpu")
    model = get_model("tiny")
    step = harness.DecodeStep(model, 3, 16, "fp32", cpu, "torch")
    inp = step.make_inputs(5)
    d = model.layer_dims
    y, r = inp["layers"][0]["x"].double(), inp["layers"][0]["residual"].double()
    for i in range(model.layers):
        li = inp["layers"][i % step.layer_sets]
        y, r = layer_reference(d, li["weights"], y, r, li["k_cache"], li["v_cache"], li["positions"], li["cos"],
                               li["sin"])
    h, _ = norm.reference(x=y, residual=r, w=inp["final_norm"].double(), eps=d.norm_eps)
    (ref,) = gemm.reference(x=h, w=inp["lm_head"])
    assert relative_error(step.run(inp), ref) < 1e-4

"""Projection: per-op efficiency carried onto a target's spec peaks, checked by hand on a tiny run."""
import pytest

from bench.records.store import from_dict
from costmodel.ceilings import DeviceSpec
from costmodel.input_errors import CostInputError
from costmodel.roofline_projection import project_run as project_record

# A made-up source device: 100 TFLOP/s bf16, 1000 GB/s. A made-up target: 400 TFLOP/s, 4000 GB/s.
SOURCE_SPEC = {"peak_tflops": {"bf16": 100.0}, "mem_bw_gbs": 1000.0, "memory_gb": 80, "tdp_w": 500}
TARGET = DeviceSpec("t4x", "Target 4x", {"bf16": 400.0, "fp8": None}, 4000.0, memory_gb=100, tdp_w=1000)


def row(op, flops, bytes_, seconds, batch=1, context=128, backend="torch", valid=True):
    return {"op": op, "batch": batch, "context": context, "backend": backend, "seconds_p50": seconds,
            "flops": flops, "bytes": bytes_, "valid": valid}


def run(rows, spec=SOURCE_SPEC, layers=2, **extra):
    return {"schema_version": 1, "tool": "tokenbench", "dtype": "bf16",
            "device": {"key": "src", "name": "Source", "kind": "cuda", "spec": spec},
            "model": {"name": "toy", "layers": layers}, "rows": rows,
            "steps": [{"batch": 1, "context": 128, "backend": "torch", "step_seconds": 0.0101,
                       "tokens_per_s": 1 / 0.0101, "bytes_needed": 50e9, "fits": True}], **extra}


def project_run(result: dict, *args, **kwargs):
    """The run written as a schema-1 dict, read through the store as every command reads it."""
    return project_record(from_dict(result, "test run"), *args, **kwargs)


def test_projection_by_hand():
    # layer: 1e9 B -> source bound 1e9/1e12 = 1 ms, measured 2 ms -> 50% efficient;
    #        target bound 1e9/4e12 = 0.25 ms -> 0.5 ms projected
    # final_norm: 1e6 B -> source 1 us, measured 4 us -> 25%; target 0.25 us -> 1 us
    # lm_head: 1e12 FLOPs, 1e8 B -> source max(10 ms, 0.1 ms) = 10 ms compute-bound, measured 10 ms -> 100%;
    #          target max(2.5 ms, 0.025 ms) = 2.5 ms
    # step: 2 layers * 0.5 ms + 1 us + 2.5 ms = 3.501 ms -> 285.63 tokens/s at batch 1
    rows = [row("layer", 1e6, 1e9, 2e-3), row("final_norm", 1e3, 1e6, 4e-6), row("lm_head", 1e12, 1e8, 10e-3)]
    p = project_run(run(rows), TARGET, source="src")
    ops = {o.op: o for o in p.ops}
    assert ops["layer"].efficiency == pytest.approx(0.5)
    assert ops["layer"].projected_seconds == pytest.approx(0.5e-3)
    assert ops["final_norm"].projected_seconds == pytest.approx(1e-6)
    assert ops["lm_head"].target_bound_seconds == pytest.approx(2.5e-3)
    (step,) = p.steps
    assert step.step_seconds == pytest.approx(3.501e-3)
    assert step.tokens_per_s == pytest.approx(1 / 3.501e-3)
    assert step.fits is True  # 50 GB <= 100 GB
    assert step.composed_from == "layer row"
    assert step.source_tokens_per_s == pytest.approx(1 / 0.0101)
    assert "PROJECTION" in p.assumption and "same fraction of its roofline bound" in p.assumption
    assert step.to_dict()["projected"] is True


def test_per_op_rows_when_no_layer_row_and_invalid_rows_skipped():
    per_layer = ["attn_norm", "qkv_proj", "rope", "kv_append", "attention", "o_proj", "ffn_norm",
                 "gate_up_proj", "swiglu", "down_proj"]
    # each op: 1e6 B, measured 2 us at 1000 GB/s -> 50%; on target 0.25 us / 0.5 = 0.5 us; 10 ops -> 5 us a layer
    rows = [row(op, 0, 1e6, 2e-6) for op in per_layer]
    rows += [row("final_norm", 0, 1e6, 2e-6), row("lm_head", 0, 1e6, 2e-6), row("layer", 0, 1e6, 1.0, valid=False)]
    (step,) = project_run(run(rows, layers=3), TARGET).steps
    assert step.composed_from == "per-op rows"
    assert step.step_seconds == pytest.approx(3 * 5e-6 + 2 * 0.5e-6)
    assert any("kernel launch" in n for n in project_run(run(rows, layers=3), TARGET).notes)  # 0.5 us ops


def test_measured_ceilings_when_no_spec_and_cap_at_roofline():
    # CPU-like run: no spec; measured copy 50 GB/s and measured peak 1 TFLOP/s.
    # layer 1e8 B: bound 2 ms, measured 1 ms -> 200% (cache): capped to 100% and noted
    rows = [row("layer", 0, 1e8, 1e-3), row("final_norm", 0, 1e6, 1e-4), row("lm_head", 0, 1e6, 1e-4)]
    spec = {"peak_tflops": {"bf16": None}, "mem_bw_gbs": None}
    p = project_run(run(rows, spec=spec, measured_copy_gbps=50.0, measured_peak_tflops={"bf16": 1.0}), TARGET)
    assert "measured" in p.source_basis
    assert {o.op: o.capped for o in p.ops}["layer"] is True
    assert any("capped at 100%" in n for n in p.notes)
    # layer on target: 1e8 / 4e12 = 25 us at 100%
    assert {o.op: o for o in p.ops}["layer"].projected_seconds == pytest.approx(25e-6)


def test_cannot_project_without_bandwidth_or_target_peak():
    rows = [row("layer", 0, 1e8, 1e-3), row("final_norm", 0, 1e6, 1e-4), row("lm_head", 0, 1e6, 1e-4)]
    with pytest.raises(CostInputError, match="bandwidth"):
        project_run(run(rows, spec={}), TARGET)
    fp8_run = run(rows)
    fp8_run["dtype"] = "fp8"
    with pytest.raises(CostInputError, match="no fp8 peak"):
        project_run(fp8_run, TARGET)
    with pytest.raises(CostInputError, match="no complete step"):
        project_run(run(rows[:1]), TARGET)


def test_projection_as_another_dtype_scales_bytes():
    # bf16 run projected as fp8 on a target with 800 TFLOP/s fp8: every byte count halves, FLOPs stay.
    # layer: max(1e6 / 800e12, 0.5e9 / 4e12 = 0.125 ms) / 50% = 0.25 ms
    # final_norm: 0.5e6 / 4e12 = 0.125 us / 25% = 0.5 us; lm_head: max(1e12 / 800e12 = 1.25 ms, ...) / 100%
    # step: 2 * 0.25 ms + 0.5 us + 1.25 ms = 1.7505 ms; fit: 50 GB * 0.5 = 25 GB
    target = DeviceSpec("t4x", "Target 4x", {"bf16": 400.0, "fp8": 800.0}, 4000.0, memory_gb=30)
    rows = [row("layer", 1e6, 1e9, 2e-3), row("final_norm", 1e3, 1e6, 4e-6), row("lm_head", 1e12, 1e8, 10e-3)]
    p = project_run(run(rows), target, as_dtype="fp8")
    assert p.steps[0].step_seconds == pytest.approx(1.7505e-3)
    assert p.steps[0].fits is True
    assert "projected as fp8: every byte count scaled by 0.5" in p.assumption
    with pytest.raises(CostInputError, match="unknown dtype"):
        project_run(run(rows), target, as_dtype="int3")

"""The whole decode step of each model, timed as one call: layers x decoder layer (over distinct rotated
layer weights and KV caches) + final_norm + lm_head, with tokens/s and $/M tokens in extra_info.

The gate: the step passes bench.measure.gate.check_case against its float64 reference before it is timed.
"""
from __future__ import annotations

from benchmarks import harness
from bench.configs.model_configs import get_model
from bench.measure.gate import check_case
from costmodel.step import decode_rates


def test_decode_step(benchmark, workload, backend, device, run_dtype, ceilings, step_rounds):
    name, batch, context = workload
    model = get_model(name)
    step = harness.DecodeStep(model, batch, context, run_dtype, device, backend)
    benchmark.group = f"{name} b{batch} ctx{context}"

    check = check_case(step.case, backend, run_dtype)
    assert check.ok, f"decode_step {backend} failed its correctness check: {check.reason}"

    prepared = harness.Prepared(step.run, step.make_inputs, device)
    median = harness.run_pedantic(benchmark, prepared, step_rounds)
    info = dict(op="decode_step", kind="step", model=name, batch=batch, context=context, dtype=run_dtype,
                backend=backend, device=device.name, layers=model.layers, layer_sets=step.layer_sets,
                flops=step.flops, bytes=step.bytes, rel_error=check.error, median_s=median,
                peak_file=ceilings[1],
                **prepared.describe(), **harness.derived(step.flops, step.bytes, median, run_dtype, device, ceilings[0]))
    if median:
        rates = decode_rates(batch, median)
        info.update(**rates, **harness.economics(device, rates["tokens_per_s"]))
    benchmark.extra_info.update(info)

"""Every op of a decode step and the decoder layer, at the curated shapes of each model, per backend.

Each benchmark checks its implementation against the float64 reference (bench.measure.gate.check_case, fresh
random inputs) before anything is timed, then times it with pytest-benchmark's pedantic mode.
"""
from __future__ import annotations

import pytest

from benchmarks import harness
from bench.configs.model_configs import get_model
from bench.measure.gate import check_case
from kernels.dtypes import torch_dtype
from kernels.layer import MODEL_OPS, layer_case, layer_ops, op_cases

OPS = (*layer_ops(), *MODEL_OPS, "layer")


def case_for(op: str, model, batch: int, context: int, dtype: str, device, backend: str):
    d = model.layer_dims
    if op == "layer":
        return layer_case(d, batch, context, torch_dtype(dtype), device.torch_device, [backend])
    cases = op_cases(d, batch, context, torch_dtype(dtype), device.torch_device, [backend])
    return next(c for c in cases if c.name == op)


@pytest.mark.parametrize("op", OPS)
def test_op(benchmark, workload, op, backend, device, run_dtype, ceilings, rounds):
    name, batch, context = workload
    model = get_model(name)
    case = case_for(op, model, batch, context, run_dtype, device, backend)
    benchmark.group = f"{name} b{batch} ctx{context}"

    check = check_case(case, backend, run_dtype)
    assert check.ok, f"{op} {backend} failed its correctness check: {check.reason}"

    prepared = harness.Prepared(case.impls[backend], case.make_inputs, device)
    median = harness.run_pedantic(benchmark, prepared, rounds)
    benchmark.extra_info.update(
        op=op, kind=case.kind, model=name, batch=batch, context=context, dtype=run_dtype, backend=backend,
        device=device.name, flops=case.flops, bytes=case.bytes, rel_error=check.error, median_s=median,
        peak_file=ceilings[1], **prepared.describe(),
        **harness.derived(case.flops, case.bytes, median, run_dtype, device, ceilings[0]),
    )

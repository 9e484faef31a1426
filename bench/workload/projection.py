"""A measured workload carried onto a device you do not have (torch-free), for `compare --served` and the
report: each measured step is assumed to reach on the target the same fraction of its roofline bound
(max(FLOPs / peak, bytes / bandwidth)) as it reached where it was measured, capped at the bound; then the
points are composed again with the target's memory (what fits) and labelled projected.

Step-level, not op-level: a step's FLOPs and bytes are summed over its ops, so an op mix that is partly
compute- and partly memory-bound is carried as one. Launch gaps, kernel tuning and interconnect are not
modelled (costmodel/roofline_projection.py says the same of `project`). A planning figure, never a measurement."""
from __future__ import annotations

from dataclasses import replace

from bench.errors import UserError
from bench.workload import compose as comp
from bench.workload.plan import make_spec
from bench.records.schema import WorkloadRecord
from costmodel.input_errors import CostInputError
from costmodel.roofline_projection import BYTES_PER_ELEMENT, source_roof, target_roof


def spec_of(record: WorkloadRecord):
    w = record.workload
    return make_spec(w["isl"], w["osl"], list(w["concurrency"]), w["chunk"], w.get("engine_policy", "tokenbench"))


def measured_steps(record: WorkloadRecord) -> dict:
    steps = {}
    for s in record.steps:
        step = comp.WorkloadStep.from_entry(s)
        steps[step.key] = step
    return steps


def project_points(record: WorkloadRecord, target_key: str, as_dtype: str | None = None) -> list:
    """[(WorkloadPoint, Composition)] of the record's workload on `target_key` (a catalog device), in
    `as_dtype` (default: the run's dtype; a CPU fp32 run may be carried as bf16 serving: bytes scale)."""
    from bench.derive.comparison_sides import device_spec

    if record.workload.get("tp", 1) > 1:
        raise UserError("a tensor-parallel workload is not projected: its all-reduces ride an interconnect the "
                        "roofline does not model")
    target = device_spec(target_key)
    run_dtype = record.dtype
    dtype = as_dtype or run_dtype
    if dtype not in BYTES_PER_ELEMENT:
        raise UserError(f"unknown dtype {dtype!r}; choose one of: {', '.join(BYTES_PER_ELEMENT)}")
    scale = BYTES_PER_ELEMENT[dtype] / BYTES_PER_ELEMENT[run_dtype]
    try:
        src, tgt = source_roof(record.ceilings, run_dtype), target_roof(target, dtype)
    except CostInputError as exc:
        raise UserError(str(exc)) from None
    measured = measured_steps(record)
    if not any(s.seconds for s in measured.values()):
        raise UserError("the workload file has no measured step to project (its points cannot be recomposed)")
    steps = {}
    for key, step in measured.items():
        if step.seconds is None or not step.flops:
            steps[key] = step
            continue
        efficiency = min(1.0, src.bound(step.flops, step.bytes) / step.seconds)
        seconds = tgt.bound(step.flops, step.bytes * scale) / efficiency
        steps[key] = replace(step, seconds=seconds, bytes=int(step.bytes * scale))
    model = record.model
    bf16 = BYTES_PER_ELEMENT["bf16"]
    h = comp.Header(device=target.key, model=model["name"], precision=dtype,
                    memory_bytes=None if not target.memory_gb else int(target.memory_gb * 1e9),
                    weight_bytes=int(model["weight_bytes"] * BYTES_PER_ELEMENT[dtype] / bf16),
                    kv_bytes_per_token=int(model["kv_bytes_per_token"] * BYTES_PER_ELEMENT[dtype] / bf16))
    out = []
    for point, composition in comp.compose(h, spec_of(record), steps, source="projected"):
        label = f"{target.key} {dtype} {point.workload} {point.engine_model} (projected from {record.device.name})"
        out.append((replace(point, label=label, note=(point.note + "; " if point.note else "") + src.basis), composition))
    return out


def projections_for(record: WorkloadRecord, targets: list[str],
                    as_dtype: str | None = None) -> tuple[list, list[str]]:
    """Projected points of the record on each target, and a note for each target it cannot be carried to."""
    points, notes = [], []
    for key in targets:
        try:
            points += [p for p, _ in project_points(record, key, as_dtype)]
        except UserError as exc:
            notes.append(f"not projected onto {key}: {exc}")
    return points, notes

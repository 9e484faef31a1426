"""The cases and steps of a model built from its config's layer types (kernels/spec_model.py) in `run` and
`verify`: decode, prefill and mixed cases per layer type, and one step per routing distribution (uniform and
Zipf for a model with MoE layers), each composed by layer counts, with the MoE block's active experts and its
heaviest expert's tokens. Dense Llama-shaped models never come here (decode_sweep and prefill_sweep keep
their own layer)."""
from __future__ import annotations

from bench.derive import roofline
from kernels.dtypes import torch_dtype
from kernels.prefill_layer import Chunk
from kernels.spec_layer import Rows
from kernels.spec_model import compose, layer_cases, layer_types, model_op_cases, moe_name, routings


def decode_cases(plan, device, batch: int, context: int) -> list:
    spec, dtype = plan.model.spec, torch_dtype(plan.dtype)
    cases = layer_cases(spec, Rows(batch, context), dtype, device.torch_device, plan.backends, plan.per_op)
    return cases + model_op_cases(spec, batch, dtype, device.torch_device, plan.backends)


def prefill_chunk_cases(plan, device, c: Chunk) -> list:
    return layer_cases(plan.model.spec, Rows(0, 0, c), torch_dtype(plan.dtype), device.torch_device,
                       plan.backends, plan.per_op)


def mixed_cases(plan, device, batch: int, context: int, c: Chunk) -> list:
    return layer_cases(plan.model.spec, Rows(batch, context, c), torch_dtype(plan.dtype), device.torch_device,
                       plan.backends, plan.per_op)


def model_cases(plan, device, rows: int) -> list:
    return model_op_cases(plan.model.spec, rows, torch_dtype(plan.dtype), device.torch_device, plan.backends)


def _sum(rows: list, name: str, field: str):
    """The figure summed over the rows of `name` (a prefill's chunks), None where any is missing or
    invalid."""
    mine = [r for r in rows if r.op == name]
    if not mine or any(not r.seconds_p50 for r in mine):
        return None
    return sum(getattr(r, field) for r in mine)


def _shape(row) -> dict:
    return (row.shape if hasattr(row, "shape") else row.extra.get("shape")) or {}


def routing_fields(model_spec, rows: list, routing) -> dict:
    """Active routed experts and the heaviest expert's tokens of each MoE block measured at `routing` (input
    set 0, per layer call; over a prefill's chunks: the mean of the active experts, the largest heaviest)."""
    if routing is None:
        return {}
    active, heaviest = [], []
    names = dict.fromkeys(moe_name(t, routing) for t in layer_types(model_spec) if t.spec.mlp.kind == "moe")
    for name in names:
        shapes = [_shape(r) for r in rows if r.op == name]
        active += [s["active_experts"] for s in shapes if "active_experts" in s]
        heaviest += [s["max_tokens_per_expert"] for s in shapes if "max_tokens_per_expert" in s]
    return {"routing": routing.label,
            "active_experts": sum(active) / len(active) if active else None,
            "max_tokens_per_expert": max(heaviest) if heaviest else None,
            "experts": next(layer.mlp.experts for layer, _ in model_spec.groups if layer.mlp.kind == "moe")}


def derive_steps(plan, device, rows: list, base: dict, tokens: float, price_rate, economics,
                 bytes_needed: int, price_step) -> list[dict]:
    """One step per routing (bench.records.schema.Step) from `rows` (this point's and backend's): `base` holds
    the step's keys; `tokens` the tokens its rate counts for tokens_per_s; `price_rate(seconds)` the rate it
    is priced at."""
    from bench.records.schema import Step

    spec = plan.model.spec
    out = []
    for routing in routings(spec):
        step = Step.build(**base)
        seconds = compose(spec, lambda n: _sum(rows, n, "seconds_p50"), routing)
        step.set(derivation=seconds.derivation, layer_counts=seconds.layer_counts,
                 **routing_fields(spec, rows, routing))
        step.set(fits=bytes_needed <= device.memory_bytes, bytes_needed=bytes_needed,
                 memory_bytes=device.memory_bytes)
        if seconds.value is None:
            step.set(valid=False, reason=f"no valid timing for {', '.join(seconds.missing)}")
            out.append(step)
            continue
        flops = compose(spec, lambda n: _sum(rows, n, "flops"), routing).value
        nbytes = compose(spec, lambda n: _sum(rows, n, "bytes"), routing).value
        s = seconds.value
        step.set(valid=True, step_seconds=s, flops=flops, bytes=nbytes, tokens_per_s=tokens / s,
                 tokens_per_s_per_user=1.0 / s)
        step.set(**roofline.derive(flops, nbytes, s, plan.dtype, device.spec, plan.ceilings.copy_bw,
                                   plan.ceilings.peak_flops))
        price_step(step, price_rate(s), economics, bytes_needed, device)
        out.append(step)
    return out

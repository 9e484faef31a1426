"""The MoE sweep (`tokenbench moe`): a mixture-of-experts model's MoE MLP (router + experts) for one decode
step, timed per backend at each batch after its float64 check, with the experts each timed input set
actually activated beside the expected count for uniform routing; then per backend the step of the MoE
layers' MLPs (costmodel.step.moe_step)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from costmodel.step import MOE_STEP_DERIVATION, moe_step
from kernels import moe
from kernels.dtypes import torch_dtype


def run_moe_sweep(plan, device, record: dict, writer, on_row: Callable[[dict], None]) -> None:
    """Every batch of `plan` and backend: one row each, written as it is measured and handed to `on_row`,
    then the batch's steps; the record is marked complete at the end."""
    from bench.sweeps.decode_sweep import measure

    model, dtype, backends = plan.model, plan.dtype, plan.backends
    eb = torch_dtype(dtype).itemsize
    for batch in plan.batches:
        shape = model.moe_shape(batch)
        case = moe.moe_case(shape, torch_dtype(dtype), device.torch_device, backends)
        rows = []
        for backend in backends:
            # the loop baseline reads its per-expert token counts on the host: no CUDA graph can hold it
            row = measure(case, backend, device, replace(plan, cuda_graph=False) if backend == "torch" else plan,
                          batch, 0)
            # the routing of every input set the timer rotated through (seeds 0..n-1, as time_case draws them)
            per_set = [moe.active_experts(moe.routing_inputs(shape, torch_dtype(dtype), device.torch_device, seed))
                       for seed in range(row.get("rotation_sets") or 1)]
            active = sum(per_set) / len(per_set)
            row.update(expected_active_experts=moe.expected_active_experts(shape), active_experts_measured=active,
                       active_experts_per_set=per_set,
                       active_experts_note="distinct routed experts each timed input set activated; bytes_actual "
                                           "uses their mean",
                       bytes_actual=moe.min_bytes(shape, eb, active=active))
            if row.get("seconds_p50"):
                row["gbps_actual"] = row["bytes_actual"] / row["seconds_p50"] / 1e9
                row["moe_seconds_all_layers"] = moe_step(model.moe_layers, row["seconds_p50"])
            rows.append(row)
            record["rows"].append(row)
            writer.write(record)
            on_row(row)
        record["steps"].extend(moe_steps(model, dtype, batch, rows, device))
        writer.write(record)
    record["complete"] = True
    writer.write(record)


def moe_steps(model, dtype: str, batch: int, rows: list, device) -> list:
    """Per backend: the model's MoE MLPs over one decode step (moe_layers x moe). Attention and the dense
    layers are not in it (`tokenbench run` measures them), so no cost per token is derived from it."""
    needed = model.weight_bytes(dtype)  # every expert stays resident, active or not
    out = []
    for r in rows:
        step = {"batch": batch, "context": 0, "backend": r["backend"], "dtype": dtype, "derived": True,
                "derivation": MOE_STEP_DERIVATION,
                "moe_layers": model.moe_layers, "expected_active_experts": r["expected_active_experts"],
                "active_experts_measured": r["active_experts_measured"],
                "decode_weight_bytes_expected": model.decode_weight_bytes(dtype, batch),
                "bytes_needed": needed, "memory_bytes": device.memory_bytes, "fits": needed <= device.memory_bytes,
                "cost_per_mtok": None, "tokens_per_s_per_mw": None}
        if not r.get("seconds_p50"):
            step.update(valid=False, reason=r.get("skipped") or r.get("check"))
        else:
            seconds = moe_step(model.moe_layers, r["seconds_p50"])
            step.update(valid=True, step_seconds=seconds, tokens_per_s=batch / seconds,
                        tokens_per_s_per_user=1.0 / seconds,
                        gbps=moe_step(model.moe_layers, r["bytes"]) / seconds / 1e9,
                        pct_copy_bw=r.get("pct_copy_bw"))
        out.append(step)
    return out

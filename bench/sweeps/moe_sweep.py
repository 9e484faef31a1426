"""The MoE sweep (`tokenbench moe`): a mixture-of-experts model's MoE MLP (router + experts) for one decode
step, timed per backend at each batch after its float64 check, with the experts each timed input set
actually activated beside the expected count for uniform routing; then per backend the step of the MoE
layers' MLPs (costmodel.step.moe_step). `weights` other than "activation" stores the experts as FP8 with
128x128 block scales or MXFP4 (kernels/moe_lowprec.py): bytes count the stored weights and scales, FP8 rows
are read against the FP8 peak, and the steps' resident weights shrink with the experts."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from bench.derive import roofline
from costmodel.step import MOE_STEP_DERIVATION, moe_step
from kernels import moe, moe_lowprec
from kernels.dtypes import torch_dtype


def _case(shape, weights: str, dtype: str, device, backends):
    if weights == "activation":
        return moe.moe_case(shape, torch_dtype(dtype), device.torch_device, backends)
    return moe_lowprec.moe_case(shape, weights, torch_dtype(dtype), device.torch_device, backends)


def _bytes_at(shape, weights: str, eb: int, active: float) -> int:
    if weights == "activation":
        return moe.min_bytes(shape, eb, active=active)
    return moe_lowprec.min_bytes(shape, weights, eb, active=active)


def run_moe_sweep(plan, device, record: dict, writer, on_row: Callable[[dict], None],
                  weights: str = "activation") -> None:
    """Every batch of `plan` and backend: one row each, written as it is measured and handed to `on_row`,
    then the batch's steps; the record is marked complete at the end."""
    from bench.sweeps.decode_sweep import measure

    model, dtype, backends = plan.model, plan.dtype, plan.backends
    eb = torch_dtype(dtype).itemsize
    for batch in plan.batches:
        shape = model.moe_shape(batch)
        case = _case(shape, weights, dtype, device, backends)
        rows = []
        for backend in backends:
            # the loop baselines read their per-expert token counts on the host: no CUDA graph can hold them
            looped = backend in ("torch", "torch-dequant")
            row = measure(case, backend, device, replace(plan, cuda_graph=False) if looped else plan, batch,
                          0)
            # the routing of every input set the timer rotated through (seeds 0..n-1, as time_case draws them)
            per_set = [moe.active_experts(moe.routing_inputs(shape, torch_dtype(dtype), device.torch_device, seed))
                       for seed in range(row.get("rotation_sets") or 1)]
            active = sum(per_set) / len(per_set)
            row.update(expected_active_experts=moe.expected_active_experts(shape), active_experts_measured=active,
                       active_experts_per_set=per_set,
                       active_experts_note="distinct routed experts each timed input set activated; bytes_actual "
                                           "uses their mean",
                       bytes_actual=_bytes_at(shape, weights, eb, active), expert_weights=weights)
            if row.get("seconds_p50") and weights == "fp8-block":  # FP8 math: read against the FP8 peak
                row.update(roofline.derive(row["flops"], row["bytes"], row["seconds_p50"], "fp8", device.spec,
                                           plan.ceilings.copy_bw))
            if row.get("seconds_p50"):
                row["gbps_actual"] = row["bytes_actual"] / row["seconds_p50"] / 1e9
                row["moe_seconds_all_layers"] = moe_step(model.moe_layers, row["seconds_p50"])
            rows.append(row)
            record["rows"].append(row)
            writer.write(record)
            on_row(row)
        record["steps"].extend(moe_steps(model, dtype, batch, rows, device, weights))
        writer.write(record)
    record["complete"] = True
    writer.write(record)


def expert_format_saving(model, dtype: str, weights: str, experts: float) -> int:
    """Bytes `experts` experts of every MoE layer take in the activation dtype less what they take stored
    in `weights` (0 for "activation")."""
    if weights == "activation":
        return 0
    shape = model.moe_shape(1)
    as_stored = moe_lowprec.expert_bytes(shape, weights)
    return round(model.moe_layers * experts * (3 * model.hidden * model.moe_ffn * torch_dtype(dtype).itemsize
                                               - as_stored))


def moe_steps(model, dtype: str, batch: int, rows: list, device, weights: str = "activation") -> list:
    """Per backend: the model's MoE MLPs over one decode step (moe_layers x moe). Attention and the dense
    layers are not in it (`tokenbench run` measures them), so no cost per token is derived from it.
    With low-precision experts the rest of the model stays in `dtype`."""
    # every expert stays resident, active or not
    needed = model.weight_bytes(dtype) - expert_format_saving(model, dtype, weights,
                                                              model.experts + model.shared_experts)
    expected = model.expected_active_experts(batch) + model.shared_experts
    out = []
    for r in rows:
        step = {"batch": batch, "context": 0, "backend": r["backend"], "dtype": dtype, "derived": True,
                "derivation": MOE_STEP_DERIVATION,
                "moe_layers": model.moe_layers, "expected_active_experts": r["expected_active_experts"],
                "active_experts_measured": r["active_experts_measured"],
                "expert_weights": weights,
                "decode_weight_bytes_expected": model.decode_weight_bytes(dtype, batch)
                - expert_format_saving(model, dtype, weights, expected),
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

"""Time a mixture-of-experts model's MoE MLP (router + experts) for one decode step: PyTorch (loop over the
active experts, or gather-and-bmm) and the Triton grouped expert GEMM, each verified against float64 first.
Work counts only activated experts: bytes at the expected count for uniform routing, and at the count the
measured input set actually activated."""
from __future__ import annotations

import json
from dataclasses import replace

from bench.commands import _scale_common as common
from bench.errors import UserError
from bench.configs.model_configs import MODELS, get_model
from bench.parsing import choice, positive_int_list
from kernels import moe
from kernels.dtypes import TORCH_DTYPES, torch_dtype

GPU_DEFAULTS = {"model": "mixtral-8x7b", "dtype": "bf16", "batch": "1,8,32,128", "backend": "torch,triton"}
CPU_DEFAULTS = {"model": "tiny-moe", "dtype": "fp32", "batch": "1,8", "backend": "torch,torch-gather"}


def add_arguments(p):
    moe_models = [n for n, m in MODELS.items() if m.is_moe]
    p.add_argument("--model", help=f"one of: {', '.join(moe_models)} (default mixtral-8x7b on GPU, tiny-moe on CPU)")
    p.add_argument("--batch", help="comma list of batch sizes (tokens per step)")
    p.add_argument("--dtype", help="bf16 | fp16 | fp32 (default bf16 on GPU, fp32 on CPU)")
    p.add_argument("--backend", help=f"comma list of: {', '.join(moe.IMPLS)}")
    common.add_common_arguments(p)


def main(args) -> int:
    from bench.sweeps.decode_sweep import measure

    device, label = common.detect(args)
    d = CPU_DEFAULTS if device.kind == "cpu" else GPU_DEFAULTS
    model = get_model(args.model or d["model"])
    if not model.is_moe:
        raise UserError(f"{model.name} is dense; choose a mixture of experts: "
                        f"{', '.join(n for n, m in MODELS.items() if m.is_moe)}")
    dtype = choice(args.dtype or d["dtype"], tuple(TORCH_DTYPES), "dtype")
    batches = positive_int_list(args.batch or d["batch"], "--batch")
    backends = common.backends_for(args.backend or d["backend"], tuple(moe.IMPLS), device)
    plan = common.plan_for(model, batches, dtype, backends, args, device)
    writer, record, _ = common.start("moe", args, device, model, dtype, {
        "batches": batches, "backends": backends, "budget_s": plan.budget_s, "cuda_graph": plan.cuda_graph})
    common.measure_ceilings(plan, device, record, writer)
    common.say(f"tokenbench moe on {label}: {device.name}; {model.name} ({model.experts} experts, top-"
               f"{model.experts_per_token}, +{model.shared_experts} shared, expert FFN {model.moe_ffn}), {dtype}")
    eb = torch_dtype(dtype).itemsize
    for batch in batches:
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
                row["moe_seconds_all_layers"] = model.moe_layers * row["seconds_p50"]
            rows.append(row)
            record["rows"].append(row)
            writer.write(record)
            _say_row(row)
        record["steps"].extend(_steps(model, dtype, batch, rows, device))
        writer.write(record)
    record["complete"] = True
    writer.write(record)
    common.say(f"wrote {writer.json_path}")
    if args.json:
        from bench.records.store import clean

        print(json.dumps(clean(record), indent=1))
    return 0


def _steps(model, dtype: str, batch: int, rows: list, device) -> list:
    """Per backend: the model's MoE MLPs over one decode step (moe_layers x moe). Attention and the dense
    layers are not in it (`tokenbench run` measures them), so no cost per token is derived from it."""
    needed = model.weight_bytes(dtype)  # every expert stays resident, active or not
    out = []
    for r in rows:
        step = {"batch": batch, "context": 0, "backend": r["backend"], "dtype": dtype, "derived": True,
                "derivation": "moe_layers x moe: the MoE MLPs only (attention, dense layers, LM head excluded)",
                "moe_layers": model.moe_layers, "expected_active_experts": r["expected_active_experts"],
                "active_experts_measured": r["active_experts_measured"],
                "decode_weight_bytes_expected": model.decode_weight_bytes(dtype, batch),
                "bytes_needed": needed, "memory_bytes": device.memory_bytes, "fits": needed <= device.memory_bytes,
                "cost_per_mtok": None, "tokens_per_s_per_mw": None}
        if not r.get("seconds_p50"):
            step.update(valid=False, reason=r.get("skipped") or r.get("check"))
        else:
            seconds = model.moe_layers * r["seconds_p50"]
            step.update(valid=True, step_seconds=seconds, tokens_per_s=batch / seconds,
                        tokens_per_s_per_user=1.0 / seconds, gbps=model.moe_layers * r["bytes"] / seconds / 1e9,
                        pct_copy_bw=r.get("pct_copy_bw"))
        out.append(step)
    return out


def _say_row(r: dict) -> None:
    head = f"  moe b={r['batch']} {r['backend']}:"
    if not r.get("seconds_p50"):
        common.say(f"{head} not timed: {r.get('skipped') or r.get('check')}")
        return
    common.say(f"{head} {r['seconds_p50'] * 1e6:.1f} us, {r['tflops']:.3f} TFLOP/s, {r['gbps']:.1f} GB/s at "
               f"{r['expected_active_experts']:.2f} expected experts ({r['gbps_actual']:.1f} GB/s at the "
               f"{r['active_experts_measured']:.2f} activated), rel err {r['rel_error']:.1e}")

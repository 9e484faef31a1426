"""Time a mixture-of-experts model's MoE MLP (router + experts) for one decode step: PyTorch (loop over the
active experts, or gather-and-bmm) and the Triton grouped expert GEMM, each verified against float64 first.
Work counts only activated experts: bytes at the expected count for uniform routing, and at the count the
measured input set actually activated."""
from __future__ import annotations

import json

from bench.commands import _scale_common as common
from bench.errors import UserError
from bench.configs.model_configs import MODELS, get_model
from bench.parsing import choice, positive_float, positive_int_list
from kernels import moe
from kernels.dtypes import TORCH_DTYPES

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
    from bench.derive.run_pricing import run_price_quote
    from bench.sweeps.engine import run_plan
    from bench.sweeps.moe_sweep import MoeSweep
    from bench.sweeps.op_sweep_setup import op_plan

    device, label = common.detect(args)
    d = CPU_DEFAULTS if device.kind == "cpu" else GPU_DEFAULTS
    model = get_model(args.model or d["model"])
    if not model.is_moe:
        raise UserError(f"{model.name} is dense; choose a mixture of experts: "
                        f"{', '.join(n for n, m in MODELS.items() if m.is_moe)}")
    dtype = choice(args.dtype or d["dtype"], tuple(TORCH_DTYPES), "dtype")
    batches = positive_int_list(args.batch or d["batch"], "--batch")
    backends = common.backends_for(args.backend or d["backend"], tuple(moe.IMPLS), device)
    plan = op_plan(model, batches, dtype, backends, positive_float(args.budget_s, "--budget-s"), args.cuda_graph,
                   device)
    common.say(f"tokenbench moe on {label}: {device.name}; {model.name} ({model.experts} experts, top-"
               f"{model.experts_per_token}, +{model.shared_experts} shared, expert FFN {model.moe_ffn}), {dtype}")
    settings = {"batches": batches, "backends": backends, "budget_s": plan.budget_s, "cuda_graph": plan.cuda_graph}
    run = run_plan(MoeSweep(plan, device, run_price_quote(args, device), args.out, settings, common.console(),
                            _row_line), device)
    common.say(f"wrote {run.writer.json_path}")
    if args.json:
        from bench.records.store import clean

        print(json.dumps(clean(run.record), indent=1))
    return run.status


def _row_line(r) -> str:
    head = f"  moe b={r.batch} {r.backend}:"
    if not r.seconds_p50:
        return f"{head} not timed: {r.skipped or r.check}"
    return (f"{head} {r.seconds_p50 * 1e6:.1f} us, {r.tflops:.3f} TFLOP/s, {r.gbps:.1f} GB/s at "
            f"{r.expected_active_experts:.2f} expected experts ({r.gbps_actual:.1f} GB/s at the "
            f"{r.active_experts_measured:.2f} activated), rel err {r.rel_error:.1e}")

"""Time a model's decode projections in FP8 (torch._scaled_mm and the Triton FP8 GEMM; per-tensor and
per-channel scales) beside bf16 on the same shapes, each verified first, and re-derive the GEMM share of
the step and its economics. On devices without FP8 the FP8 rows are skipped with the reason."""
from __future__ import annotations

import json

from bench.commands import _scale_common as common
from bench.configs.model_configs import MODELS, get_model
from bench.parsing import positive_float, positive_int_list
from kernels import fp8

GPU_DEFAULTS = {"model": "llama-3.1-8b", "batch": "1,8,32,128"}
CPU_DEFAULTS = {"model": "tiny", "batch": "1,8"}


def add_arguments(p):
    p.add_argument("--model", help=f"one of: {', '.join(MODELS)}, or the path of a Hugging Face config.json (or of its folder) (default llama-3.1-8b on GPU, tiny on CPU)")
    p.add_argument("--batch", help="comma list of batch sizes")
    p.add_argument("--scaling", default="tensor,channel", help="comma list of: tensor, channel")
    p.add_argument("--backend", default="torch,triton,triton-w8a16",
                   help="FP8 backends: torch (_scaled_mm), triton (W8A8), triton-w8a16 (FP8 weights, bf16 x)")
    common.add_common_arguments(p)


def main(args) -> int:
    from bench.derive.run_pricing import run_price_quote
    from bench.sweeps.engine import run_plan
    from bench.sweeps.fp8_sweep import Fp8Sweep, fp4_reason
    from bench.sweeps.op_sweep_setup import op_plan

    device, label = common.detect(args)
    d = CPU_DEFAULTS if device.kind == "cpu" else GPU_DEFAULTS
    model = get_model(args.model or d["model"])
    from bench.configs.model_configs import refuse_moe

    refuse_moe(model, "`tokenbench fp8` (its step is the dense layer's GEMMs)")
    batches = positive_int_list(args.batch or d["batch"], "--batch")
    scalings = [s.strip() for s in args.scaling.split(",") if s.strip()]
    for s in scalings:
        if s not in fp8.SCALINGS:
            from bench.errors import UserError

            raise UserError(f"unknown --scaling {s!r}; choose from {', '.join(fp8.SCALINGS)}")
    ok, why = fp8.support(device)
    # without FP8 nothing FP8 runs, so the CPU's Triton-interpreter condition does not apply
    backends = common.backends_for(args.backend, tuple(fp8.IMPLS), device if ok else None)
    plan = op_plan(model, batches, "bf16", ["torch"], positive_float(args.budget_s, "--budget-s"), args.cuda_graph,
                   device)
    settings = {"batches": batches, "scalings": scalings, "backends": backends, "budget_s": plan.budget_s,
                "fp8_supported": ok, "fp8_skip_reason": why or None, "fp4_skip_reason": fp4_reason(device)}
    common.say(f"tokenbench fp8 on {label}: {device.name}; {model.name}; FP8 " +
               ("available" if ok else f"rows skipped: {why}"))
    sweep = Fp8Sweep(plan, device, run_price_quote(args, device), args.out, settings, common.console(), scalings,
                     backends, (ok, why))
    run = run_plan(sweep, device)
    for s in run.record["steps"]:
        if s.valid:
            common.say(f"  b={s.batch} {s.precision}: GEMMs {s.gemm_seconds_per_layer * 1e6:.1f} us/layer, "
                       f"GEMM-only step {s.step_seconds * 1e3:.3f} ms, {s.tokens_per_s:.1f} tok/s"
                       + (f", x{s.speedup_vs_bf16:.2f} vs bf16" if s.speedup_vs_bf16 else ""))
        elif s.reason.removeprefix("skipped: ") not in sweep.said:
            common.say(f"  b={s.batch} {s.precision}: {s.reason}")
    common.say(f"wrote {run.writer.json_path}")
    if args.json:
        from bench.records.store import clean

        print(json.dumps(clean(run.record), indent=1))
    return run.status

"""Time a mixture-of-experts model's MoE MLP (router + experts) for one decode step: PyTorch (loop over the
active experts, or gather-and-bmm) and the Triton grouped expert GEMM, each verified against float64 first.
Work counts only activated experts: bytes at the expected count for uniform routing, and at the count the
measured input set actually activated. `--weights fp8-block|mxfp4` stores the experts as served
(DeepSeek's FP8 with 128x128 block scales, gpt-oss's MXFP4; kernels/moe_lowprec.py)."""
from __future__ import annotations

import json

from bench.commands import _scale_common as common
from bench.errors import UserError
from bench.configs.model_configs import MODELS, get_model
from bench.parsing import choice, positive_float, positive_int_list
from kernels import moe, moe_lowprec
from kernels.dtypes import TORCH_DTYPES

GPU_DEFAULTS = {"model": "mixtral-8x7b", "dtype": "bf16", "batch": "1,8,32,128", "backend": "torch,triton"}
CPU_DEFAULTS = {"model": "tiny-moe", "dtype": "fp32", "batch": "1,8", "backend": "torch,torch-gather"}
EXPERT_WEIGHTS = ("activation",) + moe_lowprec.WEIGHT_FORMATS
# backends by expert weight format and device kind, when --backend is not given
LOWPREC_BACKENDS = {("fp8-block", "cuda"): "torch,triton", ("fp8-block", "cpu"): "torch-dequant",
                    ("mxfp4", "cuda"): "torch-dequant,triton", ("mxfp4", "cpu"): "torch-dequant"}


def add_arguments(p):
    moe_models = [n for n, m in MODELS.items() if m.is_moe]
    p.add_argument("--model", help=f"one of: {', '.join(moe_models)} (default mixtral-8x7b on GPU, tiny-moe on CPU)")
    p.add_argument("--batch", help="comma list of batch sizes (tokens per step)")
    p.add_argument("--dtype", help="bf16 | fp16 | fp32 (default bf16 on GPU, fp32 on CPU)")
    p.add_argument("--backend", help=f"comma list of: {', '.join(moe.IMPLS)}; with --weights fp8-block: "
                                     "torch (blockwise _scaled_mm), torch-dequant, triton; with mxfp4: "
                                     "torch-dequant, triton")
    p.add_argument("--weights", default="activation",
                   help="expert weights: activation (stored in --dtype, default) | fp8-block (FP8 e4m3, "
                        "128x128 block scales, activations quantized per token and 128-group: "
                        "DeepSeek-V3/R1) | mxfp4 (FP4 E2M1 + E8M0 scale per 32, weight-only: gpt-oss)")
    common.add_common_arguments(p)


def main(args) -> int:
    from bench.derive.run_pricing import run_price_quote
    from bench.sweeps.moe_sweep import run_moe_sweep
    from bench.sweeps.op_sweep_setup import measure_ceilings, op_plan, open_op_record

    device, label = common.detect(args)
    d = CPU_DEFAULTS if device.kind == "cpu" else GPU_DEFAULTS
    model = get_model(args.model or d["model"])
    if not model.is_moe:
        raise UserError(f"{model.name} is dense; choose a mixture of experts: "
                        f"{', '.join(n for n, m in MODELS.items() if m.is_moe)}")
    dtype = choice(args.dtype or d["dtype"], tuple(TORCH_DTYPES), "dtype")
    batches = positive_int_list(args.batch or d["batch"], "--batch")
    weights = choice(args.weights, EXPERT_WEIGHTS, "weights")
    if weights == "activation":
        backends = common.backends_for(args.backend or d["backend"], tuple(moe.IMPLS), device)
    else:
        backends = lowprec_backends(args.backend, weights, model, device)
    plan = op_plan(model, batches, dtype, backends, positive_float(args.budget_s, "--budget-s"), args.cuda_graph,
                   device)
    writer, record, _ = open_op_record("moe", args.out, device, model, dtype, run_price_quote(args, device), {
        "batches": batches, "backends": backends, "budget_s": plan.budget_s, "cuda_graph": plan.cuda_graph,
        "expert_weights": weights})
    measure_ceilings(plan, device, record, writer)
    common.say(f"tokenbench moe on {label}: {device.name}; {model.name} ({model.experts} experts, top-"
               f"{model.experts_per_token}, +{model.shared_experts} shared, expert FFN {model.moe_ffn}), "
               f"{dtype}" + ("" if weights == "activation" else f", experts in {weights}"))
    run_moe_sweep(plan, device, record, writer, _say_row, weights)
    common.say(f"wrote {writer.json_path}")
    if args.json:
        from bench.records.store import clean

        print(json.dumps(clean(record), indent=1))
    return 0


def lowprec_backends(text, weights: str, model, device) -> list:
    """The backends for low-precision experts: the format's own, refused with one line where this device or
    model cannot run them (torch has no MXFP4 weight-only call; blockwise _scaled_mm is sm_90 + CUDA 12.9)."""
    shape = model.moe_shape(1)
    if weights == "mxfp4" and (shape.hidden % 2 or shape.ffn % 2):
        raise UserError(f"--weights mxfp4 packs two values a byte: {model.name}'s hidden {shape.hidden} and "
                        f"expert FFN {shape.ffn} must be even")
    allowed = tuple(moe_lowprec.IMPLS[weights])
    chosen = [b.strip() for b in (text or LOWPREC_BACKENDS[(weights, device.kind)]).split(",") if b.strip()]
    if "torch" in chosen and weights in moe_lowprec.NO_LIBRARY_CALL:
        raise UserError(f"--backend torch with --weights {weights}: {moe_lowprec.NO_LIBRARY_CALL[weights]}")
    chosen = common.backends_for(",".join(chosen), allowed, device)
    if weights == "fp8-block" and "torch" in chosen:
        ok, why = moe_lowprec.blockwise_scaled_mm_support(device)
        if not ok and text:
            raise UserError(f"--backend torch with --weights fp8-block: {why}; use torch-dequant or triton")
        if not ok:  # the GPU default: time what this device can run, and say why not the library call
            common.say(f"tokenbench moe: no torch row for fp8-block: {why}")
            chosen = [b for b in chosen if b != "torch"] or ["torch-dequant"]
    return chosen


def _say_row(r: dict) -> None:
    head = f"  moe b={r['batch']} {r['backend']}:"
    if not r.get("seconds_p50"):
        why = r.get("skipped") or r.get("check")
        if why.startswith("verified"):  # checked in emulation (FP8 on a CPU): its error is a result too
            common.say(f"{head} {why} (rel err {r['rel_error']:.1e})")
        else:
            common.say(f"{head} not timed: {why}")
        return
    common.say(f"{head} {r['seconds_p50'] * 1e6:.1f} us, {r['tflops']:.3f} TFLOP/s, {r['gbps']:.1f} GB/s at "
               f"{r['expected_active_experts']:.2f} expected experts ({r['gbps_actual']:.1f} GB/s at the "
               f"{r['active_experts_measured']:.2f} activated), rel err {r['rel_error']:.1e}")

"""Time a mixture-of-experts model's MoE MLP block (its own router, routed experts with biases and activation,
shared experts) at each token count (decode batch, or a prefill/mixed step's tokens): PyTorch (loop over the
active experts, or gather-and-bmm) and Triton (fused router selection, grouped expert GEMM), each verified
against float64 first, at uniform and Zipf-skewed routing. Work counts only activated experts: bytes at the
experts each timed input set's router really chose, printed with the heaviest expert's token count.
`--weights fp8-block|mxfp4` stores the experts as served (DeepSeek's FP8 with 128x128 block scales, gpt-oss's
MXFP4; kernels/moe_lowprec.py): that op is the Mixtral-style MoE MLP on random routing, so --router and
--routing are refused with it. `--ep N` shards the block over N devices by experts (bench/sweeps/ep_sweep.py):
on a torchrun group, or with `--ep-measure 1` one device's share timed here and the all-to-alls modelled."""
from __future__ import annotations

import json

from bench.commands import _scale_common as common
from bench.errors import UserError
from bench.configs.model_configs import MODELS, get_model
from bench.parsing import choice, positive_float, positive_int_list
from kernels import moe_block, moe_lowprec
from kernels.dtypes import TORCH_DTYPES
from kernels.moe_expert_parallel import check_ranks
from kernels.moe_router import ROUTER_KINDS
from kernels.moe_routing import parse_routing

GPU_DEFAULTS = {"model": "mixtral-8x7b", "dtype": "bf16", "batch": "1,8,32,128", "backend": "torch,triton"}
CPU_DEFAULTS = {"model": "tiny-moe", "dtype": "fp32", "batch": "1,8", "backend": "torch,torch-gather"}
EXPERT_WEIGHTS = ("activation",) + moe_lowprec.WEIGHT_FORMATS
# backends by expert weight format and device kind, when --backend is not given
LOWPREC_BACKENDS = {("fp8-block", "cuda"): "torch,triton", ("fp8-block", "cpu"): "torch-dequant",
                    ("mxfp4", "cuda"): "torch-dequant,triton", ("mxfp4", "cpu"): "torch-dequant"}


def add_arguments(p):
    moe_models = [n for n, m in MODELS.items() if m.is_moe]
    p.add_argument("--model", help=f"one of: {', '.join(moe_models)}, or a Hugging Face config.json (or its folder) "
                                   "(default mixtral-8x7b on GPU, tiny-moe on CPU)")
    p.add_argument("--batch", help="comma list of tokens per step (decode batch, or a prefill chunk's tokens)")
    p.add_argument("--router", help=f"one of: {', '.join(ROUTER_KINDS)} (default: the model's own)")
    p.add_argument("--routing", help="comma list of uniform | zipf[:S] (expert of popularity rank r drawn with "
                                     "probability ~ 1/r^S, S default 1; default uniform,zipf:1)")
    p.add_argument("--dtype", help="bf16 | fp16 | fp32 (default bf16 on GPU, fp32 on CPU)")
    p.add_argument("--backend", help=f"comma list of: {', '.join(moe_block.IMPLS)}; with --weights fp8-block: "
                                     "torch (blockwise _scaled_mm), torch-dequant, triton; with mxfp4: "
                                     "torch-dequant, triton")
    p.add_argument("--weights", default="activation",
                   help="expert weights: activation (stored in --dtype, default) | fp8-block (FP8 e4m3, "
                        "128x128 block scales, activations quantized per token and 128-group: "
                        "DeepSeek-V3/R1) | mxfp4 (FP4 E2M1 + E8M0 scale per 32, weight-only: gpt-oss)")
    p.add_argument("--ep", help="expert parallel over N devices (E/N experts each, data-parallel attention, "
                                "all-to-all dispatch and combine): a torchrun group of N ranks (NCCL on GPUs, "
                                "gloo on CPU) unless --ep-measure 1")
    p.add_argument("--ep-measure", help="1: time one device's share here and model the all-to-alls from "
                                        "--ep-busbw or the catalog NVLink figure (default: --ep, all measured)")
    p.add_argument("--ep-busbw", help="bus bandwidth in GB/s for the modelled all-to-all (--ep-measure 1)")
    common.add_common_arguments(p)


def main(args) -> int:
    if args.ep is not None:
        return _main_ep(args)
    if args.ep_measure is not None or args.ep_busbw is not None:
        raise UserError("--ep-measure and --ep-busbw go with --ep N")
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
    weights = choice(args.weights, EXPERT_WEIGHTS, "weights")
    kind, routings = None, []
    if weights == "activation":
        backends = common.backends_for(args.backend or d["backend"], tuple(moe_block.IMPLS), device)
        kind, routings = _block_kind(model, batches, args.router), _routings(args.routing or "uniform,zipf:1")
    else:
        if args.router or args.routing:
            raise UserError(f"--router and --routing measure the model's own MoE block with experts in --dtype; "
                            f"--weights {weights} times the Mixtral-style MoE op (softmax top-k, random routing)")
        backends = lowprec_backends(args.backend, weights, model, device)
    plan = op_plan(model, batches, dtype, backends, positive_float(args.budget_s, "--budget-s"), args.cuda_graph,
                   device)
    settings = {"batches": batches, "backends": backends, "budget_s": plan.budget_s, "cuda_graph": plan.cuda_graph,
                "expert_weights": weights, "routings": [r.label for r in routings],
                **({} if kind is None else {"router": kind.router.__dict__, "router_source": kind.source,
                                            "expert_bias": kind.expert_bias, "activation": kind.activation,
                                            "limit": kind.limit})}
    common.say(f"tokenbench moe on {label}: {device.name}; {model.name} ({model.experts} experts, top-"
               f"{model.experts_per_token}, +{model.shared_experts} shared, expert FFN {model.moe_ffn}), "
               f"{dtype}" + (f", experts in {weights} (softmax top-k router)" if kind is None else
                             f"; router {kind.router.describe()}, {kind.activation}"
                             + (" with expert biases" if kind.expert_bias else "")))
    run = run_plan(MoeSweep(plan, device, run_price_quote(args, device), args.out, settings, common.console(),
                            _row_line, kind, routings, weights), device)
    if kind is not None:
        _print_steps(run.record)
    common.say(f"wrote {run.writer.json_path}")
    if args.json:
        from bench.records.store import clean

        print(json.dumps(clean(run.record), indent=1))
    return run.status


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


def _block_kind(model, batches, router):
    """The model's MoE block kind (or --router's), checked at every token count; one line where it cannot be."""
    from bench.sweeps.moe_sweep import block_kind, block_shape

    try:
        kind = block_kind(model, choice(router, ROUTER_KINDS, "--router") if router else None)
        for b in batches:
            block_shape(model, b, kind)
        if model.hidden < model.experts:  # both distributions steer the router's input (kernels/moe_routing.py)
            raise ValueError(f"{model.name}: steered routing needs hidden >= experts")
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return kind


def _routings(text: str) -> list:
    out = []
    for item in text.split(","):
        try:
            routing = parse_routing(item)
        except ValueError as exc:
            raise UserError(f"--routing: {exc}") from None
        if routing in out:
            raise UserError(f"--routing lists {routing.label} twice")
        out.append(routing)
    return out


def _print_steps(record: dict) -> None:
    """The MoE step table (per routing and backend, with active experts and the heaviest expert) on stderr."""
    import sys

    from rich.console import Console

    from bench.records import store
    from bench.report.run_tables import print_moe_steps
    from bench.report.terminal_tables import console_width

    print_moe_steps(store.as_record(record), Console(stderr=True, width=console_width(sys.stderr)))


def _row_line(r) -> str:
    """What a measured row prints: the block's (or the router's) figures, or the MoE op's."""
    if r.routing is not None:
        return _block_row_line(r)
    head = f"  moe b={r.batch} {r.backend}:"
    if not r.seconds_p50:
        why = r.skipped or r.check
        if why.startswith("verified"):  # checked in emulation (FP8 on a CPU): its error is a result too
            return f"{head} {why} (rel err {r.rel_error:.1e})"
        return f"{head} not timed: {why}"
    return (f"{head} {r.seconds_p50 * 1e6:.1f} us, {r.tflops:.3f} TFLOP/s, {r.gbps:.1f} GB/s at "
            f"{r.expected_active_experts:.2f} expected experts ({r.gbps_actual:.1f} GB/s at the "
            f"{r.active_experts_measured:.2f} activated), rel err {r.rel_error:.1e}")


def _block_row_line(r) -> str:
    head = f"  {r.op} T={r.batch} {r.routing} {r.backend}:"
    if r.op == "router" or not r.seconds_p50:
        timed = (f"{r.seconds_p50 * 1e6:.1f} us, rel err {r.rel_error:.1e}" if r.seconds_p50
                 else f"not timed: {r.skipped or r.check}")
        extra = "" if r.op == "router" else (f"; {r.active_experts_measured:.1f} experts active, heaviest "
                                             f"{r.max_tokens_per_expert:.1f} tokens")
        return f"{head} {timed}{extra}"
    expected = (f" (uniform expects {r.expected_active_experts:.1f})"
                if r.expected_active_experts is not None else "")
    return (f"{head} {r.seconds_p50 * 1e6:.1f} us, {r.tflops:.3f} TFLOP/s, {r.gbps_actual:.1f} GB/s; "
            f"{r.active_experts_measured:.1f} experts active, heaviest {r.max_tokens_per_expert:.1f} tokens "
            f"(mean of {len(r.active_experts_per_set)} sets){expected}; rel err {r.rel_error:.1e}")


def _main_ep(args) -> int:
    """`--ep N`: a torchrun group of N ranks (bench/sweeps/ep_sweep.py's worker), or with --ep-measure 1 one
    device's share here with the all-to-alls modelled."""
    from bench.parsing import positive_int

    ranks = positive_int(args.ep, "--ep")
    measure = positive_int(args.ep_measure, "--ep-measure") if args.ep_measure is not None else ranks
    if args.weights != "activation" or args.router:
        raise UserError("--ep times the model's own MoE block with experts in --dtype: --weights and --router "
                        "are not taken with it")
    if measure not in (1, ranks):
        raise UserError(f"--ep-measure {measure}: measure all {ranks} ranks (the default) or 1 device's share")
    device, label = common.detect(args)
    model = get_model(args.model or (CPU_DEFAULTS if device.kind == "cpu" else GPU_DEFAULTS)["model"])
    if not model.is_moe:
        raise UserError(f"{model.name} is dense: --ep shards a mixture of experts")
    try:
        check_ranks(model.experts, ranks)
    except ValueError as exc:
        raise UserError(f"--ep {ranks}: {model.name}: {exc}") from None
    if measure == 1:
        return _ep_one_device(args, ranks, device, label, model)
    if args.ep_busbw is not None:
        raise UserError("--ep-busbw is for the modelled all-to-all (--ep-measure 1); the group measures its own")
    from bench.sweeps import torchrun_launcher as launcher

    if launcher.in_torchrun():
        raise UserError("--ep launches a torchrun group and cannot run inside one")
    worker = ["--model", args.model or model.name, "--batch", args.batch or "1,8",
              "--routing", args.routing or "uniform", "--device", args.device or "auto",
              "--budget-s", str(args.budget_s)]
    if args.dtype:
        worker += ["--dtype", args.dtype]
    if args.json:
        worker.append("--json")
    cmd = launcher.torchrun_command(ranks, "bench.sweeps.ep_sweep", worker, rdzv_id="tokenbench-ep")
    rc, note, kept = launcher.run_group(cmd, None, lambda n: "")
    if note:
        common.say(f"tokenbench moe --ep: {note}")
    return rc


def _ep_one_device(args, ranks: int, device, label: str, model) -> int:
    from bench.sweeps import ep_sweep

    dtype = choice(args.dtype or ("fp32" if device.kind == "cpu" else "bf16"), tuple(TORCH_DTYPES), "dtype")
    tokens = positive_int_list(args.batch or "1,8", "--batch")
    busbw, source = ep_sweep.link_bandwidth(device, positive_float(args.ep_busbw, "--ep-busbw")
                                            if args.ep_busbw is not None else None)
    routings = _routings(args.routing or "uniform")
    if len(routings) > 1:
        raise UserError("--ep takes one --routing")
    routing = routings[0]
    kind = _block_kind(model, tokens, None)
    unit = "GPU" if device.kind == "cuda" else "device"
    common.say(f"tokenbench moe --ep {ranks} --ep-measure 1 on {label}: {device.name}; {model.name} "
               f"({model.experts} experts, {model.experts // ranks} a device, "
               f"+{model.shared_experts} shared replicated), {dtype}, routing {routing.label}")
    results = []
    for t in tokens:
        s = ep_sweep.ep_shape(model, t, kind, ranks)
        result, check = ep_sweep.measure_one_device(s, model, dtype, device, positive_float(args.budget_s,
                                                    "--budget-s"), 0, routing, busbw, source)
        common.say(f"  one device's experts vs float64: rel err {check['rel_error']:.1e}")
        common.say("  " + ep_sweep.result_line(result, unit))
        results.append(result)
    if args.json:
        print(json.dumps([r.__dict__ for r in results], indent=1))
    return 0

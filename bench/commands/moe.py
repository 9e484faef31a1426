"""Time a mixture-of-experts model's MoE MLP block (its own router, routed experts with biases and activation,
shared experts) at each token count (decode batch, or a prefill/mixed step's tokens): PyTorch (loop over the
active experts, or gather-and-bmm) and Triton (fused router selection, grouped expert GEMM), each verified
against float64 first, at uniform and Zipf-skewed routing. Work counts only activated experts: bytes at the
experts each timed input set's router really chose, printed with the heaviest expert's token count."""
from __future__ import annotations

import json

from bench.commands import _scale_common as common
from bench.errors import UserError
from bench.configs.model_configs import MODELS, get_model
from bench.parsing import choice, positive_float, positive_int_list
from kernels import moe_block
from kernels.dtypes import TORCH_DTYPES
from kernels.moe_router import ROUTER_KINDS
from kernels.moe_routing import parse_routing

GPU_DEFAULTS = {"model": "mixtral-8x7b", "dtype": "bf16", "batch": "1,8,32,128", "backend": "torch,triton"}
CPU_DEFAULTS = {"model": "tiny-moe", "dtype": "fp32", "batch": "1,8", "backend": "torch,torch-gather"}


def add_arguments(p):
    moe_models = [n for n, m in MODELS.items() if m.is_moe]
    p.add_argument("--model", help=f"one of: {', '.join(moe_models)} (default mixtral-8x7b on GPU, tiny-moe on CPU)")
    p.add_argument("--batch", help="comma list of tokens per step (decode batch, or a prefill chunk's tokens)")
    p.add_argument("--router", help=f"one of: {', '.join(ROUTER_KINDS)} (default: the model's own)")
    p.add_argument("--routing", default="uniform,zipf:1",
                   help="comma list of uniform | zipf[:S] (expert of popularity rank r drawn with probability "
                        "~ 1/r^S, S default 1; default uniform,zipf:1)")
    p.add_argument("--dtype", help="bf16 | fp16 | fp32 (default bf16 on GPU, fp32 on CPU)")
    p.add_argument("--backend", help=f"comma list of: {', '.join(moe_block.IMPLS)}")
    common.add_common_arguments(p)


def main(args) -> int:
    from bench.derive.run_pricing import run_price_quote
    from bench.sweeps.moe_sweep import block_kind, block_shape, run_moe_sweep
    from bench.sweeps.op_sweep_setup import measure_ceilings, op_plan, open_op_record

    device, label = common.detect(args)
    d = CPU_DEFAULTS if device.kind == "cpu" else GPU_DEFAULTS
    model = get_model(args.model or d["model"])
    if not model.is_moe:
        raise UserError(f"{model.name} is dense; choose a mixture of experts: "
                        f"{', '.join(n for n, m in MODELS.items() if m.is_moe)}")
    dtype = choice(args.dtype or d["dtype"], tuple(TORCH_DTYPES), "dtype")
    batches = positive_int_list(args.batch or d["batch"], "--batch")
    backends = common.backends_for(args.backend or d["backend"], tuple(moe_block.IMPLS), device)
    routings = _routings(args.routing)
    try:
        kind = block_kind(model, choice(args.router, ROUTER_KINDS, "--router") if args.router else None)
        for b in batches:
            block_shape(model, b, kind)
        if model.hidden < model.experts:  # both distributions steer the router's input (kernels/moe_routing.py)
            raise ValueError(f"{model.name}: steered routing needs hidden >= experts")
    except ValueError as exc:
        raise UserError(str(exc)) from None
    plan = op_plan(model, batches, dtype, backends, positive_float(args.budget_s, "--budget-s"), args.cuda_graph,
                   device)
    writer, record, _ = open_op_record("moe", args.out, device, model, dtype, run_price_quote(args, device), {
        "batches": batches, "backends": backends, "budget_s": plan.budget_s, "cuda_graph": plan.cuda_graph,
        "router": kind.router.__dict__, "router_source": kind.source, "expert_bias": kind.expert_bias,
        "activation": kind.activation, "limit": kind.limit, "routings": [r.label for r in routings]})
    measure_ceilings(plan, device, record, writer)
    common.say(f"tokenbench moe on {label}: {device.name}; {model.name} ({model.experts} experts, top-"
               f"{model.experts_per_token}, +{model.shared_experts} shared, expert FFN {model.moe_ffn}), {dtype}; "
               f"router {kind.router.describe()}, {kind.activation}{' with expert biases' if kind.expert_bias else ''}")
    run_moe_sweep(plan, device, record, writer, _say_row, kind, routings)
    _print_steps(record)
    common.say(f"wrote {writer.json_path}")
    if args.json:
        from bench.records.store import clean

        print(json.dumps(clean(record), indent=1))
    return 0


def _print_steps(record: dict) -> None:
    """The MoE step table (per routing and backend, with active experts and the heaviest expert) on stderr."""
    import sys

    from rich.console import Console

    from bench.records import store
    from bench.report.run_tables import print_moe_steps
    from bench.report.terminal_tables import console_width

    print_moe_steps(store.as_record(record), Console(stderr=True, width=console_width(sys.stderr)))


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


def _say_row(r: dict) -> None:
    head = f"  {r['op']} T={r['batch']} {r['routing']} {r['backend']}:"
    if r["op"] == "router":
        timed = (f"{r['seconds_p50'] * 1e6:.1f} us, rel err {r['rel_error']:.1e}" if r.get("seconds_p50")
                 else f"not timed: {r.get('skipped') or r.get('check')}")
        common.say(f"{head} {timed}")
        return
    experts = (f"{r['active_experts_measured']:.1f} experts active, heaviest {r['max_tokens_per_expert']:.1f} "
               f"tokens (mean of {len(r['active_experts_per_set'])} sets)")
    if not r.get("seconds_p50"):
        common.say(f"{head} not timed: {r.get('skipped') or r.get('check')}; {experts}")
        return
    expected = (f" (uniform expects {r['expected_active_experts']:.1f})"
                if r["expected_active_experts"] is not None else "")
    common.say(f"{head} {r['seconds_p50'] * 1e6:.1f} us, {r['tflops']:.3f} TFLOP/s, {r['gbps_actual']:.1f} GB/s; "
               f"{experts}{expected}; rel err {r['rel_error']:.1e}")

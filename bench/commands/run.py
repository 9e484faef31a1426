"""Measure one decode step on this machine: verify and time every op and the decoder layer over a
batch x context sweep, derive the model's step, tokens/s and cost per token, and write a results file."""
from __future__ import annotations

import json
import sys

from bench.report.terminal_tables import console_width
from bench.configs import device_catalog
from bench.records import store
from bench.commands._measure_flags import ENERGY_MODES, add_record_price_timing_arguments
from bench.errors import UserError
from bench.configs.model_configs import MODELS, get_model, refuse_unmeasured_layers
from bench.parsing import choice, non_empty, non_negative_int, positive_float, positive_int_list, unique_names
from bench.derive.run_pricing import run_price_quote
from bench.sweeps.decode_sweep import RunPlan
from kernels.backends import parse_backend
from kernels.dtypes import TORCH_DTYPES

GPU_DEFAULTS = {"model": "llama-3.1-8b", "dtype": "bf16", "batch": "1,8,32,128", "context": "2048",
                "backend": "torch"}
# Small enough that the default CPU run ends in well under 3 minutes on 2 cores.
CPU_DEFAULTS = {"model": "llama-3.2-1b", "dtype": "fp32", "batch": "1,8", "context": "512",
                "backend": "torch"}


def add_arguments(p):
    p.add_argument("--model", help=f"one of: {', '.join(MODELS)}, or the path of a Hugging Face config.json (or of its folder) (default: llama-3.1-8b on GPU, "
                                   f"{CPU_DEFAULTS['model']} on CPU)")
    p.add_argument("--batch", help="comma list of batch sizes (default 1,8,32,128 on GPU; 1,8 on CPU)")
    p.add_argument("--context", help="comma list of context lengths (default 2048 on GPU; 512 on CPU)")
    p.add_argument("--dtype", help="bf16 | fp16 | fp32 (default bf16 on GPU; on CPU bf16 where it has native bf16 matmul, else fp32)")
    p.add_argument("--backend", help="comma list of backends: torch, triton, or a per-op mix like "
                                     "triton/attention=torch (default torch)")
    p.add_argument("--device", default="auto", help="auto | cuda | cpu")
    add_record_price_timing_arguments(p, budget_s="1.0")
    p.add_argument("--layer-only", action="store_true", help="time only the layer and model-level ops")
    p.add_argument("--full-model", action="store_true",
                   help="also time the whole model's step (every layer with its own weights) where it fits, "
                        "to check the layers x layer derivation")
    p.add_argument("--json", action="store_true", help="print the results record as JSON on stdout")
    p.add_argument("--phase", default="decode", help="decode (default) | prefill (prompt chunks through the model) "
                                                     "| mixed (decode sequences plus one prompt chunk per step)")
    p.add_argument("--prompt", help="prefill: comma list of prompt lengths in tokens (default 1024,8192 on GPU; "
                                    "128,512 on CPU)")
    p.add_argument("--chunk", help="prefill: largest chunk a prompt runs in (default 2048 on GPU, 256 on CPU); "
                                   "mixed: comma list of prompt tokens per step (default 512 on GPU, 64 on CPU)")
    p.add_argument("--prefix", help="mixed: cached prompt tokens the chunk continues (default 0)")
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel ranks: N > 1 hands over to `tokenbench tp`")


def resolve_plan(args, device) -> RunPlan:
    defaults = GPU_DEFAULTS if device.kind == "cuda" else CPU_DEFAULTS

    def given(name: str, flag: str) -> str:  # None: not given, take the default; "": an error, not a default
        value = non_empty(getattr(args, name), flag)
        return defaults[name] if value is None else value

    model = get_model(given("model", "--model"))
    dtype_name, dtype_reason = non_empty(args.dtype, "--dtype"), None
    if dtype_name is None and device.kind == "cpu":
        from bench.configs.cpu_dtype import cpu_default_dtype

        dtype_name, dtype_reason = cpu_default_dtype()
    dtype = choice(dtype_name or defaults["dtype"], tuple(TORCH_DTYPES), "dtype")
    batches = positive_int_list(given("batch", "--batch"), "--batch")
    contexts = positive_int_list(given("context", "--context"), "--context")
    backends = unique_names([b.strip() for b in given("backend", "--backend").split(",") if b.strip()],
                            "--backend")
    if not backends:
        raise UserError("--backend is empty; choose torch, triton or a mix")
    for spec in backends:
        chosen = parse_backend(spec)
        if device.kind == "cpu" and "triton" in chosen.values():
            raise UserError("--backend triton cannot be timed on a CPU: Triton runs there only under its "
                            "interpreter, which is for correctness (use `tokenbench verify --backend triton`)")
    refuse_unmeasured_layers(model, backends, "`tokenbench run`", args.full_model)
    budget = positive_float(args.budget_s, "--budget-s")
    phase, points = resolve_phase(args, device, batches, contexts)
    return RunPlan(model=model, batches=batches, contexts=contexts, dtype=dtype, backends=backends,
                   budget_s=budget, cuda_graph=args.cuda_graph and device.kind == "cuda",
                   per_op=not args.layer_only, full_model=args.full_model, dtype_reason=dtype_reason,
                   phase=phase, points=points, energy=choice(args.energy, ENERGY_MODES, "energy"))


PHASE_DEFAULTS = {"cuda": {"prompt": "1024,8192", "prefill_chunk": "2048", "mixed_chunk": "512"},
                  "cpu": {"prompt": "128,512", "prefill_chunk": "256", "mixed_chunk": "64"}}


def resolve_phase(args, device, batches, contexts):
    """The phase and its points; a flag that does nothing in the chosen phase is refused by name."""
    from bench.sweeps.prefill_sweep import mixed_points, prefill_points

    phase = choice(args.phase, ("decode", "prefill", "mixed"), "phase")
    d = PHASE_DEFAULTS["cuda" if device.kind == "cuda" else "cpu"]
    idle = {"decode": ("prompt", "chunk", "prefix"), "prefill": ("prompt_context", "prefix"), "mixed": ("prompt",)}
    for name in idle[phase]:
        if name == "prompt_context":
            if args.context is not None:
                raise UserError("--context does nothing with --phase prefill: a prompt's context is its length "
                                "(--prompt)")
            continue
        if getattr(args, name) is not None:
            raise UserError(f"--{name} does nothing with --phase {phase}")
    if phase != "decode" and args.full_model:
        raise UserError(f"--full-model times the decode step; it does nothing with --phase {phase}")
    if phase == "decode":
        return phase, None
    if phase == "prefill":
        prompts = positive_int_list(non_empty(args.prompt, "--prompt") or d["prompt"], "--prompt")
        chunk = positive_int_list(non_empty(args.chunk, "--chunk") or d["prefill_chunk"], "--chunk")
        if len(chunk) > 1:
            raise UserError("--chunk with --phase prefill is one size (the largest chunk a prompt runs in)")
        batch = batches if args.batch is not None else [1]  # one prompt at a time unless asked
        return phase, prefill_points(batch, prompts, chunk[0])
    chunks = positive_int_list(non_empty(args.chunk, "--chunk") or d["mixed_chunk"], "--chunk")
    prefix = 0 if args.prefix is None else non_negative_int(args.prefix, "--prefix")
    return phase, mixed_points(batches, contexts, chunks, prefix)


def main(args) -> int:
    from bench.commands import tp

    if args.tp < 1:  # argparse gives an int; 0 or negative is a mistake, not "no tensor parallelism"
        raise UserError(f"--tp must be a positive integer, got {args.tp}")
    non_empty(args.out, "--out")
    if tp.wants_tp(args):  # --tp N, or started under torchrun: the sharded layer, bench/sweeps/tp_sweep.py
        return tp.from_run_args(args, GPU_DEFAULTS, CPU_DEFAULTS)
    from rich.console import Console

    from bench.sweeps.measured_run import measure_run, refuse_if_nothing_fits
    from bench.sweeps.prefill_sweep import point_label
    from bench.report.run_tables import print_summary

    console = Console(stderr=True, width=console_width(sys.stderr))
    device = device_catalog.detect(args.device)
    plan = resolve_plan(args, device)
    refuse_if_nothing_fits(plan, device)  # before any file is written or bandwidth measured
    price = run_price_quote(args, device)
    model = plan.model
    label = "GPU" if device.kind == "cuda" else "CPU (a plain CPU, not an accelerator: figures are CPU figures)"
    what = (f"batch {plan.batches}, context {plan.contexts}" if plan.phase == "decode"
            else f"{plan.phase}: " + ", ".join(point_label(p) for p in plan.points))
    console.print(f"[bold]tokenbench run[/] on {label}: {device.name}; model {model.name}, {plan.dtype}, "
                  f"{what}, backend {plan.backends}")
    if plan.dtype_reason:
        console.print(f"default dtype on this CPU: {plan.dtype} ({plan.dtype_reason})")
    run = measure_run(plan, device, price, args.out, console)
    record, writer = run.record, run.writer
    print_summary(store.as_record(record), console)
    if device.kind == "cpu":
        from bench.report.cpu_paths import lacking_note, paths_table

        note = lacking_note(plan.dtype)
        if note:
            console.print(paths_table(), markup=False, highlight=False)
            console.print(f"[yellow]{note}[/]")
    for r in [r for r in record["rows"] if r.unreliable]:
        console.print(f"[yellow]unreliable: {r.op} b={r.batch} ctx={r.context} {r.backend}: {r.unreliable}[/]")
    console.print(f"wrote {writer.json_path} and {writer.csv_path}")
    if args.json:
        print(json.dumps(store.clean(record), indent=1))
    if run.status == 0 and not any(r.valid for r in record["rows"]):
        console.print("[red]nothing was measured: every row was skipped or failed its check[/]")
        return 1
    return run.status


"""Measure one decode step on this machine: verify and time every op and the decoder layer over a
batch x context sweep, derive the model's step, tokens/s and cost per token, and write a results file."""
from __future__ import annotations

import json
import sys
import time

from bench import devices, environment, results
from bench.bandwidth import copy_bandwidth
from bench.errors import UserError
from bench.measured_peak import use_measured_peak
from bench.models import MODELS, get_model
from bench.parsing import choice, positive_float, positive_int_list
from bench.pricing import economics_for, resolve_price  # noqa: F401  (run's own step, kept as its names)
from bench.sweep import RunPlan, cases_for, combo_skip_reason, combos, derive_step, full_model_fits, measure
from kernels.backends import parse_backend
from kernels.dtypes import TORCH_DTYPES

GPU_DEFAULTS = {"model": "llama-3.1-8b", "dtype": "bf16", "batch": "1,8,32,128", "context": "2048",
                "backend": "torch"}
# Small enough that the default CPU run ends in well under 3 minutes on 2 cores.
CPU_DEFAULTS = {"model": "llama-3.2-1b", "dtype": "fp32", "batch": "1,8", "context": "512",
                "backend": "torch"}


def add_arguments(p):
    p.add_argument("--model", help=f"one of: {', '.join(MODELS)} (default: llama-3.1-8b on GPU, "
                                   f"{CPU_DEFAULTS['model']} on CPU)")
    p.add_argument("--batch", help="comma list of batch sizes (default 1,8,32,128 on GPU; 1,8 on CPU)")
    p.add_argument("--context", help="comma list of context lengths (default 2048 on GPU; 512 on CPU)")
    p.add_argument("--dtype", help="bf16 | fp16 | fp32 (default bf16 on GPU, fp32 on CPU)")
    p.add_argument("--backend", help="comma list of backends: torch, triton, or a per-op mix like "
                                     "triton/attention=torch (default torch)")
    p.add_argument("--device", default="auto", help="auto | cuda | cpu")
    p.add_argument("--out", default="results", help="folder for the results files (default results/)")
    p.add_argument("--price-per-hour", help="$ per device-hour (default: the catalog's, where it has one)")
    p.add_argument("--power-kw", help="all-in kW per device (default: the catalog's, where it has one)")
    p.add_argument("--budget-s", default="1.0", help="timing budget per case in seconds (default 1.0)")
    p.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_false",
                   help="time eager launches with events instead of CUDA-graph replays")
    p.add_argument("--layer-only", action="store_true", help="time only the layer and model-level ops")
    p.add_argument("--full-model", action="store_true",
                   help="also time the whole model's step (every layer with its own weights) where it fits, "
                        "to check the layers x layer derivation")
    p.add_argument("--json", action="store_true", help="print the results record as JSON on stdout")
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel ranks: N > 1 hands over to `tokenbench tp`")


def resolve_plan(args, device) -> RunPlan:
    defaults = GPU_DEFAULTS if device.kind == "cuda" else CPU_DEFAULTS
    model = get_model(args.model or defaults["model"])
    if model.is_moe:  # the layer here is dense: its MLP would be one expert, mislabelled as the model's
        raise UserError(f"{model.name} is a mixture of experts: time its MoE MLP with `tokenbench moe`")
    dtype = choice(args.dtype or defaults["dtype"], tuple(TORCH_DTYPES), "dtype")
    batches = positive_int_list(args.batch or defaults["batch"], "--batch")
    contexts = positive_int_list(args.context or defaults["context"], "--context")
    backends = [b.strip() for b in (args.backend or defaults["backend"]).split(",") if b.strip()]
    if not backends:
        raise UserError("--backend is empty; choose torch, triton or a mix")
    for spec in backends:
        chosen = parse_backend(spec)
        if device.kind == "cpu" and "triton" in chosen.values():
            raise UserError("--backend triton cannot be timed on a CPU: Triton runs there only under its "
                            "interpreter, which is for correctness (use `tokenbench verify --backend triton`)")
    budget = positive_float(args.budget_s, "--budget-s")
    return RunPlan(model=model, batches=batches, contexts=contexts, dtype=dtype, backends=backends,
                   budget_s=budget, cuda_graph=args.cuda_graph and device.kind == "cuda",
                   per_op=not args.layer_only, full_model=args.full_model)


def main(args) -> int:
    from bench.commands import tp

    if tp.wants_tp(args):  # --tp N, or started under torchrun: the sharded layer, bench/tp.py
        return tp.from_run_args(args, GPU_DEFAULTS, CPU_DEFAULTS)
    from rich.console import Console

    from bench.report_table import print_summary

    console = Console(stderr=True, width=None if sys.stderr.isatty() else 150)
    device = devices.detect(args.device)
    plan = resolve_plan(args, device)
    price = resolve_price(args, device)
    env = environment.capture()
    model = plan.model
    label = "GPU" if device.kind == "cuda" else "CPU (a plain CPU, not an accelerator: figures are CPU figures)"
    console.print(f"[bold]tokenbench run[/] on {label}: {device.name}; model {model.name}, {plan.dtype}, "
                  f"batch {plan.batches}, context {plan.contexts}, backend {plan.backends}")

    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{results.slug(device.key or device.name)}-{model.name}-{plan.dtype}"
    writer = results.ResultWriter(args.out, stem)
    record = {
        "schema_version": results.SCHEMA_VERSION, "tool": "tokenbench", "created": env["created"],
        "run_id": writer.json_path.stem, "device": device.to_dict(), "env": env, "model": model.to_dict(),
        "dtype": plan.dtype,
        "settings": {"batches": plan.batches, "contexts": plan.contexts, "backends": plan.backends,
                     "budget_s": plan.budget_s, "cuda_graph": plan.cuda_graph, "per_op": plan.per_op,
                     "full_model": plan.full_model},
        "price": price, "complete": False, "rows": [], "steps": [],
        "energy": {"source": "NVML energy counter around each row's timed samples, GPU board only"}
        if device.kind == "cuda" else {"reason": "no power reading: CPU run (NVML reads NVIDIA GPUs only)"},
    }
    use_measured_peak(plan, device, args.out, record, console)  # the newest `tokenbench peak` file of this device
    writer.write(record)
    with results.recording(record, writer, lambda msg: console.print(f"[yellow]{msg}[/]")) as state:
        console.print("measuring copy bandwidth ...")
        bw = copy_bandwidth(device)
        record.update(bw)
        plan.ceilings["measured_copy_bw"] = bw["measured_copy_gbps"] * 1e9
        writer.write(record)
        run_sweep(plan, device, record, writer, economics_for(price), console)
        check_bandwidth_drift(device, record, console)

    print_summary(record, console)
    console.print(f"wrote {writer.json_path} and {writer.csv_path.name}")
    if args.json:
        print(json.dumps(results._clean(record), indent=1))
    return state["status"]


# Beyond this change between the copy bandwidth before and after the sweep, "% of copy bandwidth" figures
# are flagged: seen on a shared 2-core VM, whose copy bandwidth moved between about 40 and 70 GB/s.
BANDWIDTH_DRIFT = 0.15


def check_bandwidth_drift(device, record: dict, console) -> None:
    """Measure the copy bandwidth again after the sweep, so a machine whose memory bandwidth moved while
    it was measured is flagged rather than trusted."""
    after = copy_bandwidth(device)["measured_copy_gbps"]
    before = record["measured_copy_gbps"]
    record["measured_copy_gbps_after"] = after
    drift = abs(after - before) / before
    record["bandwidth_drift"] = drift
    if drift > BANDWIDTH_DRIFT:
        record["bandwidth_warning"] = (f"copy bandwidth moved from {before:.1f} to {after:.1f} GB/s during the run: "
                                       "figures relative to it are unreliable on this machine")
        console.print(f"[yellow]{record['bandwidth_warning']}[/]")


def run_sweep(plan: RunPlan, device, record: dict, writer, economics, console) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    work = list(combos(plan))
    cases_per_combo = len(cases_for(plan, device, 1, 1))
    total = len(work) * cases_per_combo * len(plan.backends)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("measuring", total=total)
        for batch, context in work:
            cases = cases_for(plan, device, batch, context)
            too_big = combo_skip_reason(plan, device, batch, context)
            if too_big:
                console.print(f"[yellow]b={batch} ctx={context} skipped: {too_big}[/]")
            for backend in plan.backends:
                for case in cases:
                    if too_big:
                        record["rows"].append({"op": case.name, "kind": case.kind, "batch": batch,
                                               "context": context, "backend": backend, "valid": False,
                                               "skipped": too_big})
                        progress.advance(task)
                        continue
                    if case.name == "model" and (why := full_model_fits(plan, device, batch, context)):
                        record["rows"].append({"op": "model", "kind": "model", "batch": batch, "context": context,
                                               "backend": backend, "valid": False, "skipped": why})
                        progress.advance(task)
                        continue
                    progress.update(task, description=f"b={batch} ctx={context} {backend} {case.name}")
                    row = measure(case, backend, device, plan, batch, context)
                    record["rows"].append(row)
                    if not row.get("valid"):
                        console.print(f"[red]{case.name} b={batch} ctx={context} {backend}: "
                                      f"{row.get('skipped') or row.get('check')}[/]")
                    writer.write(record)
                    progress.advance(task)
                record["steps"].append(derive_step(plan, device, record["rows"], batch, context, backend,
                                                   economics))
                writer.write(record)

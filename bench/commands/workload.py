"""What a million tokens of a workload costs on this machine: for prompts of ISL tokens answered with OSL
tokens at each concurrency C, tokens/s per device (total, output, input), tokens/s per user, time to first
token, end-to-end latency, whether weights + KV cache fit, and $/M tokens, composed from steps measured here
for two engine models (continuous batching with chunked prefill; a cohort prefilled then decoded).

    tokenbench workload --model llama-3.2-1b --isl 256 --osl 64 --concurrency 1,4,16
    tokenbench workload --model llama-3.1-8b --isl 1024 --osl 1024 --concurrency 1,4,16,64 --chunk 2048
    tokenbench workload --model tiny --isl 32 --osl 8 --concurrency 1,4 --measure-e2e
"""
from __future__ import annotations

import argparse
import json
import sys

from bench.commands._measure_flags import ENERGY_MODES, add_record_price_timing_arguments
from bench.errors import UserError
from bench.parsing import choice, non_empty, positive_float, positive_int, positive_int_list

DEFAULTS = {"cuda": {"model": "llama-3.1-8b", "dtype": "bf16", "isl": "1024", "osl": "1024",
                     "concurrency": "1,4,16,64", "chunk": "2048"},
            "cpu": {"model": "llama-3.2-1b", "dtype": None, "isl": "256", "osl": "64", "concurrency": "1,4,16",
                    "chunk": "256"}}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--model", help="a catalog model (`tokenbench models`) or the path of a Hugging Face config.json (or of its folder) (default llama-3.1-8b on GPU, "
                                   "llama-3.2-1b on CPU)")
    p.add_argument("--isl", help="prompt (input) tokens per request (default 1024 on GPU, 256 on CPU)")
    p.add_argument("--osl", help="answer (output) tokens per request, at least 2 (default 1024 on GPU, 64 on CPU)")
    p.add_argument("--concurrency", help="comma list of concurrent requests (default 1,4,16,64 on GPU; 1,4,16 on CPU)")
    p.add_argument("--chunk", help="prompt tokens a step may carry (the chunked-prefill budget; default the "
                                   "--engine-policy's: 2048 on GPU, 256 on CPU for tokenbench); larger than ISL x C "
                                   "is clipped")
    p.add_argument("--engine-policy", default="tokenbench",
                   help="whose scheduling the chunked-prefill engine model follows: tokenbench (a --chunk budget of "
                        "prompt tokens beside every decode row), vllm (max_num_batched_tokens 2048, 8192 on a "
                        "70 GiB+ GPU other than A100; decode rows first), sglang (chunked_prefill_size 2048 / 8192 "
                        "/ 16384 by GPU memory, 4096 without), llamacpp (n_batch 2048; decode rows first). Sets "
                        "the default --chunk and how prompts queue for the time to first token (default tokenbench)")
    p.add_argument("--dtype", help="bf16 | fp16 | fp32 | fp8: FP8 projection weights with bf16 activations and KV "
                                   "cache, where the device has FP8 (default bf16 on GPU; on CPU bf16 where it has "
                                   "native bf16 matmul, else fp32)")
    p.add_argument("--backend", default="torch", help="one backend: torch, triton or a per-op mix (default torch)")
    p.add_argument("--device", default="auto", help="auto | cuda | cpu")
    p.add_argument("--tp", type=int, default=1,
                   help="tensor-parallel ranks: N > 1 measures the steps on a torchrun group of N (one GPU each; "
                        "gloo ranks on a CPU) and reports tokens/s per GPU over the group (default 1)")
    add_record_price_timing_arguments(p, budget_s="0.5")
    p.add_argument("--measure-e2e", action="store_true",
                   help="also run each cohort for real (prefill, then decode, every layer its own weights and "
                        "cache) and report measured / composed wall time")
    p.add_argument("--e2e-osl", help="with --measure-e2e: answer tokens of each end-to-end cohort, 2 .. OSL (default "
                                     "OSL); a shorter cohort is compared with the composition at its own OSL")
    p.add_argument("--recompose", metavar="FILE",
                   help="measure nothing: compose a workload results file's stored steps again under "
                        "--engine-policy (and --chunk, where given) and print its chunked-prefill points")
    p.add_argument("--against", metavar="SERVED",
                   help="with --recompose: a served figures file (JSON; bench/workload/recompose.py) to print "
                        "before (the file's points as written) and after beside, with their errors")
    p.add_argument("--json", action="store_true", help="print the record as JSON on stdout")


def resolve(args, device):
    """The run plan and the workload spec from the flags; every mistake is one UserError."""
    from bench.configs.model_configs import get_model, refuse_moe
    from bench.sweeps.decode_sweep import RunPlan
    from bench.workload import queueing
    from bench.workload.plan import make_spec
    from kernels.backends import parse_backend
    from kernels.dtypes import TORCH_DTYPES

    d = DEFAULTS["cuda" if device.kind == "cuda" else "cpu"]

    def given(name: str) -> str:
        value = non_empty(getattr(args, name), f"--{name}")
        return d[name] if value is None else value

    if args.tp < 1:
        raise UserError(f"--tp must be a positive integer, got {args.tp}")
    if args.tp > 1 and args.measure_e2e:
        raise UserError(f"--measure-e2e with --tp {args.tp}: the end-to-end cohort runs on one device; "
                        f"run it without --tp")
    model = get_model(given("model"))
    refuse_moe(model, "`tokenbench workload`")
    if args.tp > 1:
        from bench.workload.tp_group import check_group

        check_group(model, args.tp, device)
    dtype_name, reason, weights = non_empty(args.dtype, "--dtype"), None, "activation"
    if dtype_name == "fp8":  # FP8 projection weights and LM head, bf16 activations and KV cache
        from kernels.fp8 import support

        ok, why = support(device)
        if not ok:
            raise UserError(f"--dtype fp8 cannot be timed here: {why}")
        if args.tp > 1:
            raise UserError("--dtype fp8 with --tp: the tensor-parallel layer does not shard FP8 weights yet")
        dtype_name, weights = "bf16", "fp8"
    if dtype_name is None and device.kind == "cpu":
        from bench.configs.cpu_dtype import cpu_default_dtype

        dtype_name, reason = cpu_default_dtype()
    dtype = choice(dtype_name or d["dtype"], tuple(TORCH_DTYPES), "dtype")
    backend = non_empty(args.backend, "--backend").strip()
    if "," in backend:
        raise UserError("--backend takes one backend for a workload (its steps are composed from one backend)")
    chosen = parse_backend(backend)
    if device.kind == "cpu" and "triton" in chosen.values():
        raise UserError("--backend triton cannot be timed on a CPU: Triton runs there only under its interpreter")
    engine = queueing.policy(non_empty(args.engine_policy, "--engine-policy").strip())
    chunk = non_empty(args.chunk, "--chunk")
    if chunk is None:
        chunk = str(engine.budget(device.kind, device.memory_bytes, device.name or "", int(d["chunk"])))
    spec = make_spec(positive_int(given("isl"), "--isl"), positive_int(given("osl"), "--osl"),
                     positive_int_list(given("concurrency"), "--concurrency"),
                     positive_int(chunk, "--chunk"), engine.name)
    if args.e2e_osl is not None:
        if not args.measure_e2e:
            raise UserError("--e2e-osl sets the end-to-end cohorts' answer length; it does nothing without --measure-e2e")
        e2e_osl = positive_int(non_empty(args.e2e_osl, "--e2e-osl"), "--e2e-osl")
        if not 2 <= e2e_osl <= spec.osl:
            raise UserError(f"--e2e-osl must be between 2 and the workload's OSL ({spec.osl}), got {e2e_osl}")
    plan = RunPlan(model=model, batches=[], contexts=[], dtype=dtype, backends=[backend],
                   budget_s=positive_float(args.budget_s, "--budget-s"),
                   cuda_graph=args.cuda_graph and device.kind == "cuda", per_op=False, dtype_reason=reason,
                   weights=weights, energy=choice(args.energy, ENERGY_MODES, "energy"))
    return plan, spec, backend


def main(args) -> int:
    from rich.console import Console

    from bench.configs import device_catalog

    from bench.records import store
    from bench.derive.run_pricing import run_price_quote
    from bench.report.terminal_tables import console_width
    from bench.workload.pipeline import run_workload
    from bench.workload.table import print_workload

    non_empty(args.out, "--out")
    console = Console(stderr=True, width=console_width(sys.stderr))
    if args.recompose is not None or args.against is not None:
        return recompose_main(args, console)
    device = device_catalog.detect(args.device)
    plan, spec, backend = resolve(args, device)
    price = run_price_quote(args, device)
    label = "GPU" if device.kind == "cuda" else "CPU (a plain CPU, not an accelerator: figures are CPU figures)"
    weights = "" if plan.weights == "activation" else f" activations, {plan.weights} weights"
    console.print(f"[bold]tokenbench workload[/] on {label}: {device.name}; model {plan.model.name}, {plan.dtype}{weights}, "
                  f"ISL {spec.isl}, OSL {spec.osl}, concurrency {list(spec.concurrency)}, backend {backend}, "
                  f"engine policy {spec.policy} (budget {spec.chunk:,} tokens a step)")
    if plan.dtype_reason:
        console.print(f"default dtype on this CPU: {plan.dtype} ({plan.dtype_reason})")
    if args.tp > 1:
        from bench.workload.tp_group import run_workload_tp

        ranks = "GPUs, NCCL" if device.kind == "cuda" else "CPU processes, gloo"
        console.print(f"tensor parallel: a group of {args.tp} ranks ({ranks}); rates are tokens/s per "
                      f"{'GPU' if device.kind == 'cuda' else 'rank'} over the group")
        run = run_workload_tp(plan, device, spec, backend, price, args.out, args.tp, lambda text: console.print(text))
    else:
        e2e_osl = None if args.e2e_osl is None else int(args.e2e_osl)
        run = run_workload(plan, device, spec, backend, price, args.out, args.measure_e2e, console, e2e_osl)
    print_workload(store.as_record(run.record), run.points, console)
    console.print(f"wrote {run.json_path} and {run.csv_path}")
    if args.json:
        print(json.dumps(store.clean(run.record), indent=1))
    if run.status == 0 and not any(p.total_tokens_per_s for p, _ in run.points):
        console.print("[red]no workload point could be composed: every concurrency was skipped or failed[/]")
        return 1
    return run.status


def recompose_main(args, console) -> int:
    """`workload --recompose FILE [--engine-policy P] [--chunk N] [--against SERVED]`: no measurement."""
    from bench.records import store
    from bench.workload import queueing
    from bench.workload.recompose import gaps, read_served, recompose
    from bench.workload.table import print_gaps, print_workload

    path = non_empty(args.recompose, "--recompose")
    if path is None:
        raise UserError("--against compares a recomposed workload file with served figures: give --recompose FILE")
    policy = queueing.policy(non_empty(args.engine_policy, "--engine-policy").strip()).name
    chunk = None if args.chunk is None else positive_int(non_empty(args.chunk, "--chunk"), "--chunk")
    record = store.load_workload(path)
    pairs, budget = recompose(record, policy, chunk)
    if args.against is None:
        w = dict(record.workload, chunk=budget, engine_policy=policy, ttft_model=queueing.TTFT_MODEL,
                 engine_policy_source=queueing.ENGINE_POLICIES[policy].source)
        from dataclasses import replace

        print_workload(replace(record, workload=w, economics=None), pairs, console)
        return 0
    served = read_served(non_empty(args.against, "--against"))
    print_gaps(gaps(record, served, pairs), policy, budget, served.what, console)
    return 0

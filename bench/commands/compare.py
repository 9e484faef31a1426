"""`tokenbench compare A B`: two runs or catalog devices side by side at a matched operating point.

    tokenbench compare results/h200.json results/b200.json            # two measured runs
    tokenbench compare results/h200.json b200                         # B projected from A's run
    tokenbench compare h200 gb300 --tokens-per-s 93.4 5880            # catalog figures, tokens/s given
    tokenbench compare results/WORKLOAD.json --served costmodel/data/served.csv [--at-interactivity 50]

A result file is measured; a catalog device facing a run is that run projected onto it (labelled);
two catalog devices compare on price, spec FLOPS per $ and power, plus tokens/s when given.
With --served, A is a workload run (`tokenbench workload`) set beside served results (bench/derive/served_comparison.py).
"""
from __future__ import annotations

import argparse
import json
import os

from bench.derive.comparison_sides import SideArgs, device_side, run_side
from costmodel.generation_compare import compare
from costmodel.input_errors import CostInputError
from bench.report.terminal_tables import print_report_table, stdout_console
from costmodel.number_format import money, sig
from costmodel.cost_report import Table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the docstring's examples as laid out
    parser.add_argument("a", metavar="A", help="a result file (results/RUN.json) or a catalog device key")
    parser.add_argument("b", metavar="B", nargs="?", help="a result file or a catalog device key (none with --served)")
    parser.add_argument("--tier", metavar="TIER", help="catalog price tier (default hyperscaler-4y)")
    parser.add_argument("--batch", type=int, help="operating point: this batch on both sides")
    parser.add_argument("--context", type=int, help="operating point: this context (default: largest common)")
    parser.add_argument("--tokens-per-s-per-user", type=float, metavar="U",
                        help="operating point: each side's best throughput giving every user >= U tokens/s")
    parser.add_argument("--backend", help="only steps of this backend (default: the fastest on each side)")
    parser.add_argument("--dtype", default="bf16", help="dtype for spec FLOPS per $ of catalog devices (default bf16)")
    parser.add_argument("--tokens-per-s", type=float, nargs=2, metavar=("TA", "TB"),
                        help="tokens/s per device for two catalog devices (no run to take them from)")
    parser.add_argument("--price-per-hour", type=float, nargs=2, metavar=("PA", "PB"), help="$ per device-hour, A and B")
    parser.add_argument("--power-kw", type=float, nargs=2, metavar=("KA", "KB"), help="all-in kW per device, A and B")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--served", metavar="FILE", help="served results to set beside the workload run A: any "
                        "file `tokenbench served` reads (vLLM, SGLang, AIPerf, llama.cpp, InferenceX, CSV), e.g. "
                        "costmodel/data/served.csv")
    for flag, meta, what in (("hardware", "H", "the catalog device it ran on"), ("gpus", "N", "how many GPUs served it"),
                             ("model", "M", "its model, as tokenbench names it"),
                             ("precision", "P", "the precision served")):
        parser.add_argument(f"--served-{flag}", metavar=meta, type=int if flag == "gpus" else str,
                            help=f"with --served, for an engine's own result file: {what}")
    parser.add_argument("--at-interactivity", type=float, nargs="+", metavar="U", help="with --served: compare at "
                        "these tokens/s per user (default: at each served point inside A's frontier)")


def _is_run(arg: str) -> bool:
    return arg.endswith(".json") or os.path.sep in arg or os.path.exists(arg)


def main(args) -> int:
    from bench.records.store import load_run

    if args.dtype not in ("fp32", "tf32", "bf16", "fp16", "fp8", "fp4"):
        raise CostInputError(f"unknown --dtype {args.dtype!r}; choose one of: fp32, tf32, bf16, fp16, fp8, fp4")
    for name in ("batch", "context"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise CostInputError(f"--{name} must be a positive integer, got {getattr(args, name)}")
    if args.served or args.at_interactivity:
        return _served(args)
    described = [f"--served-{k}" for k in ("hardware", "gpus", "model", "precision")
                 if getattr(args, f"served_{k.replace('-', '_')}") is not None]
    if described:
        raise CostInputError(f"{', '.join(described)} describe(s) a --served FILE; none given")
    if args.b is None:
        raise CostInputError("compare needs two sides, A and B (or a workload run A with --served FILE)")
    runs = [load_run(x) if _is_run(x) else None for x in (args.a, args.b)]
    if args.tokens_per_s and any(runs):
        raise CostInputError("--tokens-per-s is for two catalog devices; a run's tokens/s come from its steps")
    anchor = next((r for r in runs if r is not None), None)
    sides = []
    for i, (arg, run) in enumerate(zip((args.a, args.b), runs)):
        sargs = SideArgs(args, i)
        if run is not None:
            sides.append(run_side(run, sargs))
        else:
            sides.append(device_side(arg, sargs, args.dtype, anchor,
                                      args.tokens_per_s[i] if args.tokens_per_s else None))
    c = compare(sides[0], sides[1], batch=args.batch, context=args.context,
                tokens_per_s_per_user=args.tokens_per_s_per_user, backend=args.backend)
    if args.json:
        print(json.dumps(c.to_dict(), indent=2, default=str))
        return 0
    a, b = c.a, c.b
    print(f"tokenbench compare: A = {a.label}, B = {b.label}")
    print(f"operating point: {c.point.how}")
    for tag, side in (("A", a), ("B", b)):
        if side.step:
            print(f"  {tag}: batch {side.step.batch}, context {side.step.context}, backend "
                  f"{side.step.backend} ({side.kind})")
    print_report_table(stdout_console(), Table("A and B", ["figure", "A", "B", "B vs A"], c.rows()))
    for tag, side in (("A", a), ("B", b)):
        print(f"{tag} price: " + (f"{money(side.price.price_per_hour)}/h [{side.price.source}]" if side.price
                                  else "- (not priced)"))
        print(f"{tag} power: " + (f"{sig(side.power.kw)} kW [{side.power.source}]" if side.power else "-"))
        for n in side.notes:
            print(f"{tag}: {n}")
    return 0


def _served(args) -> int:
    import sys

    from bench.derive.served_comparison import compare_served
    from bench.report.served_comparison_table import print_comparison
    from costmodel.served_results import ServedGiven, read_served
    from bench.records.store import load_workload

    given = ServedGiven(hardware=args.served_hardware, gpus=args.served_gpus, model=args.served_model,
                        precision=args.served_precision)
    if not args.served:
        raise CostInputError("--at-interactivity is for --served FILE")
    if args.b is not None:
        raise CostInputError(f"--served compares one workload run with served results: give A only, not B ({args.b})")
    for flag in ("batch", "context", "tokens_per_s_per_user", "backend", "tokens_per_s", "price_per_hour", "power_kw"):
        if getattr(args, flag) is not None:
            raise CostInputError(f"--{flag.replace('_', '-')} does nothing with --served (the run's points and the "
                                 f"catalog's prices are used)")
    from bench.workload.projection import projections_for

    run, served = load_workload(args.a), read_served(args.served, given)
    extra, notes = projections_for(run, sorted({p.device for p in served} - {run.device.key}))
    c = compare_served(run, served, args.served, at=args.at_interactivity, extra_points=extra, tier=args.tier)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps(c.to_dict(), indent=2, default=str))
        return 0
    from rich.console import Console

    from bench.report.terminal_tables import console_width

    print_comparison(c, Console(width=console_width(sys.stdout)))
    return 0

"""`tokenbench compare A B`: two runs or catalog devices side by side at a matched operating point.

    tokenbench compare results/h200.json results/b200.json            # two measured runs
    tokenbench compare results/h200.json b200                         # B projected from A's run
    tokenbench compare h200 gb300 --tokens-per-s 93.4 5880            # catalog figures, tokens/s given

A result file is measured; a catalog device facing a run is that run projected onto it (labelled);
two catalog devices compare on price, spec FLOPS per $ and power, plus tokens/s when given.
"""
from __future__ import annotations

import argparse
import json
import os

from bench.sides import SideArgs, device_side, run_side
from costmodel.compare import compare
from costmodel.errors import CostInputError
from costmodel.fmt import money, sig, table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the docstring's examples as laid out
    parser.add_argument("a", metavar="A", help="a result file (results/RUN.json) or a catalog device key")
    parser.add_argument("b", metavar="B", help="a result file or a catalog device key")
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


def _is_run(arg: str) -> bool:
    return arg.endswith(".json") or os.path.sep in arg or os.path.exists(arg)


def main(args) -> int:
    from bench.store import load_run

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
            print(f"  {tag}: batch {side.step['batch']}, context {side.step['context']}, backend "
                  f"{side.step['backend']} ({side.kind})")
    print(table(["", "A", "B", "B vs A"], c.rows()))
    for tag, side in (("A", a), ("B", b)):
        print(f"{tag} price: " + (f"{money(side.price.price_per_hour)}/h [{side.price.source}]" if side.price
                                  else "- (not priced)"))
        print(f"{tag} power: " + (f"{sig(side.power.kw)} kW [{side.power.source}]" if side.power else "-"))
        for n in side.notes:
            print(f"{tag}: {n}")
    return 0

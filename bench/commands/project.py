"""`tokenbench project`: a measured run carried onto hardware you do not have, then costed.

    tokenbench project --to b200 --from results/RUN.json [--tier rental-3y] [--batch 8] [--json]

Each op's measured efficiency (its roofline bound where it ran / its measured time) is applied to the
target's spec-sheet peaks; the output is labelled a projection and states that assumption.
"""
from __future__ import annotations

import argparse
import json

from costmodel.number_format import money, si, sig
from costmodel.roofline_projection import Projection, project_run
from costmodel.cost_report import Table
from bench.report.terminal_tables import print_report_table, stdout_console
from bench.derive.comparison_sides import device_spec, target_price_and_power
from bench.derive.stored_run_pricing import price_projected_steps
from bench.records.store import label, load_run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the docstring's examples as laid out
    parser.add_argument("--to", required=True, metavar="DEVICE", help="target device key (b200, gb300, mi355x, ...)")
    parser.add_argument("--from", dest="from_file", required=True, metavar="RUN.json", help="a tokenbench result file")
    parser.add_argument("--tier", metavar="TIER", help="catalog price tier for the target (default hyperscaler-4y)")
    parser.add_argument("--price-per-hour", type=float, metavar="P", help="$ per target device-hour (overrides catalog)")
    parser.add_argument("--power-kw", type=float, metavar="K", help="all-in kW per target device (overrides catalog)")
    parser.add_argument("--overhead", type=float, metavar="F", help="all-in power = target TDP x F")
    parser.add_argument("--utilisation", type=float, metavar="U", help="share of hours that serve tokens, in (0, 1]")
    parser.add_argument("--as-dtype", metavar="DTYPE",
                        help="project as this dtype (e.g. a CPU fp32 run as bf16 serving): byte counts scaled")
    parser.add_argument("--batch", type=int, help="only this batch size")
    parser.add_argument("--context", type=int, help="only this context length")
    parser.add_argument("--ops", action="store_true", help="show every op's efficiency and projected time")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")


def main(args) -> int:
    result = load_run(args.from_file)
    target = device_spec(args.to)
    proj = project_run(result, target, source=label(result), as_dtype=args.as_dtype)
    quote, power = target_price_and_power(args.to, target, args)
    steps = [s for s in proj.steps if (args.batch is None or s.batch == args.batch)
             and (args.context is None or s.context == args.context)]
    if not steps:
        from costmodel.input_errors import CostInputError

        raise CostInputError(f"no projected step at batch {args.batch}, context {args.context}; "
                             f"batches run: {sorted({s.batch for s in proj.steps})}")
    econ = price_projected_steps(steps, quote, power, target.peak(proj.dtype))
    if args.json:
        print(json.dumps(_as_json(proj, steps, econ, quote, power), indent=2))
        return 0
    print(f"tokenbench project: {label(result)} -> {target.key} ({target.name}), model {proj.model}, {proj.dtype}")
    print(proj.assumption)
    print("price: " + (f"{money(quote.price_per_hour)}/device-hour [{quote.source}]" if quote else
                       "- (target not in the price catalog; give --price-per-hour)"))
    print("power: " + (f"{sig(power.kw)} kW all-in per device [{power.source}]" if power else "-"))
    rows = [[str(s.batch), str(s.context), s.backend, sig(s.source_tokens_per_s), sig(s.step_seconds * 1e3),
             sig(s.tokens_per_s), sig(s.tokens_per_s_per_user), {True: "yes", False: "NO", None: "?"}[s.fits],
             money(e.cost_per_mtok), si(e.tokens_per_s_per_mw), sig(e.joules_per_token)]
            for s, e in zip(steps, econ)]
    console = stdout_console()
    print_report_table(console, Table(
        "Projected steps", ["batch", "context", "backend", "measured tok/s", "proj. step ms", "proj. tok/s",
                            "proj. tok/s/user", "fits", "$/M tok", "tok/s/MW", "J/tok"], rows, keys=3))
    if args.ops:
        print_report_table(console, _ops_table(proj, steps))
        print("(* faster than its bound where measured: capped at 100%)")
    for n in proj.notes:
        print(f"note: {n}")
    return 0


def _ops_table(proj: Projection, steps) -> Table:
    points = {(s.batch, s.context, s.backend) for s in steps}
    rows = [[o.op, str(o.batch), str(o.context), o.backend, sig(o.measured_seconds * 1e6),
             f"{o.efficiency:.1%}" + ("*" if o.capped else ""), sig(o.target_bound_seconds * 1e6),
             sig(o.projected_seconds * 1e6)]
            for o in proj.ops if (o.batch, o.context, o.backend) in points]
    return Table("Projected ops", ["op", "batch", "context", "backend", "measured us", "efficiency",
                                   "target bound us", "projected us"], rows, keys=4)


def _as_json(proj: Projection, steps, econ, quote, power) -> dict:
    return {
        "projection": True,
        "assumption": proj.assumption,
        "source": proj.source, "source_basis": proj.source_basis,
        "target": proj.target.__dict__, "target_basis": proj.target_basis,
        "model": proj.model, "dtype": proj.dtype,
        "price": None if quote is None else {"price_per_hour": quote.price_per_hour, "source": quote.source,
                                             "utilisation": quote.utilisation},
        "power": None if power is None else power.__dict__,
        "steps": [{**s.__dict__, "economics": e.to_dict()} for s, e in zip(steps, econ)],
        "ops": [o.__dict__ for o in proj.ops],
        "notes": proj.notes,
    }

"""Print the tables of a saved run (its ops and its derived decode steps) from its results file."""
from __future__ import annotations

import json
import sys

from bench.report.terminal_tables import console_width
from bench.records.store import clean, load


def add_arguments(p):
    p.add_argument("results", nargs="+", help="results/*.json files written by tokenbench (run, peak, tp, moe, fp8, workload)")
    p.add_argument("--json", action="store_true", help="print the records as JSON")
    p.add_argument("--price-per-hour", help="$ per device-hour to cost the steps at (default: the recorded price, "
                                            "else for a CPU the CPU catalog's estimate)")
    p.add_argument("--power-kw", help="all-in kW per device for tokens/s per MW (default: the recorded figure)")


def main(args) -> int:
    from rich.console import Console

    from bench.report.run_tables import print_peak, print_summary

    from bench.derive.stored_run_pricing import reprice_record
    from bench.parsing import positive_float

    price, power = positive_float(args.price_per_hour, "--price-per-hour"), positive_float(args.power_kw, "--power-kw")
    # every kind tokenbench writes, read through the one store; all checked before printing
    records = [reprice_record(load(path), price, power) for path in args.results]
    if args.json:
        print(json.dumps(clean(records if len(records) > 1 else records[0]), indent=1))
        return 0
    console = Console(width=console_width(sys.stdout))
    for path, record in zip(args.results, records):
        console.print(f"[bold]{path}[/]: {record.kind} {record.run_id} of {record.created}"
                      + ("" if record.complete is not False else " [yellow](incomplete run)[/]"))
        if record.kind == "workload":
            from bench.workload.compose import compositions
            from bench.workload.table import print_workload

            print_workload(record, compositions(record), console)
            continue
        (print_peak if record.kind == "peak" else print_summary)(record, console)
    return 0

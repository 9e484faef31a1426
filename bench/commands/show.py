"""Print the tables of a saved run (its ops and its derived decode steps) from its results file."""
from __future__ import annotations

import json
import sys

from bench.results import _clean, load_record


def add_arguments(p):
    p.add_argument("results", nargs="+", help="results/*.json files written by `tokenbench run`")
    p.add_argument("--json", action="store_true", help="print the records as JSON")


def main(args) -> int:
    from rich.console import Console

    from bench.report_table import print_summary

    records = [load_record(path) for path in args.results]  # all checked before anything is printed
    if args.json:
        print(json.dumps(_clean(records if len(records) > 1 else records[0]), indent=1))
        return 0
    console = Console(width=None if sys.stdout.isatty() else 150)
    for path, record in zip(args.results, records):
        console.print(f"[bold]{path}[/]: run {record.get('run_id')} of {record.get('created')}"
                      + ("" if record.get("complete", True) else " [yellow](incomplete run)[/]"))
        print_summary(record, console)
    return 0

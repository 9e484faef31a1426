"""Print the tables of a saved run (its ops and its derived decode steps) from its results file."""
from __future__ import annotations

import json
import sys

from bench.tables import console_width
from bench.measured_peak import PEAK_KIND
from bench.results import _clean, load_record, read_json

WORKLOAD_KIND = "workload"  # bench.workload.run.KIND, named here so `show` imports no torch to dispatch


def add_arguments(p):
    p.add_argument("results", nargs="+", help="results/*.json files written by `tokenbench run`")
    p.add_argument("--json", action="store_true", help="print the records as JSON")


def main(args) -> int:
    from rich.console import Console

    from bench.report_table import print_peak, print_summary

    # every kind tokenbench writes: a run (decode, prefill, mixed) or a peak; all checked before printing
    records = [_load(path) for path in args.results]
    if args.json:
        print(json.dumps(_clean(records if len(records) > 1 else records[0]), indent=1))
        return 0
    console = Console(width=console_width(sys.stdout))
    for path, record in zip(args.results, records):
        console.print(f"[bold]{path}[/]: run {record.get('run_id')} of {record.get('created')}"
                      + ("" if record.get("complete", True) else " [yellow](incomplete run)[/]"))
        if record.get("kind") == WORKLOAD_KIND:
            from bench.workload.run import load_workload
            from bench.workload.table import print_workload

            print_workload(record, load_workload(path)[1], console)
            continue
        (print_peak if record.get("kind") == PEAK_KIND else print_summary)(record, console)
    return 0


def _load(path: str) -> dict:
    kind = _kind(path)
    if kind == WORKLOAD_KIND:
        from bench.workload.run import load_workload

        return load_workload(path)[0]
    return load_peak(path) if kind == PEAK_KIND else load_record(path)


def _kind(path: str):
    data = read_json(path, "results file")
    return data.get("kind") if isinstance(data, dict) else None


def load_peak(path: str) -> dict:
    from bench.errors import UserError

    record = read_json(path, "peak file")
    rows = record.get("rows")
    if not isinstance(rows, list) or "device" not in record:
        raise UserError(f"peak file {path} lacks its rows or device")
    for i, r in enumerate(rows):
        if not isinstance(r, dict) or not isinstance(r.get("metric"), str) or not isinstance(r.get("unit"), str):
            raise UserError(f"peak file {path}: rows[{i}] lacks its metric or unit")
        if r.get("measured") is not None and (isinstance(r["measured"], bool)
                                              or not isinstance(r["measured"], (int, float))):
            raise UserError(f"peak file {path}: rows[{i}].measured must be a number, got {r['measured']!r}")
    return record

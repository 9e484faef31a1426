"""Measure this device's ceilings: the fastest matmul per dtype that a bounded sweep of shapes finds (fp32,
tf32, bf16, fp16, and fp8 where the device has it) and the achievable memory bandwidth (a copy and a read-only
reduction), each against the spec sheet. The result is written to results/ like a run, and `tokenbench run`
reads the newest one of the same device as its measured ceiling."""
from __future__ import annotations

import json
import sys

from bench.report.terminal_tables import console_width
from bench.configs import device_catalog
from bench.records import store
from bench.errors import UserError
from bench.parsing import positive_float
from bench.sweeps.peak_sweep import DEFAULT_BUDGET_S, PEAK_DTYPES, record_peaks
from bench.report.run_tables import print_peak


def add_arguments(p):
    p.add_argument("--dtype", default=",".join(PEAK_DTYPES),
                   help=f"comma list of matmul dtypes (default all: {','.join(PEAK_DTYPES)}); one the device "
                        f"lacks is reported as a skipped row with the reason")
    p.add_argument("--budget-s", help=f"time budget of the whole sweep in seconds (default "
                                      f"{DEFAULT_BUDGET_S['cuda']:.0f} on a GPU, {DEFAULT_BUDGET_S['cpu']:.0f} on a CPU)")
    p.add_argument("--device", default="auto", help="auto | cuda | cpu")
    p.add_argument("--out", default="results", help="folder for the peak file (default results/)")
    p.add_argument("--no-bandwidth", dest="bandwidth", action="store_false",
                   help="skip the copy and read bandwidth rows")
    p.add_argument("--json", action="store_true", help="print the peak record as JSON on stdout")


def parse_dtypes(text: str) -> list[str]:
    chosen = []
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            continue
        if item not in PEAK_DTYPES:
            raise UserError(f"unknown dtype {item!r} for peak; choose one of: {', '.join(PEAK_DTYPES)}")
        if item not in chosen:
            chosen.append(item)
    if not chosen:
        raise UserError("--dtype is empty; choose one or more of: " + ", ".join(PEAK_DTYPES))
    return chosen


def main(args) -> int:
    from rich.console import Console

    console = Console(stderr=True, width=console_width(sys.stderr))
    dtypes = parse_dtypes(args.dtype)
    budget = positive_float(args.budget_s, "--budget-s")
    device = device_catalog.detect(args.device)
    budget = budget or DEFAULT_BUDGET_S[device.kind]
    label = "GPU" if device.kind == "cuda" else "CPU (a plain CPU, not an accelerator: figures are CPU figures)"
    console.print(f"[bold]tokenbench peak[/] on {label}: {device.name}; dtypes {dtypes}, budget {budget:g} s")

    def row_line(row) -> str:
        what = f"  {row.metric} {row.dtype}"
        if row.measured is not None:
            return f"{what}: {row.measured:.4g} {row.unit} at {row.best_shape_label}"
        return f"{what}: skipped ({row.skipped})"

    run = record_peaks(device, dtypes, budget, args.bandwidth, args.out, console, row_line)
    record, writer = run.record, run.writer
    print_peak(store.as_record(record), console)
    console.print(f"wrote {writer.json_path} and {writer.csv_path}")
    if args.json:
        print(json.dumps(store.clean(record), indent=1))
    return run.status

"""`tokenbench served FILE...`: the points of serving-benchmark result files, per GPU, as InferenceX reports them.

    tokenbench served result.json --hardware h200 --gpus 8 --precision fp8      # vllm bench serve --save-result
    tokenbench served sglang.jsonl --hardware h200 --gpus 8 --model deepseek-r1 --precision fp8
    tokenbench served profile_export_aiperf.json --hardware h100 --gpus 1 --precision bf16
    tokenbench served batched.jsonl --hardware ... # llama-batched-bench --output-format jsonl, llama-bench -o json
    tokenbench served costmodel/data/served.csv                                  # tokenbench's CSV, InferenceX JSON
    tokenbench served costmodel/data/served_readings.csv    # published frontier readings and claims (not runs)

The format is read from the file's content. An engine's file gives whole-run totals and does not say on what
hardware, how many GPUs or at what precision it ran: give them (--hardware, --gpus, --precision; --model
where the file names none, or to name it as tokenbench does). The same files go to
`tokenbench compare WORKLOAD.json --served FILE`.
"""
from __future__ import annotations

import json
import sys


def add_arguments(parser) -> None:
    import argparse

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("files", metavar="FILE", nargs="+", help="served-results files (any of the formats above)")
    parser.add_argument("--hardware", metavar="H", help="the catalog device it ran on (e.g. h200, b200, mi300x)")
    parser.add_argument("--gpus", type=int, metavar="N", help="how many GPUs served it (per GPU = total / N)")
    parser.add_argument("--model", metavar="M", help="the model, as tokenbench names it (e.g. gpt-oss-120b)")
    parser.add_argument("--precision", metavar="P", help="the precision served (bf16, fp8, fp4 ...)")
    parser.add_argument("--json", action="store_true", help="print the points as JSON")


def main(args) -> int:
    from costmodel.served_results import ServedGiven, read_served_file

    given = ServedGiven(hardware=args.hardware, gpus=args.gpus, model=args.model, precision=args.precision)
    files = [read_served_file(f, given) for f in args.files]  # all checked before anything is printed
    if args.json:
        print(json.dumps([{"file": f.path, "format": f.format, "points": [p.to_dict() for p in f.points],
                           "step_rates": [vars(r) for r in f.step_rates]} for f in files], indent=1))
        return 0
    from rich.console import Console

    from bench.report.served_table import print_served
    from bench.report.terminal_tables import console_width

    console = Console(width=console_width(sys.stdout))
    for i, f in enumerate(files):
        if i:
            console.print()
        print_served(f, console)
    return 0

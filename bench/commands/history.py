"""Print one op's figures across devices and dates from pytest-benchmark files (the suites in benchmarks
store them under results/benchmarks/<device>/): median time, TFLOP/s, GB/s, % of spec, tokens/s, $/M tokens."""
from __future__ import annotations

import json
from pathlib import Path

from bench.records.benchmark_files import benchmark_files, flatten, load_benchmark_file
from bench.errors import UserError
from bench.parsing import positive_int_list

DEFAULT_PATH = "results/benchmarks"


def add_arguments(p):
    p.add_argument("op", help="op name as the suites record it (qkv_proj, attention, layer, decode_step, ...)")
    p.add_argument("paths", nargs="*", help=f"pytest-benchmark JSON files or folders (default {DEFAULT_PATH}/)")
    p.add_argument("--model", help="only this model")
    p.add_argument("--backend", help="only this backend")
    p.add_argument("--batch", help="only these batch sizes (comma list)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")


def select(rows: list[dict], args) -> list[dict]:
    batches = positive_int_list(args.batch, "--batch") if args.batch else None
    out = [r for r in rows if r.get("op") == args.op
           and (args.model is None or r.get("model") == args.model)
           and (args.backend is None or r.get("backend") == args.backend)
           and (batches is None or r.get("batch") in batches)]
    if not out:
        ops = sorted({r["op"] for r in rows if r.get("op")})
        what = f"op {args.op!r}" + "".join(f", {k} {getattr(args, k)}" for k in ("model", "backend", "batch")
                                           if getattr(args, k))
        raise UserError(f"no benchmark of {what} in these files; ops recorded there: {', '.join(ops) or 'none'}")
    return sorted(out, key=lambda r: (r["device"], str(r.get("model")), r.get("batch") or 0,
                                      r.get("context") or 0, str(r.get("backend")), r["datetime"]))


def _num(value, fmt: str, scale: float = 1.0) -> str:
    return "-" if value is None else format(value * scale, fmt)


def main(args) -> int:
    paths = args.paths or [DEFAULT_PATH]
    if not args.paths and not Path(DEFAULT_PATH).is_dir():
        raise UserError(f"no {DEFAULT_PATH}/ here; store benchmark runs with `pytest benchmarks "
                        f"--benchmark-autosave` or name the files")
    files = benchmark_files(paths)
    if not files:
        raise UserError(f"no pytest-benchmark files under {', '.join(paths)}; store some with "
                        f"`pytest benchmarks --benchmark-autosave`")
    rows = []
    for path in files:  # every file is checked before anything is printed
        rows.extend(flatten(path, load_benchmark_file(path)))
    chosen = select(rows, args)
    if args.json:
        print(json.dumps(chosen, indent=1))
        return 0

    from rich.markup import escape

    from bench.report.terminal_tables import Col, print_table, stdout_console

    columns = {
        "device": lambda r: r["device"], "date": lambda r: r["datetime"][:16].replace("T", " "),
        "commit": lambda r: r["commit"], "model": lambda r: str(r.get("model", "-")),
        "batch": lambda r: str(r.get("batch", "-")), "ctx": lambda r: str(r.get("context", "-")),
        "backend": lambda r: str(r.get("backend", "-")), "dtype": lambda r: str(r.get("dtype", "-")),
        "median us": lambda r: _num(r["median_s"], ",.1f", 1e6), "rounds": lambda r: str(r.get("rounds", "-")),
        "TFLOP/s": lambda r: _num(r.get("tflops"), ".3g"), "GB/s": lambda r: _num(r.get("gbps"), ",.4g"),
        "% spec BW": lambda r: _num(r.get("pct_spec_bw"), ".0%"),
        "% spec FLOP": lambda r: _num(r.get("pct_spec_flops"), ".0%"),
        "tok/s": lambda r: _num(r.get("tokens_per_s"), ",.1f"), "$/M tok": lambda r: _num(r.get("cost_per_mtok"), ",.4f"),
        "timer": lambda r: str(r.get("timer", "-")),
    }
    cells = {name: [escape(fmt(r)) for r in chosen] for name, fmt in columns.items()}
    shown = [name for name, values in cells.items() if any(v != "-" for v in values)]  # drop empty columns
    devices = sorted({r["device"] for r in chosen})
    title = (f"{args.op}: {len(chosen)} result(s) from {len({r['file'] for r in chosen})} file(s), "
             f"{len(devices)} device(s)")
    # the terminal's width (COLUMNS where piped): too narrow a table is split into parts repeating the keys
    # (device, date, model, batch, ctx, backend), never a cell cut
    keys = ("device", "date", "model", "batch", "ctx", "backend")
    left = ("device", "date", "commit", "model", "backend", "dtype", "timer")
    cols = [Col(name, right=name not in left, key=name in keys) for name in shown]
    print_table(stdout_console(), title, cols, [[cells[name][i] for name in shown] for i in range(len(chosen))])
    return 0

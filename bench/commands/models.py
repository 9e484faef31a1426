"""Describe models: the catalog, or the names and Hugging Face config.json paths given. Exact parameter counts
(total, and active per token), weight bytes, the KV cache per layer type and the FLOPs of one decode token."""
from __future__ import annotations

import json
import sys

from bench.configs.model_configs import MODELS, get_model
from bench.configs.model_summary import summarize
from bench.parsing import choice, positive_int

DTYPES = ("bf16", "fp16", "fp32", "fp8")


def add_arguments(p):
    p.add_argument("model", nargs="*", help="catalog names or paths of Hugging Face config.json files (or of "
                                            "folders holding one); default: the whole catalog")
    p.add_argument("--context", default="2048", help="context for the KV cache and FLOPs per token (default 2048)")
    p.add_argument("--dtype", default="bf16", help=f"element size for the byte figures: {' | '.join(DTYPES)} "
                                                   "(default bf16)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")


def main(args) -> int:
    context = positive_int(args.context, "--context")
    dtype = choice(args.dtype, DTYPES, "dtype")
    models = [get_model(m) for m in args.model] if args.model else list(MODELS.values())
    entries = [(m, summarize(m, context, dtype)) for m in models]
    if args.json:
        print(json.dumps([{**m.to_dict(), "summary": s.to_dict()} for m, s in entries], indent=1))
        return 0
    from rich.console import Console

    from bench.report.terminal_tables import Col, console_width, print_table

    console = Console(width=console_width(sys.stdout))
    cols = [Col("name", right=False, key=True), Col("layers"), Col("hidden"), Col("params"), Col("active"),
            Col(f"weights {dtype}"), Col("KV/token"), Col(f"KV at {context}"), Col(f"GFLOP/token at {context}")]
    rows = [[s.name, str(m.layers), str(m.hidden), f"{s.params:,}", f"{s.active_params:,}", _bytes(s.weight_bytes),
             _bytes(s.kv_bytes_per_token), _bytes(s.kv_cache_bytes_at_context), f"{s.flops_per_token / 1e9:.3g}"]
            for m, s in entries]
    print_table(console, "Models (counts exact, as transformers builds them; active = top-k experts only)", cols, rows)
    cols = [Col("name", right=False, key=True), Col("layer type", right=False), Col("layers"),
            Col("params/layer"), Col("KV/token/layer"), Col("cache bound", right=False)]
    rows = [[s.name, t.layer, str(t.count), _count(t.params), f"{t.kv_bytes_per_token:,} B", t.kv_bound]
            for _, s in entries for t in s.layer_types]
    print_table(console, f"Layer types (KV bytes at {dtype}; MLA caches its latent)", cols, rows)
    for _, s in entries:
        for note in s.notes:
            console.print(f"{s.name}: {note}", markup=False)
    console.print(f"FLOPs/token: 2 per weight multiplied + attention over {context} entries (a window bounds it); "
                  "elementwise work left out. KV/token: what one token adds to every layer.", markup=False)
    return 0


def _bytes(n: float) -> str:
    for div, unit in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "KB")):
        if n >= div:
            return f"{n / div:.3g} {unit}"
    return f"{n:.0f} B"


def _count(n: float) -> str:
    """A parameter count in its own units, so the tiny model is not shown as 0.000 B."""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.3g} {unit}"
    return f"{n:.0f}"

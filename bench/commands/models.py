"""List the model configs with their derived sizes: parameters, bf16 weight bytes, KV bytes per token."""
from __future__ import annotations

import json
import sys

from bench.configs.model_configs import MODELS

FIELDS = ("name", "layers", "hidden", "heads", "kv_heads", "head_dim", "ffn", "vocab", "params", "weight_bytes",
          "kv_bytes_per_token")


def add_arguments(p):
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def main(args) -> int:
    entries = [m.to_dict() for m in MODELS.values()]
    if args.json:
        print(json.dumps(entries, indent=1))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Model configs (sizes derived from the shapes; bytes at bf16)")
    for col in ("name", "layers", "hidden", "heads", "kv", "head dim", "ffn", "vocab", "params", "active",
                "experts", "weights", "KV/token"):
        table.add_column(col, justify="left" if col == "name" else "right")
    for e in entries:
        table.add_row(e["name"], str(e["layers"]), str(e["hidden"]), str(e["heads"]), str(e["kv_heads"]),
                      str(e["head_dim"]), str(e["ffn"]), str(e["vocab"]), _count(e['params']),
                      _count(e['active_params']), _experts(e), f"{e['weight_bytes'] / 1e9:.2f} GB", f"{e['kv_bytes_per_token'] / 1024:.0f} KiB")
    # piped output gets a fixed width wide enough for every column (rich would squeeze them to 80)
    Console(width=None if sys.stdout.isatty() else 170).print(table)
    return 0


def _count(n: float) -> str:
    """A parameter count in its own units, so the tiny model is not shown as 0.000 B."""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.3g} {unit}"
    return f"{n:.0f}"


def _experts(e: dict) -> str:
    if not e.get("experts"):
        return "-"
    shared = f"+{e['shared_experts']}" if e.get("shared_experts") else ""
    return f"{e['experts']}{shared} top-{e['experts_per_token']} x{e['moe_ffn']}"

"""List the model configs with their derived sizes: parameters, bf16 weight bytes, KV bytes per token."""
from __future__ import annotations

import json

from bench.models import MODELS

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
    for col in ("name", "layers", "hidden", "heads", "kv", "head dim", "ffn", "vocab", "params", "weights",
                "KV/token"):
        table.add_column(col, justify="left" if col == "name" else "right")
    for e in entries:
        table.add_row(e["name"], str(e["layers"]), str(e["hidden"]), str(e["heads"]), str(e["kv_heads"]),
                      str(e["head_dim"]), str(e["ffn"]), str(e["vocab"]), f"{e['params'] / 1e9:.3f} B",
                      f"{e['weight_bytes'] / 1e9:.2f} GB", f"{e['kv_bytes_per_token'] / 1024:.0f} KiB")
    Console().print(table)
    return 0

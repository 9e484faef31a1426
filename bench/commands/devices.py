"""List the spec-sheet catalog (dense peaks, bandwidth, memory, TDP, source) and mark the detected device."""
from __future__ import annotations

import json

from bench.configs import device_catalog
def add_arguments(p):
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--device", default="auto", help="auto | cuda | cpu: which local device to detect; none: the catalog "
                                                "alone, without detecting (and without loading torch)")


def main(args) -> int:
    local = None if args.device == "none" else device_catalog.detect(args.device)
    entries = []
    for spec in device_catalog.catalog().values():
        entry = spec.to_dict()
        entry["detected"] = local is not None and local.key == spec.key
        entries.append(entry)
    if args.json:
        print(json.dumps({"detected": local and local.to_dict(), "catalog": entries}, indent=1))
        return 0
    from rich.console import Console
    from bench.report.terminal_tables import Col, print_table

    def fmt(v):
        return "-" if v is None else f"{v:g}"

    cols = [Col("", right=False, key=True), Col("key", right=False, key=True), Col("name", right=False, wrap=True),
            *(Col(d) for d in ("fp32", "tf32", "bf16", "fp8", "fp4")), Col("TB/s"), Col("GB"), Col("TDP W")]
    rows = []
    for e in entries:
        p = e["peak_tflops"]
        rows.append(["*" if e["detected"] else "", e["key"], short_name(e["name"]), fmt(p.get("fp32")), fmt(p.get("tf32")),
                     fmt(p.get("bf16")), fmt(p.get("fp8")), fmt(p.get("fp4")),
                     fmt(None if e["mem_bw_gbs"] is None else e["mem_bw_gbs"] / 1000), fmt(e["memory_gb"]),
                     fmt(e["tdp_w"])])
    console = Console()
    print_table(console, "Spec-sheet catalog (dense TFLOP/s; '-' = unknown)", cols, rows)
    if local is None:
        return 0
    where = f"matches catalog entry '{local.key}'" if local.key else "is not in the catalog: spec peaks unknown"
    console.print(f"Detected: {local.kind} '{local.name}' ({local.memory_bytes / 2**30:.1f} GiB) {where}.")
    return 0


def short_name(name: str) -> str:
    """The catalog name without its vendor, which every row would repeat (the key says the rest)."""
    for vendor in ("NVIDIA ", "AMD Instinct ", "AMD "):
        if name.startswith(vendor):
            return name[len(vendor):]
    return name

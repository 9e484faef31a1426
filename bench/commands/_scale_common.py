"""What the `moe` and `fp8` commands share: their arguments, the --backend check, the device line and the
progress console (stderr). Their plan, record and ceilings are bench/sweeps/op_sweep_setup.py's."""
from __future__ import annotations

import os
import sys

from bench.configs import device_catalog
from bench.errors import UserError


def add_common_arguments(p) -> None:
    p.add_argument("--device", default="auto", help="auto | cuda | cpu")
    p.add_argument("--out", default="results", help="folder for the results files (default results/)")
    p.add_argument("--budget-s", default="1.0", help="timing budget per case in seconds (default 1.0)")
    p.add_argument("--price-per-hour", help="$ per device-hour (default: the catalog's, where it has one)")
    p.add_argument("--power-kw", help="all-in kW per device (default: the catalog's, where it has one)")
    p.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_false",
                   help="time eager launches with events instead of CUDA-graph replays")
    p.add_argument("--json", action="store_true", help="print the results record as JSON on stdout")


def backends_for(text: str, allowed, device) -> list:
    chosen = [b.strip() for b in text.split(",") if b.strip()]
    if not chosen:
        raise UserError("--backend is empty")
    for b in chosen:
        if b not in allowed:
            raise UserError(f"unknown backend {b!r}; choose from {', '.join(allowed)}")
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"
    if device is not None and device.kind == "cpu" and "triton" in chosen and not interpreted:
        raise UserError("--backend triton on a CPU runs only under the interpreter: set TRITON_INTERPRET=1 "
                        "(figures then time the interpreter, not a kernel)")
    return chosen


def detect(args):
    device = device_catalog.detect(args.device)
    label = "GPU" if device.kind == "cuda" else "CPU (a plain CPU: figures are CPU figures)"
    return device, label


def say(text: str) -> None:
    print(text, file=sys.stderr)


def console():
    """The stderr console the sweep's progress goes to (a bar on a terminal, a line per case in a pipe)."""
    from rich.console import Console

    from bench.report.terminal_tables import console_width

    return Console(stderr=True, width=console_width(sys.stderr))

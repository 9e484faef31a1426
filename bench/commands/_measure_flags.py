"""Flags the commands that measure steps on this device and price them (run, workload) take alike."""
from __future__ import annotations


def add_record_price_timing_arguments(p, budget_s: str) -> None:
    """--out, --price-per-hour, --power-kw, --budget-s (default `budget_s` seconds per case), --no-cuda-graph."""
    p.add_argument("--out", default="results", help="folder for the results files (default results/)")
    p.add_argument("--price-per-hour", help="$ per device-hour (default: the catalog's, where it has one)")
    p.add_argument("--power-kw", help="all-in kW per device (default: the catalog's, where it has one)")
    p.add_argument("--budget-s", default=budget_s, help=f"timing budget per case in seconds (default {budget_s})")
    p.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_false",
                   help="time eager launches with events instead of CUDA-graph replays")

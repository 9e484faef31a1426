"""Flags the commands that measure steps on this device and price them (run, workload) take alike."""
from __future__ import annotations

ENERGY_MODES = ("rows", "steps", "off")  # bench/sweeps/decode_sweep.py board_energy reads them


def add_record_price_timing_arguments(p, budget_s: str) -> None:
    """--out, --price-per-hour, --power-kw, --budget-s (default `budget_s` seconds per case), --no-cuda-graph,
    --energy."""
    p.add_argument("--out", default="results", help="folder for the results files (default results/)")
    p.add_argument("--price-per-hour", help="$ per device-hour (default: the catalog's, where it has one)")
    p.add_argument("--power-kw", help="all-in kW per device (default: the catalog's, where it has one)")
    p.add_argument("--budget-s", default=budget_s, help=f"timing budget per case in seconds (default {budget_s})")
    p.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_false",
                   help="time eager launches with events instead of CUDA-graph replays")
    p.add_argument("--energy", default="rows",
                   help="the board's energy (NVML, GPU only), each window >= 1 s: rows (default: every row a J/token "
                        "figure is composed of: layer, final_norm, lm_head), steps (only whole steps: a workload "
                        "step's layers x layer + tail in one window, a run's --full-model row; no single op is "
                        "metered, what the GPU check uses), off")

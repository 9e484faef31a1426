"""What the `moe` and `fp8` commands share: their arguments, the results record, the timing plan."""
from __future__ import annotations

import os
import sys

from bench.configs import device_catalog

from bench.records import environment, store
from bench.errors import UserError
from bench.parsing import positive_float


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


def start(kind: str, args, device, model, dtype: str, settings: dict):
    """(writer, record, economics) for a run of `kind`; the record is written at once."""
    from bench.derive.run_pricing import economics_for, resolve_price

    price = resolve_price(args, device)
    env = environment.capture()
    writer, record = store.open_record(kind, args.out, device, env, (model.name, dtype, kind), settings,
                                       model=model, dtype=dtype, price=price)
    writer.write(record)
    return writer, record, economics_for(price)


def plan_for(model, batches, dtype, backends, args, device):
    from bench.sweeps.decode_sweep import RunPlan

    return RunPlan(model=model, batches=batches, contexts=[0], dtype=dtype, backends=backends,
                   budget_s=positive_float(args.budget_s, "--budget-s"),
                   cuda_graph=args.cuda_graph and device.kind == "cuda")


def measure_ceilings(plan, device, record: dict, writer) -> None:
    """The device's copy bandwidth, measured in the same run, as `tokenbench run` does."""
    from bench.measure.bandwidth import record_copy_bandwidth

    plan.ceilings = record_copy_bandwidth(device, record, budget_s=2.0 if device.kind == "cuda" else 0.3)
    writer.write(record)


def detect(args):
    device = device_catalog.detect(args.device)
    label = "GPU" if device.kind == "cuda" else "CPU (a plain CPU: figures are CPU figures)"
    return device, label


def say(text: str) -> None:
    print(text, file=sys.stderr)

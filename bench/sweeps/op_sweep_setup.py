"""What a sweep of one op kind outside the decode layer starts from (fp8_sweep and moe_sweep, for the `fp8`
and `moe` commands): its timing plan, its results record (written at once) with the economics of its price,
and the device's copy bandwidth measured in the same run, as `tokenbench run` measures it."""
from __future__ import annotations

from bench.records import environment, store


def op_plan(model, batches, dtype: str, backends, budget_s: float, cuda_graph: bool, device):
    """The RunPlan of an op sweep: its batches at context 0; CUDA graphs only where asked and on a GPU."""
    from bench.sweeps.decode_sweep import RunPlan

    return RunPlan(model=model, batches=batches, contexts=[0], dtype=dtype, backends=backends, budget_s=budget_s,
                   cuda_graph=cuda_graph and device.kind == "cuda")


def open_op_record(kind: str, out, device, model, dtype: str, price: dict, settings: dict):
    """(writer, record, economics) for a run of `kind` priced at `price` (run_pricing.run_price_quote); the
    record is written at once."""
    from bench.derive.run_pricing import economics_for

    env = environment.capture()
    writer, record = store.open_record(kind, out, device, env, (model.name, dtype, kind), settings,
                                       model=model, dtype=dtype, price=price)
    writer.write(record)
    return writer, record, economics_for(price)


def measure_ceilings(plan, device, record: dict, writer) -> None:
    """The device's copy bandwidth, measured in the same run, as `tokenbench run` does."""
    from bench.measure.bandwidth import record_copy_bandwidth

    plan.ceilings = record_copy_bandwidth(device, record, budget_s=2.0 if device.kind == "cuda" else 0.3)
    writer.write(record)

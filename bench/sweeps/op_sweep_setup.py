"""What a sweep of one op kind outside the decode layer starts from (fp8_sweep and moe_sweep, for the `fp8`
and `moe` commands): its timing plan, and OpSweep, the engine plan (bench/sweeps/engine.py) whose record is
opened with the economics of its price and whose copy bandwidth is measured in the same run, as `tokenbench
run` measures it."""
from __future__ import annotations

from bench.records import environment, store
from bench.sweeps.engine import SweepPlan


def op_plan(model, batches, dtype: str, backends, budget_s: float, cuda_graph: bool, device):
    """The RunPlan of an op sweep: its batches at context 0; CUDA graphs only where asked and on a GPU."""
    from bench.sweeps.decode_sweep import RunPlan

    return RunPlan(model=model, batches=batches, contexts=[0], dtype=dtype, backends=backends, budget_s=budget_s,
                   cuda_graph=cuda_graph and device.kind == "cuda")


class OpSweep(SweepPlan):
    """An op sweep's record (`kind`, its `dtype` label, priced at `price`, run_pricing.run_price_quote) and
    ceilings; subclasses give the groups and steps."""

    def __init__(self, kind: str, plan, device, price: dict, out, settings: dict, console, dtype: str | None = None):
        from bench.derive.run_pricing import economics_for

        self.record_kind, self.plan, self.device, self.price, self.out = kind, plan, device, price, out
        self.settings, self.console, self.dtype = settings, console, dtype or plan.dtype
        self.economics = economics_for(price)

    def open(self, device):
        model = self.plan.model
        return store.open_record(self.record_kind, self.out, device, environment.capture(),
                                 (model.name, self.dtype, self.record_kind), self.settings, model=model, dtype=self.dtype,
                                 price=self.price)

    def measure_ceilings(self, device, record, writer) -> None:
        """The device's copy bandwidth, measured in the same run, as `tokenbench run` does."""
        from bench.measure.bandwidth import record_copy_bandwidth

        self.plan.ceilings = record_copy_bandwidth(device, record, budget_s=2.0 if device.kind == "cuda" else 0.3)
        writer.write(record)

"""What `tokenbench run` measures, from its plan to its finished results file: a plan nothing of which fits
this machine is refused first; then the measuring engine (bench/sweeps/engine.py) runs the phase's sweep
(decode_sweep, or prefill_sweep for prefill and mixed) inside the run's own lifecycle: the record opened (with
the newest peak file of the device as its measured ceiling), the copy bandwidth measured, the sweep, the
bandwidth checked for drift and the unreliable rows flagged. Progress and warnings go to the console it is
handed; the record is on disk after every row."""
from __future__ import annotations

from dataclasses import dataclass

from bench.derive.run_pricing import economics_for
from bench.errors import UserError
from bench.measure.bandwidth import check_bandwidth_drift, copy_budget, record_copy_bandwidth
from bench.measure.reliability import flag_unreliable
from bench.records import environment, store
from bench.records.peak_files import use_measured_peak
from bench.sweeps.decode_sweep import DecodeSweep, RunPlan, combo_skip_reason, combos
from bench.sweeps.engine import SweepPlan, run_plan
from bench.sweeps.prefill_sweep import PhaseSweep, skip_reason


@dataclass
class MeasuredRun:
    record: dict
    writer: store.ResultWriter
    status: int  # 0, or 128 + the signal when stopped (130: Ctrl-C); the rows measured so far are kept


def refuse_if_nothing_fits(plan: RunPlan, device) -> None:
    if plan.phase != "decode":
        reasons = [(p, skip_reason(plan, device, p)) for p in plan.points]
        if all(why for _, why in reasons):
            raise UserError(f"nothing to measure: no {plan.phase} point fits this machine ({reasons[0][0]}: "
                            f"{reasons[0][1]})")
        return
    reasons = [(b, c, combo_skip_reason(plan, device, b, c)) for b, c in combos(plan)]
    if all(why for _, _, why in reasons):
        b, c, why = reasons[0]
        raise UserError(f"nothing to measure: no (batch, context) fits this machine "
                        f"(b={b} ctx={c} {why})")


def run_energy_note(plan: RunPlan, device) -> dict:
    """The record's `energy`: where its board readings come from, or why it has none (--energy)."""
    if device.kind != "cuda":
        return {"reason": "no power reading: CPU run (NVML reads NVIDIA GPUs only)", "mode": plan.energy}
    if plan.energy == "off" or (plan.energy == "steps" and not plan.full_model):
        why = "--energy off" if plan.energy == "off" else "--energy steps meters whole steps only (a --full-model row)"
        return {"reason": f"no board reading: {why}", "mode": plan.energy}
    what = "each metered row's" if plan.energy == "rows" else "the whole-model row's"
    return {"source": f"NVML energy counter over {what} own >= 1 s window, GPU board only", "mode": plan.energy}


class RunSweep(SweepPlan):
    """`tokenbench run` for the engine: its record and ceilings around the phase's sweep (`phase`, a
    DecodeSweep or a PhaseSweep, whose groups and steps these are)."""

    def __init__(self, plan: RunPlan, device, price: dict, out, console):
        self.plan, self.price, self.out, self.console = plan, price, out, console
        sweep = DecodeSweep if plan.phase == "decode" else PhaseSweep
        self.phase = sweep(plan, device, economics_for(price), console)

    def open(self, device):
        plan, model = self.plan, self.plan.model
        writer, record = store.open_record(
            "run", self.out, device, environment.capture(),
            (model.name, plan.dtype, "" if plan.phase == "decode" else plan.phase),
            {"batches": plan.batches, "contexts": plan.contexts, "backends": plan.backends,
             "budget_s": plan.budget_s, "cuda_graph": plan.cuda_graph, "per_op": plan.per_op,
             "full_model": plan.full_model, "dtype_reason": plan.dtype_reason},
            model=model, dtype=plan.dtype, price=self.price, phase=plan.phase, energy=run_energy_note(plan, device))
        use_measured_peak(plan, device, self.out, record, self.console)  # the newest peak file of this device
        return writer, record

    def measure_ceilings(self, device, record, writer) -> None:
        self.console.print("measuring copy bandwidth ...")
        self.plan.ceilings = record_copy_bandwidth(device, record, copy_budget(self.plan.budget_s))
        writer.write(record)
        if self.plan.phase != "decode":
            record["settings"]["points"] = [p.__dict__ for p in self.plan.points]

    def total(self) -> int:
        return self.phase.total()

    def groups(self):
        return self.phase.groups()

    def derive(self, group, rows) -> list:
        return self.phase.derive(group, rows)

    def finish(self, device, record, writer) -> None:
        self.phase.finish(device, record, writer)
        check_bandwidth_drift(device, record, self.warn, copy_budget(self.plan.budget_s))
        record["unreliable_rows"] = len(flag_unreliable(record["rows"]))
        writer.write(record)


def measure_run(plan: RunPlan, device, price: dict, out, console) -> MeasuredRun:
    """Open the run's record in `out`, measure it (Ctrl-C or SIGTERM keeps the rows so far) and flag
    unreliable rows."""
    run = run_plan(RunSweep(plan, device, price, out, console), device)
    return MeasuredRun(run.record, run.writer, run.status)

"""What `tokenbench run` measures, from its plan to its finished results file: a plan nothing of which fits
this machine is refused first; then the record is opened (with the newest peak file of the device as its
measured ceiling), the copy bandwidth measured, the phase's sweep run (decode_sweep, or prefill_sweep for
prefill and mixed), the bandwidth checked for drift and the unreliable rows flagged. Progress and warnings
go to the console it is handed; the record is on disk after every row."""
from __future__ import annotations

from dataclasses import dataclass

from bench.errors import UserError
from bench.measure.bandwidth import check_bandwidth_drift, copy_budget, record_copy_bandwidth
from bench.measure.reliability import flag_unreliable
from bench.records import environment, store
from bench.records.peak_files import use_measured_peak
from bench.derive.run_pricing import economics_for
from bench.sweeps.decode_sweep import RunPlan, combo_skip_reason, combos, run_sweep
from bench.sweeps.prefill_sweep import run_phase_sweep, skip_reason


@dataclass
class MeasuredRun:
    record: dict
    writer: store.ResultWriter
    status: int  # 0, or 130 when interrupted (the rows measured so far are kept)


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


def measure_run(plan: RunPlan, device, price: dict, out, console) -> MeasuredRun:
    """Open the run's record in `out`, measure it (Ctrl-C keeps the rows so far) and flag unreliable rows."""
    env = environment.capture()
    model = plan.model
    writer, record = store.open_record(
        "run", out, device, env, (model.name, plan.dtype, "" if plan.phase == "decode" else plan.phase),
        {"batches": plan.batches, "contexts": plan.contexts, "backends": plan.backends, "budget_s": plan.budget_s,
         "cuda_graph": plan.cuda_graph, "per_op": plan.per_op, "full_model": plan.full_model,
         "dtype_reason": plan.dtype_reason},
        model=model, dtype=plan.dtype, price=price, phase=plan.phase, energy=run_energy_note(plan, device))
    use_measured_peak(plan, device, out, record, console)  # the newest `tokenbench peak` file of this device
    writer.write(record)
    warn = lambda msg: console.print(f"[yellow]{msg}[/]")  # noqa: E731
    with store.recording(record, writer, warn) as state:
        console.print("measuring copy bandwidth ...")
        plan.ceilings = record_copy_bandwidth(device, record, copy_budget(plan.budget_s))
        writer.write(record)
        if plan.phase == "decode":
            run_sweep(plan, device, record, writer, economics_for(price), console)
        else:
            record["settings"]["points"] = [p.__dict__ for p in plan.points]
            run_phase_sweep(plan, device, record, writer, economics_for(price), console)
        check_bandwidth_drift(device, record, warn, copy_budget(plan.budget_s))
        unreliable = flag_unreliable(record["rows"])
        record["unreliable_rows"] = len(unreliable)
        writer.write(record)
    return MeasuredRun(record, writer, state["status"])

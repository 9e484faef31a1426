"""`tokenbench workload` below the command: plan, measure, compose, price, and (optionally) check the
composition against the cohort run end to end. The record is written after every row, so an interrupted
or failing run keeps what it measured; points are composed from whatever steps were measured."""
from __future__ import annotations

from dataclasses import dataclass, field

from bench.measure.bandwidth import copy_budget, record_copy_bandwidth
from bench.records import environment
from bench.sweeps.decode_sweep import RunPlan
from bench.sweeps.engine import run_plan
from bench.workload import compose as comp
from bench.workload.measure_steps import StepSweep
from bench.workload.plan import WorkloadSpec
from bench.workload.queueing import ENGINE_POLICIES, TTFT_MODEL
from costmodel.workload_economics import ENGINE_MODELS, WorkloadPoint, workload_economics

KIND = "workload"


@dataclass
class WorkloadRun:
    """What a workload run produced: the record written to disk and its typed points."""

    record: dict
    points: list = field(default_factory=list)  # [(WorkloadPoint, Composition)]
    status: int = 0
    json_path: str = ""
    csv_path: str = ""


def precision(plan: RunPlan) -> str:
    """What the points are labelled with: the weights' format where it is not the activations' (fp8)."""
    return plan.dtype if plan.weights == "activation" else plan.weights


def header(plan: RunPlan, device, tp: int = 1) -> comp.Header:
    m = plan.model
    # the KV cache is held in the activation dtype; FP8 weights take a byte an element (scales are noise here)
    return comp.Header(device=device.key or device.name, model=m.name, precision=precision(plan),
                       memory_bytes=device.memory_bytes, weight_bytes=m.weight_bytes(precision(plan)),
                       kv_bytes_per_token=m.kv_bytes_per_token(plan.dtype), tp=tp)


def workload_energy_note(plan: RunPlan, device) -> dict:
    """The record's `energy`: where the steps' board joules come from (--energy), or why there are none."""
    if device.kind != "cuda":
        return {"reason": "no power reading: CPU run (NVML reads NVIDIA GPUs only); J/token is all-in, from the "
                          "catalog's kW", "mode": plan.energy}
    if plan.energy == "off":
        return {"reason": "no board reading: --energy off; J/token is all-in, from the catalog's kW", "mode": "off"}
    if plan.energy == "steps":
        return {"source": "NVML energy counter over one >= 1 s window of each whole step (layers x layer + "
                          "final_norm + lm_head back to back, GPU board only)", "mode": "steps"}
    return {"source": "NVML energy counter over each layer and tail row's own >= 1 s window (GPU board only), "
                      "composed like the step time", "mode": "rows"}


def open_workload_record(plan: RunPlan, device, spec: WorkloadSpec, price: dict, out_dir: str, backend: str,
                         measure_e2e: bool, tp: int = 1) -> tuple:
    """(writer, record) of a new workload results file, its header built by the store like every kind's."""
    from bench.records import store
    energy = workload_energy_note(plan, device)
    return store.open_record(
        KIND, out_dir, device, environment.capture(),
        (plan.model.name, precision(plan), "workload", str(spec.isl), str(spec.osl), f"tp{tp}" if tp > 1 else ""),
        {"backend": backend, "budget_s": plan.budget_s, "cuda_graph": plan.cuda_graph, "measure_e2e": measure_e2e,
         "dtype_reason": plan.dtype_reason},
        model=plan.model, dtype=precision(plan), price=price, activation_dtype=plan.dtype, phase=KIND,
        workload={"isl": spec.isl, "osl": spec.osl, "concurrency": list(spec.concurrency), "chunk": spec.chunk,
                  "tp": tp, "notes": list(spec.notes), "engine_models": dict(ENGINE_MODELS),
                  "composition": comp.__doc__.strip(), "engine_policy": spec.policy,
                  "engine_policy_source": ENGINE_POLICIES[spec.policy].source, "ttft_model": TTFT_MODEL},
        steps=[], points=[], compositions=[], economics=[], energy=energy)


def fitting(h: comp.Header, spec: WorkloadSpec) -> list[int]:
    return [c for c in spec.concurrency if comp.fits(h, spec, c)]


def compose_into(record: dict, h: comp.Header, spec: WorkloadSpec, steps: dict, stopped: bool = False) -> list:
    return write_points(record, comp.compose(h, spec, steps, unmeasured=comp.STOPPED if stopped else None))


def write_points(record: dict, pairs: list) -> list:
    """The (point, composition) pairs into the record, with their economics at the record's price and power."""
    price = record["price"]
    record["points"] = [p.to_dict() for p, _ in pairs]
    record["compositions"] = [c.to_dict() for _, c in pairs]
    record["economics"] = [workload_economics(p, price.get("price_per_hour"), price.get("power_kw")).to_dict()
                           for p, _ in pairs]
    return pairs


class WorkloadSweep(StepSweep):
    """`tokenbench workload` on one device for the measuring engine: its record, the copy bandwidth, the
    steps (StepSweep), then the points composed and priced (and, asked, the cohort run end to end)."""

    def __init__(self, plan: RunPlan, device, spec: WorkloadSpec, backend: str, price: dict, out_dir: str,
                 measure_e2e: bool, console, run: WorkloadRun, e2e_osl: int | None = None):
        self.h = header(plan, device)
        self.e2e_osl = e2e_osl
        super().__init__(plan, device, comp.needed_keys(spec, fitting(self.h, spec)), backend, console)
        self.spec, self.price, self.out_dir, self.measure_e2e, self.run = spec, price, out_dir, measure_e2e, run

    def open(self, device):
        writer, record = open_workload_record(self.plan, device, self.spec, self.price, self.out_dir, self.backend,
                                              self.measure_e2e)
        self.run.record, self.run.json_path, self.run.csv_path = record, str(writer.json_path), str(writer.csv_path)
        return writer, record

    def measure_ceilings(self, device, record, writer) -> None:
        self.console.print("measuring copy bandwidth ...")
        self.plan.ceilings = record_copy_bandwidth(device, record, copy_budget(self.plan.budget_s))

    def finish(self, device, record, writer) -> None:
        self.run.points = compose_into(record, self.h, self.spec, self.steps)
        if self.measure_e2e:
            check_end_to_end(self.plan, device, self.spec, self.backend, self.run,
                             lambda text: self.console.print(text), self.steps, self.e2e_osl)


def run_workload(plan: RunPlan, device, spec: WorkloadSpec, backend: str, price: dict, out_dir: str,
                 measure_e2e: bool, console, e2e_osl: int | None = None) -> WorkloadRun:
    """Measure every step the fitting concurrencies need, compose both engine models, price them; progress
    and lines on `console`. Stopped (Ctrl-C, SIGTERM), the points are composed from the steps measured and a
    point whose steps were not is said to be interrupted. e2e_osl: the end-to-end cohorts' answer length
    where shorter than the workload's (check_end_to_end)."""
    run = WorkloadRun({})
    sweep = WorkloadSweep(plan, device, spec, backend, price, out_dir, measure_e2e, console, run, e2e_osl)
    done = run_plan(sweep, device)
    run.status = done.status
    if run.status:  # stopped: compose what was measured (points needing a step not measured say so)
        run.points = compose_into(done.record, sweep.h, spec, sweep.steps, stopped=True)
        done.writer.write(done.record)
    return run


def check_end_to_end(plan: RunPlan, device, spec: WorkloadSpec, backend: str, run: WorkloadRun, say,
                     steps: dict | None = None, e2e_osl: int | None = None) -> None:
    """Run each fitting cohort for real (every layer its own weights and cache; bench/workload/e2e.py) and
    set measured / composed beside the composition. One model is built and float64-checked once and reused
    for every concurrency; a cohort that fails a check is reported as failed, never compared. A cohort that
    does not fit (or runs out of memory) is an e2e row with its reason, and the next cohort goes on.
    e2e_osl (< spec.osl: a shorter try) runs each cohort with that many answer tokens, compared with the
    composition at the same OSL, read off the same measured decode steps."""
    from bench.errors import UserError
    from bench.measure.gate import is_oom
    from bench.workload.e2e import make_cohort_model, run_cohort

    osl = spec.osl if e2e_osl is None else e2e_osl
    model, model_error = None, None
    for i, (point, composition) in enumerate(run.points):
        if point.engine_model != "prefill-then-decode" or composition.wall_seconds is None:
            continue
        composed = composition
        if osl != spec.osl:
            composed = comp.cohort_at_osl(composition, spec, point.concurrency, steps or {}, osl)
        try:
            if model_error:
                raise UserError(model_error)
            if model is None:
                say("end to end: building the model (every layer its own weights) ...")
                model = make_cohort_model(plan.model, plan.dtype, device, backend, spec.isl + max(osl, spec.osl))
            say(f"end to end: a cohort of {point.concurrency}, {spec.isl} + {osl} tokens each ...")
            cohort = run_cohort(plan.model, plan.dtype, device, point.concurrency, spec.isl, osl, spec.chunk,
                                backend=backend, cohort_model=model)
        except Exception as exc:  # noqa: BLE001 - a cohort that does not fit is a row, not the end of the run
            if not (isinstance(exc, UserError) or is_oom(exc)):
                raise
            why = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            if model is None:  # the model itself did not fit: no cohort can run
                model_error = why
            _free_cached(device)
            say(f"[yellow]end to end: C={point.concurrency} not run: {why}[/]")
            from dataclasses import replace

            run.points[i] = (point, replace(composition, note=f"end-to-end cohort not run: {why}"))
            run.record["compositions"][i] = run.points[i][1].to_dict()
            run.record.setdefault("e2e", []).append({"concurrency": point.concurrency, "ok": False, "osl": osl,
                                                     "check": f"not run: {why}", "skipped": why})
            continue
        updated = comp.with_measured_wall(composition, cohort, composed.wall_seconds, osl)
        run.points[i] = (point, updated)
        run.record["compositions"][i] = updated.to_dict()
        run.record.setdefault("e2e", []).append({
            "concurrency": point.concurrency, "ok": cohort.ok, "check": cohort.check.reason or "ok", "osl": osl,
            "reference_error": cohort.check.reference_error, "tolerance": cohort.check.tolerance,
            "prefill_s": cohort.prefill_s, "decode_s": cohort.decode_s, "wall_s": cohort.wall_s,
            "composed_prefill_s": composed.prefill_seconds, "composed_decode_s": composed.decode_seconds,
            "composed_wall_s": composed.wall_seconds, "decode_step_s": list(cohort.decode_step_s),
            "decode_contexts": list(cohort.decode_contexts), "prefill_group_s": list(cohort.prefill_group_s),
            "memory_bytes": cohort.memory_bytes, "warmup_s": cohort.warmup_s, "verify_s": cohort.verify_s})


def _free_cached(device) -> None:
    """Give the caching allocator's free blocks back, so the next cohort's fit test sees them."""
    if device.kind == "cuda":
        import torch

        torch.cuda.empty_cache()

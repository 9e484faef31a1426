"""The decode sweep of `tokenbench run` as a plan for the measuring engine (bench/sweeps/engine.py): every op
and the layer at every (batch, context) and backend, verified then timed, and the model's decode step derived
from them; the measure step every single-device sweep uses (gate, then time: one typed row); and `verify`'s
sweep, which checks the same cases untimed."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from bench.derive import roofline
from bench.configs.device_catalog import LocalDevice
from bench.configs.model_configs import ModelConfig
from bench.measure.timing import input_sets as rotated_inputs
from bench.measure.timing import time_cpu, time_cuda, time_cuda_graph
from bench.measure.gate import check_case, is_oom
from bench.records.schema import MeasuredRow, Step
from bench.sweeps.engine import Case, Group, SweepPlan, fit_reason
from costmodel.ceilings import Ceilings
from costmodel.power import step_board_joules_per_token
from costmodel.step import DECODE_DERIVATION, MODEL_OPS, compose_ops, decode_rates
from kernels.cpu_gemm import chosen_path
from kernels.dtypes import ELEMENT_BYTES, torch_dtype
from kernels.layer import layer_case, op_cases
from kernels.model import model_case
from kernels.spec_model import uses_spec_layers
from bench.sweeps import spec_steps
from kernels.op import OpCase

@dataclass
class RunPlan:
    model: ModelConfig
    batches: list
    contexts: list
    dtype: str
    backends: list
    budget_s: float = 1.0  # timing budget per case, warm-up and verification excluded
    cuda_graph: bool = True
    per_op: bool = True  # time every op, not only the layer and the model-level ops
    full_model: bool = False  # also time the whole model's step, every layer with its own weights
    ceilings: Ceilings = field(default_factory=Ceilings)  # measured copy bandwidth and matmul peak
    dtype_reason: str | None = None  # why a CPU run without --dtype took this dtype
    phase: str = "decode"  # decode | prefill | mixed (bench/sweeps/prefill_sweep.py)
    points: list | None = None  # the prefill or mixed points to measure
    weights: str = "activation"  # projection weights: in the activation dtype, or "fp8" (kernels/fp8_linear.py)
    energy: str = "rows"  # NVML windows: rows (METERED_OPS), steps (whole-step rows only), off

    def layer_dims(self):
        """The model's layer shapes with this plan's weight format."""
        from dataclasses import replace

        d = self.model.layer_dims
        return d if self.weights == d.weights else replace(d, weights=self.weights)


def available_bytes(device: LocalDevice) -> int:
    """Memory free for this run now: the GPU's free memory plus the blocks PyTorch's caching allocator holds
    but no tensor uses (mem_get_info counts those as taken), or the host's MemAvailable."""
    if device.kind == "cuda":
        return torch.cuda.mem_get_info()[0] + torch.cuda.memory_reserved() - torch.cuda.memory_allocated()
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return device.memory_bytes // 2


def combo_skip_reason(plan: RunPlan, device: LocalDevice, batch: int, context: int) -> str | None:
    """Why a (batch, context) cannot be measured here, checked before anything is allocated: on Linux a
    host allocation beyond RAM can succeed and then get the process killed when it is filled."""
    return memory_skip_reason(input_set_bytes(plan, batch, context), device)


def input_set_bytes(plan: RunPlan, batch: int, context: int) -> int:
    """The largest case's one input set (a layer with its KV cache, or the LM head) plus its float64 copy."""
    m = plan.model
    elements = max(max(m.layer_params, m.largest_layer_params) + 2 * batch * context * m.kv_size
                   + 4 * batch * m.hidden, m.vocab * m.hidden)
    return elements * (ELEMENT_BYTES[plan.dtype] + 8)


def memory_skip_reason(need: int, device: LocalDevice, processes: int = 1) -> str | None:
    """Why `processes` processes each holding `need` bytes cannot run here now, or None when they can."""
    return fit_reason(need, available_bytes(device), processes)


def time_case(case: OpCase, backend: str, device: LocalDevice, plan: RunPlan) -> dict:
    """Time one verified implementation; returns the timing fields of its row."""
    input_sets, flusher, per_set = rotated_inputs(case.make_inputs, device)
    sets_n = len(input_sets)
    fn = case.impls[backend]
    timer_name, energy = "cpu-perf-counter", {}
    if device.kind == "cuda":
        timer_name = "cuda-graph" if plan.cuda_graph else "cuda-events"
        timing = None
        if plan.cuda_graph:
            try:
                timing = time_cuda_graph(fn, input_sets, plan.budget_s, flusher)
            except RuntimeError as exc:
                if is_oom(exc):
                    raise
                timer_name = f"cuda-events (graph capture failed: {str(exc).splitlines()[0][:120]})"
        if timing is None:
            timing = time_cuda(fn, input_sets, plan.budget_s, flusher)
        energy = board_energy(fn, input_sets, case.name, timing.summary().get("seconds_p50"), plan.energy)
    else:
        timing = time_cpu(fn, input_sets, plan.budget_s, flusher)
    return {**timing.summary(), "timer": timer_name, "rotation_sets": sets_n, "set_bytes": per_set, **energy}


# Rows whose energy is read: those the decode step's J/token is composed of (each window costs >= 1 s).
METERED_OPS = ("layer", "final_norm", "lm_head", "model", "mixed_layer", "prefill_layer")
# With --energy steps only rows that are a whole step on their own (the --full-model row) get a window.
WHOLE_STEP_OPS = ("model",)


def energy_skip_note(op: str, mode: str = "rows") -> str | None:
    """Why this row gets no NVML window under --energy `mode`, or None when it gets one."""
    if mode == "off":
        return "not metered (--energy off)"
    if mode == "steps" and op not in WHOLE_STEP_OPS:
        return "not metered (--energy steps: whole steps only)"
    if op not in METERED_OPS:
        return "not metered (per-op row)"
    return None


def board_energy(fn, input_sets: list, op: str, seconds_per_call: float | None, mode: str = "rows") -> dict:
    """The board's energy per call over its own >= 1 s window of back-to-back calls (bench.measure.energy), or why
    there is none. Back-to-back, without the timing's cache flush: the energy of the call itself."""
    from bench.measure import energy
    note = energy_skip_note(op, mode) or ("not metered (no window)" if energy.MIN_WINDOW_S <= 0 else None)
    if note:
        return {"board_joules_per_call": None, "board_energy_note": note}
    # calls per counter read: about 2 ms of work between host syncs, so the board stays busy in the window
    per_sync = max(1, min(1000, int(2e-3 / seconds_per_call))) if seconds_per_call else 1
    state = {"i": 0}

    def call():
        for _ in range(per_sync):
            fn(input_sets[state["i"] % len(input_sets)])
            state["i"] += 1
        torch.cuda.synchronize()

    reading = energy.board_window(call, torch.cuda.current_device())
    if reading.joules is None:
        return {"board_joules_per_call": None, "board_energy_note": reading.reason}
    calls = reading.calls * per_sync
    return {"board_joules_per_call": reading.joules / calls, "board_watts": reading.watts,
            "board_energy_window_s": reading.seconds, "board_energy_calls": calls}


def measure(case: OpCase, backend: str, device: LocalDevice, plan: RunPlan, batch: int, context: int,
            row_type: type = MeasuredRow) -> MeasuredRow:
    """Verify, then time: the row for one op, batch, context and backend. A failed check is never timed."""
    row = row_type.build(op=case.name, kind=case.kind, batch=batch, context=context, backend=backend,
                         dtype=plan.dtype, flops=case.flops, bytes=case.bytes, shape=case.shape)
    try:
        check = check_case(case, backend, plan.dtype)
        row.set(**check.to_dict())
        if not check.ok:
            return row
        timeable, why = case.timing_support(device) if case.timing_support else (True, "")
        if not timeable:  # checked here (a CPU runs FP8 GEMMs in emulation), but its speed would mean nothing
            row.set(valid=False, skipped=f"verified, not timed: {why}")
            return row
        if "triton" in backend and device.kind == "cuda":
            from kernels.triton._common import record_configs

            with record_configs() as chosen:  # the autotuner's choice for each GEMM of this row
                row.set(**time_case(case, backend, device, plan))
            if chosen:
                row.set(triton_configs=chosen)
        else:
            row.set(**time_case(case, backend, device, plan))
    except Exception as exc:
        if not is_oom(exc):
            raise
        if device.kind == "cuda":
            torch.cuda.empty_cache()
        row.set(valid=False, skipped=f"out of memory: {str(exc).splitlines()[0][:200]}")
        return row
    if case.kind == "gemm" and device.kind == "cpu":  # which library path the CPU chooser took (None: not torch)
        row.set(cpu_gemm_path=chosen_path(**case.shape, dtype=torch_dtype(plan.dtype)))
    row.set(**roofline.derive(case.flops, case.bytes, row.seconds_p50, plan.dtype, device.spec,
                              plan.ceilings.copy_bw, plan.ceilings.peak_flops))
    return row


def skipped_row(case: OpCase, backend: str, batch: int, why: str, **labels) -> MeasuredRow:
    """The row of a case not measured because its inputs do not fit here."""
    return MeasuredRow.build(op=case.name, kind=case.kind, batch=batch, backend=backend, valid=False, skipped=why,
                             **labels)


def cases_for(plan: RunPlan, device: LocalDevice, batch: int, context: int) -> list[OpCase]:
    if uses_spec_layers(plan.model.spec):  # layers built from the config's layer types (bench/sweeps/spec_steps.py)
        return spec_steps.decode_cases(plan, device, batch, context)
    d = plan.model.layer_dims
    dtype = torch_dtype(plan.dtype)
    ops = op_cases(d, batch, context, dtype, device.torch_device, plan.backends)
    if not plan.per_op:
        ops = [c for c in ops if c.name in ("final_norm", "lm_head")]
    cases = ops + [layer_case(d, batch, context, dtype, device.torch_device, plan.backends)]
    if plan.full_model:
        cases.append(model_case(d, plan.model.layers, batch, context, dtype, device.torch_device, plan.backends))
    return cases


def verify_sweep(plan: RunPlan, device: LocalDevice):
    """`tokenbench verify`: every op and the layer at every (batch, context), each backend checked once
    against the float64 reference on fresh inputs, nothing timed. Yields (case, batch, context, backend,
    check) as each check ends."""
    for batch in plan.batches:
        for context in plan.contexts:
            for case in cases_for(plan, device, batch, context):
                for backend in plan.backends:
                    yield case, batch, context, backend, check_case(case, backend, plan.dtype)


def full_model_fits(plan: RunPlan, device: LocalDevice, batch: int, context: int) -> str | None:
    """Why the whole model cannot be built for --full-model here, or None when it can."""
    m = plan.model
    need = m.decode_weight_bytes(plan.dtype) + m.kv_cache_bytes(batch, context, plan.dtype)
    # the gate's float64 reference holds one more layer (weights and cache) at 8 bytes per element
    per_layer = (m.layer_params + 2 * batch * context * m.kv_size) * 8
    have = torch.cuda.mem_get_info()[0] if device.kind == "cuda" else device.memory_bytes // 2
    if need + per_layer > 0.85 * have:
        return f"whole model needs {(need + per_layer) / 2**30:.1f} GiB, {have / 2**30:.1f} GiB available"
    return None


def derive_step(plan: RunPlan, device: LocalDevice, rows: list, batch: int, context: int, backend: str,
                economics: Callable[[float], dict]) -> Step:
    """The model's decode step as layers x layer + final_norm + lm_head, from this sweep's rows."""
    m = plan.model
    by_op = {r.op: r for r in rows if r.batch == batch and r.context == context and r.backend == backend}
    needed = ("layer", *MODEL_OPS)
    step = Step.build(batch=batch, context=context, backend=backend, dtype=plan.dtype, layers=m.layers,
                      derived=True, derivation=DECODE_DERIVATION)
    bytes_needed = m.weight_bytes(plan.dtype) + m.kv_cache_bytes(batch, context, plan.dtype)
    step.set(fits=bytes_needed <= device.memory_bytes, bytes_needed=bytes_needed, memory_bytes=device.memory_bytes)
    missing = [op for op in needed if op not in by_op or not by_op[op].seconds_p50]
    if missing:
        step.set(valid=False, reason=f"no valid timing for {', '.join(missing)}")
        return step
    seconds, flops, nbytes = (compose_ops(m.layers, by_op, f) for f in ("seconds_p50", "flops", "bytes"))
    rates = decode_rates(batch, seconds)
    step.set(valid=True, step_seconds=seconds, layer_seconds=by_op["layer"].seconds_p50, **rates, flops=flops,
             bytes=nbytes)
    step.set(**roofline.derive(flops, nbytes, seconds, plan.dtype, device.spec,
                               plan.ceilings.copy_bw, plan.ceilings.peak_flops))
    step.set(board_joules_per_token=step_board_joules_per_token(
        {op: r.board_joules_per_call for op, r in by_op.items()}, m.layers, batch))
    measured = by_op["model"].seconds_p50 if "model" in by_op else None
    if measured:
        step.set(measured_step_seconds=measured, derived_over_measured=seconds / measured)
    price_step(step, rates["tokens_per_s"], economics, bytes_needed, device)
    return step


def derive_steps(plan: RunPlan, device: LocalDevice, rows: list, batch: int, context: int, backend: str,
                 economics: Callable[[float], dict]) -> list[Step]:
    """The decode step(s) of a (batch, context, backend): one for a dense Llama-shaped model (derive_step), one
    per routing distribution for a model of several layer types (bench/sweeps/spec_steps.py)."""
    if not uses_spec_layers(plan.model.spec):
        return [derive_step(plan, device, rows, batch, context, backend, economics)]
    m = plan.model
    mine = [r for r in rows if r.batch == batch and r.context == context and r.backend == backend]
    base = {"batch": batch, "context": context, "backend": backend, "dtype": plan.dtype, "layers": m.layers,
            "derived": True}
    bytes_needed = m.weight_bytes(plan.dtype) + m.kv_cache_bytes(batch, context, plan.dtype)
    return spec_steps.derive_steps(plan, device, mine, base, batch, lambda s: batch / s, economics, bytes_needed,
                                   price_step)


def price_step(step: Step, tokens_per_s: float, economics, bytes_needed: int, device: LocalDevice,
               per: str = "") -> None:
    """$/M and tokens/s per MW at the step's token rate where it fits in memory; else none, and why (`per`:
    " per GPU" where the memory is one rank's)."""
    if step.fits:
        step.set(**economics(tokens_per_s))
    else:
        step.set(cost_per_mtok=None, tokens_per_s_per_mw=None,
                 cost_note=f"needs {bytes_needed / 2**30:.1f} GiB{per}, device has "
                           f"{device.memory_bytes / 2**30:.1f}")


def combos(plan: RunPlan):
    for batch in plan.batches:
        for context in plan.contexts:
            yield batch, context


class DecodeSweep(SweepPlan):
    """`tokenbench run --phase decode`: per (batch, context) and backend, every op and the layer (and the whole
    model with --full-model), then the decode step. Its record, ceilings and finish are measured_run's."""

    def __init__(self, plan: RunPlan, device: LocalDevice, economics, console):
        self.plan, self.device, self.economics, self.console = plan, device, economics, console

    def total(self) -> int:
        per_combo = len(cases_for(self.plan, self.device, 1, 1))
        return len(list(combos(self.plan))) * per_combo * len(self.plan.backends)

    def groups(self):
        plan, device = self.plan, self.device
        for batch, context in combos(plan):
            cases = cases_for(plan, device, batch, context)
            too_big = combo_skip_reason(plan, device, batch, context)
            for i, backend in enumerate(plan.backends):
                yield Group(f"b={batch} ctx={context}", [self._case(c, backend, batch, context) for c in cases],
                            key=(batch, context, backend), skip=too_big, say_skip=i == 0)

    def _case(self, case: OpCase, backend: str, batch: int, context: int) -> Case:
        plan, device = self.plan, self.device
        label = f"b={batch} ctx={context} {backend} {case.name}"

        def run(phase):
            if case.name == "model" and (why := full_model_fits(plan, device, batch, context)):
                return [MeasuredRow.build(op="model", kind="model", batch=batch, context=context, backend=backend,
                                          valid=False, skipped=why)]
            return [measure(case, backend, device, plan, batch, context)]

        return Case(label, run, lambda why: [skipped_row(case, backend, batch, why, context=context)])

    def derive(self, group: Group, rows: list) -> list:
        batch, context, backend = group.key
        return derive_steps(self.plan, self.device, rows, batch, context, backend, self.economics)

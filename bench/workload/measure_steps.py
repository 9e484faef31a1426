"""Measure the steps a workload's points need (bench/workload/compose.py says which), as a plan for the
measuring engine (bench/sweeps/engine.py), through the same gate and timers as `tokenbench run`: every layer
and tail op checked against float64 on fresh random inputs, then timed; a model step = layers x layer +
final_norm + lm_head (the LM head over every row that emits a token: the decode rows, plus each prompt
chunk's last token)."""
from __future__ import annotations

from bench.sweeps.decode_sweep import RunPlan, available_bytes, measure
from bench.sweeps.engine import Case, Group, SweepPlan, fit_reason
from bench.workload.compose import StepKey, WorkloadStep
from costmodel.step import MODEL_OPS, compose
from kernels.dtypes import ELEMENT_BYTES, torch_dtype
from kernels.layer import layer_case
from kernels.layer import op_cases as decode_op_cases
from kernels.prefill_layer import Chunk, mixed_layer_case, prefill_layer_case

TAIL_OPS = MODEL_OPS  # final_norm, lm_head: run once per step, after every layer


def _layer_cases(plan: RunPlan, device, key: StepKey) -> list[tuple]:
    """(case, labels) for the layer(s) of one step: a prefill step has one layer per chunk position."""
    d, dtype, dev = plan.layer_dims(), torch_dtype(plan.dtype), device.torch_device
    if key.phase == "decode":
        return [(layer_case(d, key.batch, key.context, dtype, dev, plan.backends), {})]
    if key.phase == "mixed":
        c = Chunk(key.chunk_seqs, key.chunk_tokens, key.prefix)
        return [(mixed_layer_case(d, key.batch, key.context, c, dtype, dev, plan.backends), {})]
    out = []
    for index, start in enumerate(range(0, key.context, key.chunk)):
        c = Chunk(key.batch, min(key.chunk, key.context - start), start)
        out.append((prefill_layer_case(d, c, dtype, dev, plan.backends),
                    {"chunk_index": index, "chunk_tokens": c.tokens, "chunk_prefix": start}))
    return out


def tail_rows(key: StepKey) -> int:
    """Rows through final_norm and the LM head: every sequence that emits a token this step."""
    return key.batch + (key.chunk_seqs if key.phase == "mixed" else 0)


def _tail_cases(plan: RunPlan, device, rows: int) -> list:
    d, dtype = plan.layer_dims(), torch_dtype(plan.dtype)
    return [c for c in decode_op_cases(d, rows, 1, dtype, device.torch_device, plan.backends) if c.name in TAIL_OPS]


def set_bytes(plan: RunPlan, key: StepKey) -> int:
    """One input set of the step's largest case and its float64 reference copy (what the gate holds)."""
    m = plan.model
    d = m.layer_dims
    rows = key.batch if key.phase == "decode" else (
        key.batch + key.chunk_seqs * key.chunk_tokens if key.phase == "mixed" else key.batch * min(key.chunk, key.context))
    kv_tokens = key.batch * key.context + (key.chunk_seqs * (key.prefix + key.chunk_tokens) if key.phase == "mixed" else 0)
    activations = rows * (4 * m.hidden + d.q_size + 2 * d.kv_size + 3 * m.ffn + d.q_size)
    elements = max(m.layer_params + 2 * kv_tokens * m.kv_size + activations, m.vocab * m.hidden)
    return elements * (ELEMENT_BYTES[plan.dtype] + 8)


def skip_reason(plan: RunPlan, device, key: StepKey) -> str | None:
    return fit_reason(set_bytes(plan, key), available_bytes(device))


def key_labels(key: StepKey) -> dict:
    """The fields a row carries to say which workload step it belongs to."""
    out = {"phase": key.phase, "step_batch": key.batch, "step_context": key.context}
    if key.phase == "mixed":
        out.update(chunk_seqs=key.chunk_seqs, chunk_tokens=key.chunk_tokens, prefix=key.prefix)
    if key.phase == "prefill":
        out.update(prompt=key.context, chunk=key.chunk)
    return out


def step_from_rows(plan: RunPlan, key: StepKey, layer_rows: list, tail: dict) -> WorkloadStep:
    """layers x (sum of the step's layer rows) + final_norm + lm_head (costmodel.step.compose), or why it
    cannot be composed."""
    bad = [r.op for r in layer_rows if not r.seconds_p50]
    bad += [op for op in TAIL_OPS if op not in tail or not tail[op].seconds_p50]
    if bad:
        return WorkloadStep(key, None, reason=f"no valid timing for {', '.join(bad)}")
    layers = plan.model.layers
    layer_s = sum(r.seconds_p50 for r in layer_rows)
    seconds = compose(layers, layer_s, *(tail[op].seconds_p50 for op in TAIL_OPS))
    flops = compose(layers, sum(r.flops for r in layer_rows), *(tail[op].flops for op in TAIL_OPS))
    nbytes = compose(layers, sum(r.bytes for r in layer_rows), *(tail[op].bytes for op in TAIL_OPS))
    # board energy composed like the time, where every part had its own metered window (GPU, NVML)
    parts = [r.board_joules_per_call for r in layer_rows] + [tail[op].board_joules_per_call for op in TAIL_OPS]
    joules = None
    if all(j is not None and j > 0 for j in parts):
        joules = compose(layers, sum(parts[:len(layer_rows)]), *parts[len(layer_rows):])
    return WorkloadStep(key, seconds, flops, nbytes, layer_s, board_joules=joules)


class StepSweep(SweepPlan):
    """Every case the workload's steps (`keys`) need, on one backend: per key its layer(s), and the tail ops
    at its token-emitting rows the first time that row count comes up; then the key's step. `steps` holds
    the composed steps by key as they come (what the points are composed from)."""

    def __init__(self, plan: RunPlan, device, keys: list[StepKey], backend: str, console):
        self.plan, self.device, self.keys, self.backend, self.console = plan, device, keys, backend, console
        self.steps: dict = {}
        self.tails: dict[int, dict] = {}  # token-emitting rows -> the tail rows measured at them, by op
        self.tail_cases: dict[int, list] = {}  # token-emitting rows -> the tail ops' cases
        self.layer_cases: dict = {}  # key -> its layers' cases (the whole-step energy window runs them again)

    def total(self) -> int:
        seen, n = set(), 0
        for key in self.keys:
            n += len(_layer_cases(self.plan, self.device, key))
            if tail_rows(key) not in seen:
                seen.add(tail_rows(key))
                n += len(TAIL_OPS)
        return n

    def groups(self):
        plan, device, backend = self.plan, self.device, self.backend
        for key in self.keys:
            why = skip_reason(plan, device, key)
            if why:
                yield Group(_where(key), [], key=key, skip=why)
                continue
            cases, self.layer_cases[key] = [], _layer_cases(plan, device, key)
            for case, extra in self.layer_cases[key]:
                label = f"{_where(key)} {case.name}" + (f" chunk {extra['chunk_index']}" if extra else "")
                cases.append(Case(label, lambda phase, case=case, extra=extra: [self._layer_row(key, case, extra)]))
            rows = tail_rows(key)
            if rows not in self.tails:
                self.tails[rows], self.tail_cases[rows] = {}, _tail_cases(plan, device, rows)
                cases += [Case(f"{case.name} at {rows} rows",
                               lambda phase, case=case, rows=rows: [self._tail_row(case, rows)])
                          for case in self.tail_cases[rows]]
            yield Group(_where(key), cases, key=key)

    def _layer_row(self, key: StepKey, case, extra: dict):
        row = measure(case, self.backend, self.device, self.plan, key.batch, key.context)
        row.set(**key_labels(key), **extra)
        return row

    def _tail_row(self, case, rows: int):
        row = measure(case, self.backend, self.device, self.plan, rows, 1)
        row.set(phase="tail", rows=rows)
        self.tails[rows][case.name] = row
        return row

    def derive(self, group: Group, rows: list) -> list:
        key = group.key
        if group.skip:
            step = WorkloadStep(key, None, reason=group.skip)
        else:
            step = step_from_rows(self.plan, key, [r for r in rows if r.phase != "tail"], self.tails[tail_rows(key)])
            if self.plan.energy == "steps" and self.device.kind == "cuda" and step.seconds is not None:
                step = with_step_energy(self.plan, step, [c for c, _ in self.layer_cases[key]],
                                        self.tail_cases[tail_rows(key)], self.backend)
            if step.seconds is None:
                self.warn(f"{key.phase} b={key.batch} ctx={key.context}: {step.reason}")
        self.steps[key] = step
        return [step]


def with_step_energy(plan: RunPlan, step: WorkloadStep, layer_cases: list, tail_cases: list,
                     backend: str) -> WorkloadStep:
    """The step with its board joules from one window over the whole step (bench/workload/step_energy.py)."""
    from dataclasses import replace

    from bench.workload.step_energy import step_board_joules

    joules, why = step_board_joules(layer_cases, tail_cases, plan.model.layers, backend, plan.cuda_graph)
    return replace(step, board_joules=joules, energy_note=why or "")


def _where(key: StepKey) -> str:
    if key.phase == "decode":
        return f"decode b={key.batch} ctx={key.context}"
    if key.phase == "mixed":
        return (f"mixed b={key.batch} ctx={key.context} + {key.chunk_seqs}x{key.chunk_tokens} prompt tokens "
                f"@{key.prefix}")
    return f"prefill {key.batch}x{key.context} in chunks of {key.chunk}"

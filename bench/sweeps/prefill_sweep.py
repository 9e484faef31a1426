"""The prefill and mixed phases of `tokenbench run`: the compute-bound half of a token's cost.

prefill: each prompt of L tokens (for `batch` sequences at once) runs in chunks of at most `chunk` tokens,
each chunk continuing the cache the earlier ones filled. Every chunk position's layer is measured (its
attention grows with the prefix), and the step is
    prefill step = layers x sum over chunks of the prefill layer + final_norm + lm_head (last token only),
which is also the time to first token of one prompt on an idle device (no queueing).
mixed: what a chunked-prefill engine runs each step: `batch` decode sequences at `context` plus one prompt
chunk of `chunk` tokens continuing a prefix of `prefix`, through shared projections at M = batch + chunk;
    mixed step = layers x mixed layer + final_norm + lm_head (batch + 1 rows: every decode token and the
    chunk's last token).
Rows and steps carry `phase`; the GEMMs here are read against the measured matmul peak (compute-bound).
"""
from __future__ import annotations

from dataclasses import dataclass

from bench.derive import roofline
from costmodel.step import MODEL_OPS, compose, decode_rates
from bench.records.schema import Step
from bench.sweeps.decode_sweep import RunPlan, available_bytes, measure, price_step, skipped_row
from bench.sweeps.engine import Case, Group, SweepPlan, fit_reason
from bench.sweeps import spec_steps
from kernels.dtypes import ELEMENT_BYTES, torch_dtype
from kernels.spec_model import uses_spec_layers
from kernels.layer import op_cases as decode_op_cases
from kernels.prefill_layer import (Chunk, mixed_layer_case, mixed_op_shapes, op_cases, prefill_layer_case,
                                   prefill_op_shapes)


@dataclass(frozen=True)
class PrefillPoint:
    batch: int  # sequences whose prompts run together
    prompt: int  # L tokens each
    chunk: int  # at most this many tokens per chunk

    def chunks(self) -> list[Chunk]:
        return [Chunk(self.batch, min(self.chunk, self.prompt - start), start)
                for start in range(0, self.prompt, self.chunk)]


@dataclass(frozen=True)
class MixedPoint:
    batch: int  # decode sequences
    context: int
    chunk: int  # prompt tokens in the step
    prefix: int = 0


def prefill_points(batches, prompts, chunk: int | None) -> list[PrefillPoint]:
    return [PrefillPoint(b, p, min(chunk or p, p)) for b in batches for p in prompts]


def mixed_points(batches, contexts, chunks, prefix: int) -> list[MixedPoint]:
    return [MixedPoint(b, c, t, prefix) for b in batches for c in contexts for t in chunks]


def _one_set_bytes(plan: RunPlan, rows: int, kv_tokens: int) -> int:
    """One input set of the largest case (the layer with its caches and activations) and its float64 copy."""
    m = plan.model
    d = m.layer_dims
    activations = rows * (4 * m.hidden + d.q_size + 2 * d.kv_size + 3 * m.ffn + d.q_size)
    elements = max(max(m.layer_params, m.largest_layer_params) + 2 * kv_tokens * m.kv_size + activations,
                   m.vocab * m.hidden)
    return elements * (ELEMENT_BYTES[plan.dtype] + 8)


def skip_reason(plan: RunPlan, device, point) -> str | None:
    if isinstance(point, PrefillPoint):
        need = _one_set_bytes(plan, point.batch * point.chunk, point.batch * point.prompt)
    else:
        need = _one_set_bytes(plan, point.batch + point.chunk,
                              point.batch * point.context + point.prefix + point.chunk)
    return fit_reason(need, available_bytes(device))


def _model_ops(plan: RunPlan, device, rows: int) -> list:
    d, dtype = plan.model.layer_dims, torch_dtype(plan.dtype)
    cases = decode_op_cases(d, rows, 1, dtype, device.torch_device, plan.backends)
    return [c for c in cases if c.name in ("final_norm", "lm_head")]


def cases_for_point(plan: RunPlan, device, point) -> list[tuple]:
    """(case, labels) for every op and layer of a point; labels are the row's phase fields."""
    if uses_spec_layers(plan.model.spec):
        return spec_cases_for_point(plan, device, point)
    d, dtype, dev = plan.model.layer_dims, torch_dtype(plan.dtype), device.torch_device
    out = []
    if isinstance(point, PrefillPoint):
        base = {"phase": "prefill", "prompt": point.prompt, "chunk": point.chunk}
        for index, c in enumerate(point.chunks()):
            labels = {**base, "chunk_index": index, "chunk_tokens": c.tokens, "prefix": c.prefix}
            if plan.per_op:
                out += [(case, labels) for case in op_cases(d, prefill_op_shapes(d, c), dtype, dev, plan.backends)]
            out.append((prefill_layer_case(d, c, dtype, dev, plan.backends), labels))
        out += [(case, {**base, "rows": point.batch}) for case in _model_ops(plan, device, point.batch)]
    else:
        c = Chunk(1, point.chunk, point.prefix)
        labels = {"phase": "mixed", "chunk": point.chunk, "prefix": point.prefix}
        if plan.per_op:
            shapes = mixed_op_shapes(d, point.batch, point.context, c)
            out += [(case, labels) for case in op_cases(d, shapes, dtype, dev, plan.backends)]
        out.append((mixed_layer_case(d, point.batch, point.context, c, dtype, dev, plan.backends), labels))
        out += [(case, {**labels, "rows": point.batch + 1}) for case in _model_ops(plan, device, point.batch + 1)]
    return out


def spec_cases_for_point(plan: RunPlan, device, point) -> list[tuple]:
    """cases_for_point for a model of several layer types (bench/sweeps/spec_steps.py): the same labels."""
    out = []
    if isinstance(point, PrefillPoint):
        base = {"phase": "prefill", "prompt": point.prompt, "chunk": point.chunk}
        for index, c in enumerate(point.chunks()):
            labels = {**base, "chunk_index": index, "chunk_tokens": c.tokens, "prefix": c.prefix}
            out += [(case, labels) for case in spec_steps.prefill_chunk_cases(plan, device, c)]
        return out + [(case, {**base, "rows": point.batch})
                      for case in spec_steps.model_cases(plan, device, point.batch)]
    labels = {"phase": "mixed", "chunk": point.chunk, "prefix": point.prefix}
    c = Chunk(1, point.chunk, point.prefix)
    out += [(case, labels) for case in spec_steps.mixed_cases(plan, device, point.batch, point.context, c)]
    return out + [(case, {**labels, "rows": point.batch + 1})
                  for case in spec_steps.model_cases(plan, device, point.batch + 1)]


def derive_point_steps(plan: RunPlan, device, rows: list, point, backend: str, economics) -> list[Step]:
    """derive_point_step, or for a model of several layer types one step per routing (bench/sweeps/spec_steps)."""
    if not uses_spec_layers(plan.model.spec):
        return [derive_point_step(plan, device, rows, point, backend, economics)]
    m = plan.model
    prefill = isinstance(point, PrefillPoint)
    base = {"phase": "prefill" if prefill else "mixed", "batch": point.batch, "backend": backend,
            "dtype": plan.dtype, "layers": m.layers, "derived": True}
    if prefill:
        base.update(prompt=point.prompt, chunk=point.chunk, chunks=len(point.chunks()), context=point.prompt)
        kv_tokens = tokens = point.batch * point.prompt
        rate = tokens
    else:
        base.update(context=point.context, chunk=point.chunk, prefix=point.prefix)
        kv_tokens, tokens = point.batch * (point.context + 1) + point.prefix + point.chunk, point.batch
        rate = point.batch + point.chunk  # priced over decode + prompt tokens, as derive_point_step
    bytes_needed = m.weight_bytes(plan.dtype) + m.kv_bytes_per_token(plan.dtype) * kv_tokens
    steps = spec_steps.derive_steps(plan, device, rows, base, tokens, lambda s: rate / s, economics, bytes_needed,
                                    price_step)
    for step in steps:
        if step.valid and prefill:
            step.set(prompt_tokens_per_s=step.tokens_per_s, time_to_first_token_s=step.step_seconds,
                     tokens_per_s_per_user=None)
        elif step.valid:
            step.set(prompt_tokens_per_s=point.chunk / step.step_seconds,
                     total_tokens_per_s=(point.batch + point.chunk) / step.step_seconds)
    return steps


def measure_point_case(case, labels: dict, backend: str, device, plan: RunPlan, point):
    context = point.prompt if isinstance(point, PrefillPoint) else point.context
    row = measure(case, backend, device, plan, point.batch, context)
    row.set(**labels)
    return row


def derive_point_step(plan: RunPlan, device, rows: list, point, backend: str, economics) -> Step:
    """The model's prefill (or mixed) step from the point's rows, with tokens/s and time to first token."""
    m = plan.model
    prefill = isinstance(point, PrefillPoint)
    layer_name = "prefill_layer" if prefill else "mixed_layer"
    layers = [r for r in rows if r.op == layer_name]
    model_ops = {r.op: r for r in rows if r.op in ("final_norm", "lm_head")}
    step = Step.build(phase="prefill" if prefill else "mixed", batch=point.batch, backend=backend, dtype=plan.dtype,
                      layers=m.layers, derived=True)
    if prefill:
        expected = len(point.chunks())
        step.set(prompt=point.prompt, chunk=point.chunk, chunks=expected, context=point.prompt,
                 derivation="layers x sum over chunks of the prefill layer + final_norm + lm_head (last token)")
        kv_tokens = point.batch * point.prompt
    else:
        expected = 1
        step.set(context=point.context, chunk=point.chunk, prefix=point.prefix,
                 derivation="layers x mixed layer + final_norm + lm_head (decode tokens and the chunk's last)")
        kv_tokens = point.batch * (point.context + 1) + point.prefix + point.chunk
    bytes_needed = m.weight_bytes(plan.dtype) + m.kv_bytes_per_token(plan.dtype) * kv_tokens
    step.set(fits=bytes_needed <= device.memory_bytes, bytes_needed=bytes_needed, memory_bytes=device.memory_bytes)
    timed = [r for r in layers if r.seconds_p50]
    missing = [op for op in ("final_norm", "lm_head") if op not in model_ops or not model_ops[op].seconds_p50]
    if len(timed) != expected or missing:
        step.set(valid=False, reason=f"no valid timing for "
                                     f"{', '.join(missing + ([layer_name] if len(timed) != expected else []))}")
        return step
    layer_s = sum(r.seconds_p50 for r in timed)
    seconds = compose(m.layers, layer_s, *(model_ops[op].seconds_p50 for op in MODEL_OPS))
    flops = compose(m.layers, sum(r.flops for r in timed), *(model_ops[op].flops for op in MODEL_OPS))
    nbytes = compose(m.layers, sum(r.bytes for r in timed), *(model_ops[op].bytes for op in MODEL_OPS))
    step.set(valid=True, step_seconds=seconds, layer_seconds=layer_s, flops=flops, bytes=nbytes)
    if prefill:
        prompt_tps = point.batch * point.prompt / seconds
        step.set(prompt_tokens_per_s=prompt_tps, time_to_first_token_s=seconds, tokens_per_s=prompt_tps)
        price_rate = prompt_tps
    else:
        rates, prompt_tps = decode_rates(point.batch, seconds), point.chunk / seconds
        step.set(**rates, prompt_tokens_per_s=prompt_tps, total_tokens_per_s=rates["tokens_per_s"] + prompt_tps)
        price_rate = rates["tokens_per_s"] + prompt_tps
    step.set(**roofline.derive(flops, nbytes, seconds, plan.dtype, device.spec,
                               plan.ceilings.copy_bw, plan.ceilings.peak_flops))
    # priced over every token the step processes (prompt tokens for prefill; decode + prompt for mixed)
    price_step(step, price_rate, economics, bytes_needed, device)
    return step


def gemm_share_of_peak(rows: list, measured_peak_flops: float | None) -> float | None:
    """The prefill GEMM rows' achieved FLOP/s together (their FLOPs over their time) as a fraction of the
    matmul peak `tokenbench peak` measured on this device: the issue's ">= 60% of the measured peak"."""
    # the layer's projections at every chunk position (not the LM head on the last token)
    gemms = [r for r in rows if r.kind == "gemm" and r.phase == "prefill" and r.chunk_index is not None
             and r.seconds_p50]
    if not gemms or not measured_peak_flops:
        return None
    return sum(r.flops for r in gemms) / sum(r.seconds_p50 for r in gemms) / measured_peak_flops


def point_label(p) -> str:
    if isinstance(p, PrefillPoint):
        return f"b={p.batch} prompt={p.prompt} chunk={p.chunk}"
    return f"b={p.batch} ctx={p.context} chunk={p.chunk}" + (f" prefix={p.prefix}" if p.prefix else "")


class PhaseSweep(SweepPlan):
    """`tokenbench run --phase prefill|mixed`: per point and backend, every op and layer (each chunk position
    of a prefill), then the point's step. Its record, ceilings and finish are measured_run's."""

    def __init__(self, plan: RunPlan, device, economics, console):
        self.plan, self.device, self.economics, self.console = plan, device, economics, console
        self.work = [(p, cases_for_point(plan, device, p)) for p in plan.points]

    def total(self) -> int:
        return sum(len(cases) for _, cases in self.work) * len(self.plan.backends)

    def groups(self):
        for point, cases in self.work:
            too_big = skip_reason(self.plan, self.device, point)
            for i, backend in enumerate(self.plan.backends):
                yield Group(point_label(point), [self._case(point, c, labels, backend) for c, labels in cases],
                            key=(point, backend), skip=too_big, say_skip=i == 0)

    def _case(self, point, case, labels: dict, backend: str) -> Case:
        where = f"{point_label(point)} {backend} {case.name}" + (
            f" [chunk {labels['chunk_index']}]" if "chunk_index" in labels else "")
        context = getattr(point, "context", getattr(point, "prompt", 0))
        return Case(where, lambda phase: [measure_point_case(case, labels, backend, self.device, self.plan, point)],
                    lambda why: [skipped_row(case, backend, point.batch, why, context=context, **labels)])

    def derive(self, group: Group, rows: list) -> list:
        point, backend = group.key
        return derive_point_steps(self.plan, self.device, rows, point, backend, self.economics)

    def finish(self, device, record, writer) -> None:
        if self.plan.phase == "prefill":
            record["prefill_gemm_share_of_measured_peak"] = gemm_share_of_peak(record["rows"],
                                                                               self.plan.ceilings.peak_flops)

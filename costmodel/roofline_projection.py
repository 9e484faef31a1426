"""`tokenbench project`: a measured run, carried onto hardware you do not have.

Assumption (stated in every projection's output): each op reaches on the target the same fraction of its
roofline bound as it reached where it was measured. For one op,
  bound(device)   = max(flops / peak FLOP/s for the run's dtype, bytes / memory bandwidth)
  efficiency      = bound(source) / measured seconds (p50)
  projected time  = bound(target, spec sheet) / efficiency
and a decode step = layers x layer + final_norm + lm_head, so tokens/s = batch / step time.
The source bound uses the source's spec sheet when the result file carries it, else the ceilings measured
on the same machine (tokenbench peak, copy bandwidth). Launch gaps, caches, kernel tuning for the target,
and interconnect are not modelled; a projection is a planning figure, not a measurement.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from costmodel.input_errors import CostInputError
from costmodel.ceilings import Ceilings, DeviceSpec, roofline_seconds
from costmodel.step import compose, decode_rates

# Bytes per element, to carry a run's byte counts to another dtype (fp4: two elements a byte).
BYTES_PER_ELEMENT = {"fp32": 4.0, "tf32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "fp4": 0.5}

# A GPU kernel launch costs a few microseconds (more without CUDA graphs: docs/sources.md cites 165 us gaps
# against 12 us decode GEMMs); a projected op shorter than this is set by launches, not by its roofline.
LAUNCH_SCALE_SECONDS = 5e-6

STEP_OPS_PER_LAYER = ("attn_norm", "qkv_proj", "rope", "kv_append", "attention", "o_proj", "ffn_norm",
                      "gate_up_proj", "swiglu", "down_proj")


@dataclass(frozen=True)
class Roof:
    """The two rates one side's bound divides by (TFLOP/s, GB/s; None where unknown), and where they came from."""

    tflops: float | None
    gbps: float | None
    basis: str

    def bound(self, flops: float, bytes_: float) -> float:
        return roofline_seconds(flops, bytes_, self.tflops, self.gbps)


def source_roof(ceilings: Ceilings, dtype: str) -> Roof:
    """Spec peaks of the measured device if the run carries them, else the ceilings measured there."""
    s_peak, s_bw = ceilings.spec_tflops, ceilings.spec_gbps
    if s_peak and s_bw:
        return Roof(s_peak, float(s_bw), "spec sheet of the measured device")
    peak, bw = s_peak or ceilings.measured_tflops, s_bw or ceilings.measured_gbps
    if not bw:
        raise CostInputError("cannot project: the run records neither a spec nor a measured memory bandwidth "
                             "for its device")
    parts = [f"{'spec' if s_peak else 'measured'} {dtype} peak" if peak else f"no {dtype} FLOP ceiling",
             f"{'spec' if s_bw else 'measured copy'} bandwidth"]
    return Roof(peak, float(bw), "ceilings of the measured device: " + ", ".join(parts))


def target_roof(target: DeviceSpec, dtype: str) -> Roof:
    peak = target.peak(dtype)
    if peak is None:
        raise CostInputError(f"cannot project onto {target.key}: its spec sheet gives no {dtype} peak")
    if not target.mem_bw_gbs:
        raise CostInputError(f"cannot project onto {target.key}: its spec sheet gives no memory bandwidth")
    return Roof(peak, float(target.mem_bw_gbs), f"spec sheet of {target.key}")


@dataclass(frozen=True)
class ProjectedOp:
    op: str
    batch: int
    context: int
    backend: str
    measured_seconds: float
    source_bound_seconds: float
    efficiency: float  # fraction of the source bound reached, capped at 1
    target_bound_seconds: float
    projected_seconds: float
    capped: bool


@dataclass(frozen=True)
class ProjectedStep:
    batch: int
    context: int
    backend: str
    step_seconds: float
    tokens_per_s: float
    tokens_per_s_per_user: float
    fits: bool | None
    source_step_seconds: float | None
    source_tokens_per_s: float | None
    composed_from: str  # "layer row" or "per-op rows"

    def to_dict(self) -> dict:
        """The step in a result file's step shape, labelled projected: what `compare` shows of the step it
        chose (costmodel.generation_compare.ComparedStep)."""
        return {"batch": self.batch, "context": self.context, "backend": self.backend,
                "step_seconds": self.step_seconds, "tokens_per_s": self.tokens_per_s,
                "tokens_per_s_per_user": self.tokens_per_s_per_user, "fits": self.fits is not False,
                "projected": True}


@dataclass
class Projection:
    source: str
    target: DeviceSpec
    dtype: str
    model: str
    source_basis: str
    target_basis: str
    ops: list[ProjectedOp]
    steps: list[ProjectedStep]
    notes: list[str] = field(default_factory=list)
    run_dtype: str | None = None  # set when the projection changes dtype (self.dtype is the target's)

    @property
    def assumption(self) -> str:
        text = (f"PROJECTION, not a measurement: each op is assumed to reach on {self.target.key} the same "
                f"fraction of its roofline bound (max of FLOPs / {self.dtype} peak, bytes / bandwidth; "
                f"{self.target_basis}) that it reached on {self.source} ({self.source_basis}). Launch gaps, "
                f"caches, kernel tuning and interconnect are not modelled.")
        if self.run_dtype and self.run_dtype != self.dtype:
            scale = BYTES_PER_ELEMENT[self.dtype] / BYTES_PER_ELEMENT[self.run_dtype]
            text += (f" Measured in {self.run_dtype}, projected as {self.dtype}: every byte count scaled by "
                     f"{scale:g} (all tensors assumed in the run dtype), FLOPs unchanged.")
        return text


def project_run(run, target: DeviceSpec, source: str = "the measured device",
                as_dtype: str | None = None) -> Projection:
    """Project every valid row and every complete step; `as_dtype` carries the run to another dtype
    (a CPU run measured in fp32, projected as bf16 serving on a GPU) by scaling its byte counts.

    `run` is a measured run record (bench.records.schema.RunRecord; costmodel reads it by attribute and never
    imports bench): dtype, layers, model_name, ceilings, and rows and steps with their figures."""
    run_dtype = run.dtype
    dtype = as_dtype or run_dtype
    for d in (run_dtype, dtype):
        if d not in BYTES_PER_ELEMENT:
            raise CostInputError(f"unknown dtype {d!r}; choose one of: {', '.join(BYTES_PER_ELEMENT)}")
    scale = BYTES_PER_ELEMENT[dtype] / BYTES_PER_ELEMENT[run_dtype]
    src, tgt = source_roof(run.ceilings or Ceilings(), run_dtype), target_roof(target, dtype)
    layers = run.layers
    if layers is None:
        raise CostInputError("cannot project: the run's model does not record its number of layers")

    ops: list[ProjectedOp] = []
    capped = 0
    for row in run.rows:
        if row.valid is False or not row.seconds_p50:
            continue  # a row that failed its correctness check measures nothing worth carrying over
        measured = float(row.seconds_p50)
        bound_src = src.bound(row.flops, row.bytes)
        eff = bound_src / measured
        over = eff > 1.0
        capped += over
        eff = min(eff, 1.0)  # faster than the bound means cache-resident data; never project past the roofline
        bound_tgt = tgt.bound(row.flops, row.bytes * scale)
        ops.append(ProjectedOp(row.op, row.batch, row.context, row.backend, measured, bound_src, eff,
                               bound_tgt, bound_tgt / eff, over))

    notes = []
    if capped:
        notes.append(f"{capped} op rows ran faster than their source bound (data in cache?); their efficiency "
                     f"was capped at 100%")
    tiny = sum(1 for p in ops if p.projected_seconds < LAUNCH_SCALE_SECONDS)
    if tiny:
        notes.append(f"{tiny} of {len(ops)} projected op rows take under {LAUNCH_SCALE_SECONDS * 1e6:g} us, the scale "
                     f"of one kernel launch: there launch gaps, not the roofline, set the time, so the projection "
                     f"is optimistic")
    if src.tflops is None:
        notes.append(f"no {run_dtype} FLOP ceiling for the measured device: its bound is the bandwidth floor only, "
                     f"which understates efficiency and so overstates projected time")

    source_steps = {(s.batch, s.context, s.backend): s for s in run.steps}
    by_point: dict[tuple, dict[str, ProjectedOp]] = {}
    for p in ops:
        by_point.setdefault((p.batch, p.context, p.backend), {})[p.op] = p
    steps = []
    for (batch, ctx, backend), table in sorted(by_point.items()):
        tail = [table.get("final_norm"), table.get("lm_head")]
        if None in tail:
            continue
        if "layer" in table:
            per_layer, how = table["layer"].projected_seconds, "layer row"
        elif all(op in table for op in STEP_OPS_PER_LAYER):
            per_layer, how = sum(table[op].projected_seconds for op in STEP_OPS_PER_LAYER), "per-op rows"
        else:
            continue
        step = compose(layers, per_layer, *(t.projected_seconds for t in tail))
        src_step = source_steps.get((batch, ctx, backend))
        fits = None
        if src_step is not None and src_step.bytes_needed and target.memory_gb:
            fits = src_step.bytes_needed * scale <= target.memory_gb * 1e9
        rates = decode_rates(batch, step)
        steps.append(ProjectedStep(batch, ctx, backend, step, rates["tokens_per_s"], rates["tokens_per_s_per_user"], fits,
                                   src_step.step_seconds if src_step else None,
                                   src_step.tokens_per_s if src_step else None, how))
    if not steps:
        raise CostInputError("cannot project: the run has no complete step (a layer row or all per-layer ops, "
                             "plus final_norm and lm_head) with a valid measurement")
    if any(s.fits is False for s in steps):
        notes.append(f"some operating points need more than the {target.memory_gb:g} GB of {target.key}: "
                     f"marked as not fitting")
    return Projection(source, target, dtype, run.model_name, src.basis, tgt.basis,
                      ops, steps, notes, run_dtype=run_dtype)


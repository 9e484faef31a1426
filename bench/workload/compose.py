"""Workload points from measured steps (torch-free): the arithmetic of bench/workload/plan.py's two engine
models, per concurrency, into costmodel.workload_economics.WorkloadPoint records.

Chunked prefill, at concurrency C (step S = the mixed step averaged over the decode contexts, Sd the
decode-only step of the same D rows, P one prompt's prefill alone):
  tokens/s per user, TTFT, throughput and end-to-end latency under the engine's policy: bench/workload/
  queueing.py (the other requests' prompts share a fraction of a request's decode steps; arrivals wait for
  the prompts ahead; Little's law ties the lifetime to the throughput); at C = 1: TTFT = P, per user 1 / Sd
  output tokens/s = C x OSL / W;  input tokens/s = output x ISL / OSL;  interactivity = 1 / TPOT
  end-to-end latency = W, the request's lifetime (D / S and 1 / S where prefill-bound, as before)
Prefill then decode, a cohort of C:
  T = sum of the prefills of the prompt groups + sum over contexts ISL+1 .. ISL+OSL-1 of the decode step
  output tokens/s = C x OSL / T;  input tokens/s = C x ISL / T;  interactivity = (OSL - 1) / decode time
  TTFT = mean over requests of the end of their group's prefill;  end-to-end latency = T
  input time share = prefill time / T
Speculative decoding, prefix caching and disaggregated prefill are not modelled.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from bench.workload import queueing
from bench.workload.plan import AFFINE_TOLERANCE, WorkloadSpec, affine_deviation, interpolate, piecewise_mean
from costmodel.step import tokens_per_s_per_user
from costmodel.workload_economics import WorkloadPoint

PHASES = ("decode", "mixed", "prefill")

# How far the cohort run end to end may sit from its composition (measured / composed - 1) and still agree.
# Set from measurements on the shared 2-core CPU VMs this project is developed on (results/examples/README.md: llama-3.2-1b
# fp32, ISL 256 / OSL 64, C 1/4/16: wall 1.16 / 0.86 / 1.14, its prefill and decode parts 0.85-1.22), where
# copy bandwidth alone moves 40-70 GB/s between processes; a GPU, whose steps are steadier, should meet it
# with room to spare, and a run outside it is flagged, not hidden.
E2E_TOLERANCE = 0.25


@dataclass(frozen=True)
class StepKey:
    """One step shape the composition reads. decode: batch rows at context. mixed: batch decode rows at
    context plus chunk_seqs x chunk_tokens prompt tokens at prefix. prefill: batch prompts of `context`
    tokens in chunks of `chunk`."""

    phase: str
    batch: int
    context: int
    chunk_seqs: int = 0
    chunk_tokens: int = 0
    prefix: int = 0
    chunk: int = 0


@dataclass(frozen=True)
class WorkloadStep:
    """A model step composed from measured rows (layers x layer + final_norm + lm_head), or why not."""

    key: StepKey
    seconds: float | None
    flops: int = 0
    bytes: int = 0
    layer_seconds: float | None = None
    reason: str = ""
    board_joules: float | None = None  # the board's energy for one step, where every part was metered (GPU)
    energy_note: str = ""  # why board_joules is missing where a window was opened (--energy steps)

    def to_dict(self) -> dict:
        out = {**asdict(self.key), **{k: v for k, v in asdict(self).items() if k != "key"}}
        if not self.energy_note:  # only where a whole-step window was opened and gave no reading
            out.pop("energy_note")
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "WorkloadStep":
        key = StepKey(**{k: d[k] for k in StepKey.__dataclass_fields__ if k in d})
        return cls(key, d.get("seconds"), d.get("flops", 0), d.get("bytes", 0), d.get("layer_seconds"),
                   d.get("reason", ""), d.get("board_joules"), d.get("energy_note") or "")

    @classmethod
    def from_entry(cls, e) -> "WorkloadStep":
        """The step a workload record holds (bench.records.schema.WorkloadStepEntry, read by the store)."""
        key = StepKey(**{k: v for k in StepKey.__dataclass_fields__ if (v := getattr(e, k)) is not None})
        return cls(key, e.seconds, 0 if e.flops is None else e.flops, 0 if e.bytes is None else e.bytes,
                   e.layer_seconds, "" if e.reason is None else e.reason, e.board_joules, e.energy_note or "")


@dataclass(frozen=True)
class Composition:
    """How one point was composed: the step times it used and the affine check on the contexts."""

    engine_model: str
    concurrency: int
    step_seconds: float | None = None  # chunked: mean mixed step; cohort: mean decode step
    decode_only_seconds: float | None = None  # chunked: mean decode-only step of the same rows
    prefill_seconds: float | None = None  # cohort: all prefills; chunked: the one prompt's prefill
    decode_seconds: float | None = None  # cohort: all decode steps
    wall_seconds: float | None = None  # cohort: composed wall time of the whole cohort
    affine_deviation: float | None = None  # largest over the step kinds used
    affine: bool | None = None
    measured_wall_seconds: float | None = None  # --measure-e2e: the cohort run for real
    measured_over_composed: float | None = None
    agrees: bool | None = None  # measured / composed within 1 +- E2E_TOLERANCE
    note: str = ""
    # chunked, under the engine policy (bench/workload/queueing.py); None in records written before it
    decode_share: float | None = None  # f: the fraction of a request's decode steps at the mixed step
    prompts_together: int | None = None  # g: prompts one step finishes together
    own_prefill_seconds: float | None = None  # its group's prompts (+ the decode rows beside them)
    queue_wait_seconds: float | None = None  # waiting for the prompts ahead (steady state)

    def to_dict(self) -> dict:
        return asdict(self)


def chunked_keys(spec: WorkloadSpec, c: int) -> list[StepKey]:
    s = spec.chunked_step(c)
    keys = []
    for ctx in spec.decode_contexts:
        keys.append(StepKey("mixed", s.decode_rows, ctx, s.chunk_seqs, s.chunk_tokens, s.prefix))
        keys.append(StepKey("decode", s.decode_rows, ctx))
    keys.append(StepKey("prefill", 1, spec.isl, chunk=min(spec.chunk, spec.isl)))  # TTFT: one prompt's prefill
    return keys


def cohort_keys(spec: WorkloadSpec, c: int) -> list[StepKey]:
    h = spec.cohort(c)
    keys = [StepKey("prefill", size, spec.isl, chunk=h.prefill_chunk) for size in sorted(set(h.group_sizes()))]
    keys += [StepKey("decode", c, ctx) for ctx in spec.decode_contexts]
    return keys


def needed_keys(spec: WorkloadSpec, fitting: list[int]) -> list[StepKey]:
    """Every step shape the points at these concurrencies need, each once, in measuring order."""
    seen: dict[StepKey, None] = {}
    for c in fitting:
        for key in chunked_keys(spec, c) + cohort_keys(spec, c):
            seen.setdefault(key)
    return list(seen)


def _curve(steps: dict, keys: list[StepKey], figure: str = "seconds") -> list[tuple[int, float]] | None:
    """(context, the steps' `figure`: seconds or board_joules), or None unless every step has it."""
    pts = []
    for k in keys:
        value = None if steps.get(k) is None else getattr(steps[k], figure)
        if value is None:
            return None
        pts.append((k.context, value))
    return pts


@dataclass(frozen=True)
class Header:
    """What every point of a workload run shares."""

    device: str
    model: str
    precision: str
    memory_bytes: int | None
    weight_bytes: int
    kv_bytes_per_token: int
    tp: int = 1


def bytes_needed(h: Header, spec: WorkloadSpec, c: int) -> int:
    return h.weight_bytes + h.kv_bytes_per_token * c * (spec.isl + spec.osl)


def fits(h: Header, spec: WorkloadSpec, c: int) -> bool:
    return h.memory_bytes is None or bytes_needed(h, spec, c) <= h.memory_bytes


def _base(h: Header, spec: WorkloadSpec, c: int, engine: str, source: str) -> dict:
    return dict(device=h.device, model=h.model, precision=h.precision, isl=spec.isl, osl=spec.osl, concurrency=c,
                engine_model=engine, source=source, tp=h.tp, fits=fits(h, spec, c),
                bytes_needed=bytes_needed(h, spec, c), memory_bytes=h.memory_bytes,
                label=f"{h.device} {h.precision} {spec.isl}/{spec.osl} {engine}")


NO_TIMING = "a step it needs has no valid timing"
STOPPED = "interrupted before the steps it needs were measured"


def _why_not(steps: dict, keys: list, unmeasured: str | None) -> str:
    """Why a point has no figures: a step it needs was not measured (the run was stopped: `unmeasured`), or
    was measured without a valid timing."""
    if unmeasured and any(k not in steps for k in keys):
        return unmeasured
    return NO_TIMING


def chunked_point(h: Header, spec: WorkloadSpec, c: int, steps: dict, source: str = "measured",
                  unmeasured: str | None = None) -> tuple[WorkloadPoint, Composition]:
    base = _base(h, spec, c, "chunked-prefill", source)
    s = spec.chunked_step(c)
    if not base["fits"]:
        return (WorkloadPoint(**base, note="weights + KV cache do not fit"),
                Composition("chunked-prefill", c, note="does not fit"))
    keys = chunked_keys(spec, c)
    mixed = _curve(steps, [k for k in keys if k.phase == "mixed"])
    decode = _curve(steps, [k for k in keys if k.phase == "decode"])
    prefill = steps.get(keys[-1])
    if mixed is None or decode is None or prefill is None or prefill.seconds is None:
        why = _why_not(steps, keys, unmeasured)
        return WorkloadPoint(**base, note=why), Composition("chunked-prefill", c, note=why)
    lo, _, hi = spec.decode_contexts
    step = piecewise_mean(mixed, lo, hi)
    decode_only = piecewise_mean(decode, lo, hi)
    q = queueing.serve(spec.isl, spec.osl, c, s.decode_rows, s.chunk_seqs * s.chunk_tokens, step, decode_only,
                       prefill.seconds, spec.chunk, queueing.policy(spec.policy).decode_counts)
    dev = max(d for d in (affine_deviation(mixed), affine_deviation(decode)) if d is not None)
    out = q.output_tokens_per_s
    inp = out * spec.isl / spec.osl
    board = _chunked_joules(spec, c, s, steps, keys, prefill.board_joules, q.group)
    point = WorkloadPoint(**base, total_tokens_per_s=out * (spec.isl + spec.osl) / spec.osl, output_tokens_per_s=out,
                          input_tokens_per_s=inp, interactivity=tokens_per_s_per_user(q.tpot), ttft_s=q.ttft,
                          e2e_latency_s=q.lifetime, input_time_share=q.input_time_share,
                          board_joules_per_token=board, note=s.note, ttft_first_wave_s=q.ttft_first_wave)
    comp = Composition("chunked-prefill", c, step_seconds=step, decode_only_seconds=decode_only,
                       prefill_seconds=prefill.seconds, affine_deviation=dev, affine=dev <= AFFINE_TOLERANCE,
                       note=s.note, decode_share=q.decode_share, prompts_together=q.group,
                       own_prefill_seconds=q.own_prefill, queue_wait_seconds=q.queue_wait)
    return point, comp


def _chunked_joules(spec: WorkloadSpec, c: int, s, steps: dict, keys: list, prefill_j: float | None,
                    group: int) -> float | None:
    """Board joules per token of a chunked point (queueing.py), None unless every step it reads was metered."""
    lo, _, hi = spec.decode_contexts
    mixed = _curve(steps, [k for k in keys if k.phase == "mixed"], "board_joules")
    if mixed is None:
        return None
    mixed_j = piecewise_mean(mixed, lo, hi)
    if s.decode_rows < c:  # prefill-bound: every step the mixed step
        return mixed_j / (s.decode_rows * (1 + spec.isl / spec.osl))
    decode = _curve(steps, [k for k in keys if k.phase == "decode"], "board_joules")
    if decode is None or prefill_j is None:
        return None
    _, joules = queueing.device_round(spec.isl, spec.osl, c, c > group, mixed_j, piecewise_mean(decode, lo, hi),
                                      prefill_j, s.chunk_seqs * s.chunk_tokens)
    return joules / (c * (spec.isl + spec.osl))


def cohort_point(h: Header, spec: WorkloadSpec, c: int, steps: dict, source: str = "measured",
                 unmeasured: str | None = None) -> tuple[WorkloadPoint, Composition]:
    base = _base(h, spec, c, "prefill-then-decode", source)
    if not base["fits"]:
        return (WorkloadPoint(**base, note="weights + KV cache do not fit"),
                Composition("prefill-then-decode", c, note="does not fit"))
    cohort = spec.cohort(c)
    keys = cohort_keys(spec, c)
    prefills = {k.batch: steps.get(k) for k in keys if k.phase == "prefill"}
    decode = _curve(steps, [k for k in keys if k.phase == "decode"])
    if decode is None or any(p is None or p.seconds is None for p in prefills.values()):
        why = _why_not(steps, keys, unmeasured)
        return WorkloadPoint(**base, note=why), Composition("prefill-then-decode", c, note=why)
    ends, clock = [], 0.0
    for size in cohort.group_sizes():
        clock += prefills[size].seconds
        ends += [clock] * size
    prefill_s = clock
    first, last = spec.isl + 1, spec.isl + spec.osl - 1
    decode_s = sum(interpolate(decode, ctx) for ctx in range(first, last + 1))
    wall = prefill_s + decode_s
    dev = affine_deviation(decode)
    energy = _curve(steps, [k for k in keys if k.phase == "decode"], "board_joules")
    board = None
    if energy is not None and all(p.board_joules is not None for p in prefills.values()):
        joules = sum(prefills[size].board_joules for size in cohort.group_sizes())
        joules += sum(interpolate(energy, ctx) for ctx in range(first, last + 1))
        board = joules / (c * (spec.isl + spec.osl))
    point = WorkloadPoint(**base, total_tokens_per_s=c * (spec.isl + spec.osl) / wall,
                          output_tokens_per_s=c * spec.osl / wall, input_tokens_per_s=c * spec.isl / wall,
                          interactivity=tokens_per_s_per_user(decode_s, spec.osl - 1), ttft_s=sum(ends) / len(ends), e2e_latency_s=wall,
                          input_time_share=prefill_s / wall, board_joules_per_token=board)
    comp = Composition("prefill-then-decode", c, step_seconds=decode_s / (spec.osl - 1), prefill_seconds=prefill_s,
                       decode_seconds=decode_s, wall_seconds=wall, affine_deviation=dev,
                       affine=None if dev is None else dev <= AFFINE_TOLERANCE)
    return point, comp


def compose(h: Header, spec: WorkloadSpec, steps: dict, source: str = "measured", unmeasured: str | None = None
            ) -> list[tuple[WorkloadPoint, Composition]]:
    """Both engine models at every concurrency, chunked prefill first. `unmeasured`: what a point says when a
    step it needs is missing from `steps` (a stopped run: STOPPED), rather than that it has no valid timing."""
    out = []
    for c in spec.concurrency:
        out.append(chunked_point(h, spec, c, steps, source, unmeasured))
        out.append(cohort_point(h, spec, c, steps, source, unmeasured))
    return out


def with_measured_wall(c: Composition, cohort, composed_wall: float | None = None,
                       osl: int | None = None) -> Composition:
    """The composition with the cohort's end-to-end wall time beside it (cohort: bench/workload/e2e.py).
    composed_wall / osl: a cohort run with a shorter answer than the point's is compared with the composition
    at its own OSL (cohort_at_osl), and the note says so."""
    from dataclasses import replace

    if not cohort.ok:
        return replace(c, note=f"end-to-end check failed: {cohort.check}")
    against = c.wall_seconds if composed_wall is None else composed_wall
    if not against:
        return replace(c, measured_wall_seconds=cohort.wall_s, note="no composition to compare the cohort with")
    ratio = cohort.wall_s / against
    note = c.note
    if composed_wall is not None and osl is not None:
        note = "; ".join(x for x in (c.note, f"end-to-end cohort run with OSL {osl} (a shorter try), measured / "
                                             f"composed both at OSL {osl}") if x)
    return replace(c, measured_wall_seconds=cohort.wall_s, measured_over_composed=ratio,
                   agrees=abs(ratio - 1.0) <= E2E_TOLERANCE, note=note)


def cohort_at_osl(c: Composition, spec: WorkloadSpec, concurrency: int, steps: dict, osl: int) -> Composition:
    """The cohort's composition with a shorter answer (2 <= osl <= spec.osl): the same prefills, the decode steps
    at contexts ISL + 1 .. ISL + osl - 1 read off the measured decode curve of the full workload."""
    from dataclasses import replace

    decode = _curve(steps, [k for k in cohort_keys(spec, concurrency) if k.phase == "decode"])
    if decode is None or c.prefill_seconds is None:
        return replace(c, wall_seconds=None, note="a step it needs has no valid timing")
    decode_s = sum(interpolate(decode, ctx) for ctx in range(spec.isl + 1, spec.isl + osl))
    return replace(c, decode_seconds=decode_s, wall_seconds=c.prefill_seconds + decode_s,
                   step_seconds=decode_s / (osl - 1))


def compositions(record) -> list:
    """(WorkloadPoint, Composition) pairs of a workload record read by the store (bench.records.store.load)."""
    from bench.errors import UserError

    where = f"results file {record.path}"
    points = record.workload_points
    given = record.compositions or []
    if len(given) != len(points):
        raise UserError(f"{where}: {len(points)} points but {len(given)} compositions")
    pairs = []
    for i, (p, c) in enumerate(zip(points, given)):
        try:
            pairs.append((p, Composition(**c)))
        except TypeError as exc:
            raise UserError(f"{where}: compositions[{i}]: {exc}") from None
    return pairs

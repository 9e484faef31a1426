"""What a workload measures: the steady-state step of a chunked-prefill engine and the cohort of a
prefill-then-decode engine, at each concurrency, as shapes (torch-free; bench/workload/measure_steps.py times them).

Chunked prefill (continuous batching): C sequences decode one token a step; to keep C in flight, C / OSL
requests arrive a step on average, so a step also carries C x ISL / OSL prompt tokens. The engine's token
budget for prompt tokens in one step is `chunk`; when C x ISL / OSL exceeds it the engine is prefill-bound:
only D = chunk x OSL / ISL sequences can decode a step (the rest wait in prefill), and the step carries D
decode tokens plus D x ISL / OSL prompt tokens. The prompt tokens run as k chunks of t tokens, one per
sequence (a chunk never spans two prompts), at the mean prefix a t-token chunk sees inside an ISL prompt,
(ISL - t) / 2, which gives the mean attention work exactly (it is linear in the prefix).

Decode rows sit at contexts spread evenly over ISL + 1 .. ISL + OSL. Their attention is linear in context,
so the step is measured at three contexts (first, middle, last) and averaged piecewise-linearly over every
context; how far the middle lies off the straight line between the ends is recorded (the affine check).

Prefill then decode (a cohort): the C prompts run first, whole prompts packed b = chunk // ISL at a time
(a prompt longer than `chunk` runs alone in chunks of `chunk` tokens); the prefill's LM head gives each
request its first token, then OSL - 1 decode steps at batch C and contexts ISL + 1 .. ISL + OSL - 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from bench.errors import UserError

# Above this the middle context's step lies too far off the line through the ends to call it affine.
AFFINE_TOLERANCE = 0.05


@dataclass(frozen=True)
class ChunkedStep:
    """The steady-state step of the chunked-prefill engine at concurrency C."""

    concurrency: int
    decode_rows: int  # D sequences decoding this step (C unless prefill-bound)
    prompt_tokens: float  # D x ISL / OSL, the average the step carries
    chunk_seqs: int  # k prompts the prompt tokens come from
    chunk_tokens: int  # t tokens each (k x t is the measured prompt load, within a token of the average)
    prefix: int  # mean cached prompt tokens a chunk continues
    note: str = ""


@dataclass(frozen=True)
class Cohort:
    """The prefill-then-decode engine's C requests."""

    concurrency: int
    prefill_batch: int  # b prompts per prefill
    prefill_chunk: int  # tokens per chunk of one prompt (= ISL when a prompt fits one chunk)
    full_groups: int  # C // b prefills of b prompts
    remainder: int  # and one of C % b prompts (0: none)

    def group_sizes(self) -> list[int]:
        return [self.prefill_batch] * self.full_groups + ([self.remainder] if self.remainder else [])

    def chunks(self, isl: int) -> list[tuple[int, int]]:
        """(tokens, prefix) of each chunk a prompt runs in."""
        return [(min(self.prefill_chunk, isl - start), start) for start in range(0, isl, self.prefill_chunk)]


@dataclass(frozen=True)
class WorkloadSpec:
    isl: int
    osl: int
    concurrency: tuple
    chunk: int  # prompt-token budget of one step (clipped to what a step could ever carry)
    notes: tuple = ()
    policy: str = "tokenbench"  # the engine's scheduling (bench/workload/queueing.py ENGINE_POLICIES)

    @property
    def decode_contexts(self) -> tuple[int, int, int]:
        """First, middle and last context of the decode rows (ISL + 1 .. ISL + OSL)."""
        lo, hi = self.isl + 1, self.isl + self.osl
        return lo, (lo + hi) // 2, hi

    def chunked_step(self, c: int) -> ChunkedStep:
        demand = c * self.isl / self.osl
        note = ""
        if demand > self.chunk:
            d = max(1, math.floor(self.chunk * self.osl / self.isl))
            note = (f"prefill-bound: C x ISL / OSL = {demand:,.0f} prompt tokens a step exceed the {self.chunk:,} "
                    f"token budget; {d} of {c} sequences decode each step, the rest wait in prefill")
        else:
            d = c
        prompt = d * self.isl / self.osl
        k = max(1, math.ceil(prompt / self.isl))
        t = max(1, round(prompt / k))
        return ChunkedStep(c, d, prompt, k, t, max(0, (self.isl - t) // 2), note)

    def cohort(self, c: int) -> Cohort:
        if self.isl <= self.chunk:
            b, piece = min(c, max(1, self.chunk // self.isl)), self.isl
        else:
            b, piece = 1, self.chunk
        return Cohort(c, b, piece, c // b, c % b)


def make_spec(isl: int, osl: int, concurrency: list[int], chunk: int, policy: str = "tokenbench") -> WorkloadSpec:
    """Checked sizes; a chunk no step could fill is clipped, with a note."""
    for name, value in (("--isl", isl), ("--osl", osl), ("--chunk", chunk)):
        if value < 1:
            raise UserError(f"{name} must be a positive integer, got {value}")
    if osl < 2:
        raise UserError("--osl must be at least 2: time per output token needs a token after the first")
    notes = []
    most = isl * max(concurrency)
    if chunk > most:
        notes.append(f"--chunk {chunk:,} is larger than ISL x C = {most:,} (all prompts at once): clipped to {most:,}")
        chunk = most
    return WorkloadSpec(isl, osl, tuple(concurrency), chunk, tuple(notes), policy)


def piecewise_mean(points: list[tuple[int, float]], first: int, last: int) -> float:
    """Mean over the integer contexts first..last of the straight-line interpolation through `points`
    ((context, seconds), sorted, covering first..last)."""
    if last < first:
        raise ValueError("empty context range")
    total = 0.0
    for ctx in range(first, last + 1):
        total += interpolate(points, ctx)
    return total / (last - first + 1)


def interpolate(points: list[tuple[int, float]], x: int) -> float:
    pts = sorted(points)
    if x <= pts[0][0]:
        return pts[0][1]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0) if x1 != x0 else y1
    return pts[-1][1]


def affine_deviation(points: list[tuple[int, float]]) -> float | None:
    """How far the middle point lies off the line through the two ends, relative to it."""
    pts = sorted(points)
    if len(pts) < 3:
        return None
    (x0, y0), (xm, ym), (x1, y1) = pts[0], pts[len(pts) // 2], pts[-1]
    line = y0 + (y1 - y0) * (xm - x0) / (x1 - x0) if x1 != x0 else y0
    return abs(ym - line) / ym if ym else None

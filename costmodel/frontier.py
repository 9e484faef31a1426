"""The Pareto frontier of throughput against interactivity, and the throughput at a given interactivity.

A serving curve is a set of (interactivity, tokens/s per device) points, one per concurrency. Higher is
better on both axes, so the points worth running at are those no other point beats on both: the frontier.
Between two neighbouring frontier points the throughput is read log-linearly (InferenceX draws its curves
on a log throughput axis, and throughput falls roughly exponentially as interactivity rises):

    t       = (u - u_a) / (u_b - u_a)
    log y   = log y_a + t x (log y_b - log y_a)

Outside the frontier's interactivity range there is no answer (None): a curve is never extrapolated.
Pure and torch-free, like the rest of costmodel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterable

from costmodel.workload_economics import WorkloadPoint

# Two interactivities closer than this (relative) are the same one: a figure printed to 3-4 significant
# digits and read back must still land on its own frontier point.
SAME_X_REL = 1e-9


def pareto(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (x, y) points no other point beats on both axes (higher is better on both), by rising x.

    A point equal to another on one axis and worse on the other is dominated; exact duplicates are kept once.
    """
    best, frontier = -math.inf, []
    for x, y in sorted(points, key=lambda p: (-p[0], -p[1])):
        if y > best:
            frontier.append((x, y))
            best = y
    return sorted(frontier)


def _same_x(a: float, b: float) -> bool:
    return abs(a - b) <= SAME_X_REL * max(abs(a), abs(b))


def bracket(xs: list[float], x: float) -> tuple[int, int, float] | None:
    """Where x falls among the rising xs of a frontier: (i, j, t) with x = xs[i] + t (xs[j] - xs[i]);
    (i, i, 0.0) on a point itself; None outside [xs[0], xs[-1]] (never extrapolated)."""
    if not xs or not math.isfinite(x):
        return None
    for i, xi in enumerate(xs):
        if _same_x(x, xi):
            return i, i, 0.0
    if x < xs[0] or x > xs[-1]:
        return None
    for i in range(len(xs) - 1):
        if xs[i] < x < xs[i + 1]:
            return i, i + 1, (x - xs[i]) / (xs[i + 1] - xs[i])
    return None  # unreachable for rising xs


def log_lerp(a: float, b: float, t: float) -> float:
    """exp(log a + t (log b - log a)), both positive."""
    return math.exp(math.log(a) + t * (math.log(b) - math.log(a)))


def interpolate(frontier: list[tuple[float, float]], x: float) -> float | None:
    """The throughput at interactivity x on a frontier (from pareto()), log-linear between neighbours;
    None outside its range. A single-point frontier answers only at its own x."""
    where = bracket([p[0] for p in frontier], x)
    if where is None:
        return None
    i, j, t = where
    return frontier[i][1] if i == j else log_lerp(frontier[i][1], frontier[j][1], t)


# --- on workload points ---------------------------------------------------------------------------------

def placed(point: WorkloadPoint) -> bool:
    """A point that can stand on a throughput-interactivity curve: it fits and has both figures."""
    return (point.fits and point.interactivity is not None and point.interactivity > 0
            and point.total_tokens_per_s is not None and point.total_tokens_per_s > 0)


def curve_key(point: WorkloadPoint) -> tuple:
    """What makes points one curve: where and how they were obtained, the model, precision, workload and
    TP. A served curve is also told apart by its label (the engine that served it)."""
    return (point.source, point.device, point.model, point.precision, point.isl, point.osl, point.tp,
            point.engine_model, point.label if point.source == "served" else "")


def curves(points: Iterable[WorkloadPoint]) -> dict[tuple, list[WorkloadPoint]]:
    """Points grouped by curve_key, each curve by rising concurrency, in first-seen order."""
    out: dict[tuple, list[WorkloadPoint]] = {}
    for p in points:
        out.setdefault(curve_key(p), []).append(p)
    return {k: sorted(v, key=lambda p: p.concurrency) for k, v in out.items()}


def point_frontier(points: Iterable[WorkloadPoint]) -> list[WorkloadPoint]:
    """The placed points on the Pareto frontier of (interactivity, total tokens/s per device), by rising
    interactivity. Give it one curve's points (see curves())."""
    usable = [p for p in points if placed(p)]
    front = set(pareto([(p.interactivity, p.total_tokens_per_s) for p in usable]))
    chosen, seen = [], set()
    for p in sorted(usable, key=lambda p: (p.interactivity, p.concurrency)):
        xy = (p.interactivity, p.total_tokens_per_s)
        if xy in front and xy not in seen:
            chosen.append(p)
            seen.add(xy)
    return chosen


@dataclass(frozen=True)
class Interpolated:
    """A curve read at one interactivity: the rates there and the frontier points it lies between."""

    interactivity: float
    total_tokens_per_s: float
    output_tokens_per_s: float | None
    input_tokens_per_s: float | None
    low: WorkloadPoint  # the frontier neighbour at or below the interactivity
    high: WorkloadPoint  # at or above (the same point when read on a point)
    t: float

    @property
    def exact(self) -> bool:
        return self.low is self.high

    @property
    def between(self) -> str:
        if self.exact:
            return f"at concurrency {self.low.concurrency}"
        a, b = sorted((self.low.concurrency, self.high.concurrency))
        return f"between concurrency {a} and {b}"

    def as_point(self) -> WorkloadPoint:
        """A WorkloadPoint for costmodel.workload_economics.workload_economics: the low neighbour's identity with the
        interpolated rates. Its concurrency is the low neighbour's (an interpolated point has none); its
        time-to-first-token, latency and input time share are unknown."""
        note = "interpolated " + self.between
        return replace(self.low, total_tokens_per_s=self.total_tokens_per_s,
                       output_tokens_per_s=self.output_tokens_per_s, input_tokens_per_s=self.input_tokens_per_s,
                       interactivity=self.interactivity, ttft_s=None, e2e_latency_s=None, input_time_share=None,
                       board_joules_per_token=None, note=note)


def _lerp_rate(a: float | None, b: float | None, t: float) -> float | None:
    if a is None or b is None or a <= 0 or b <= 0:
        return None
    return log_lerp(a, b, t)


def point_at(points: Iterable[WorkloadPoint], interactivity: float) -> Interpolated | None:
    """One curve's rates at `interactivity`, read on its frontier: total, output and input tokens/s each
    log-linear between the same two neighbours (same t); None outside the frontier's range."""
    front = point_frontier(points)
    where = bracket([p.interactivity for p in front], interactivity)
    if where is None:
        return None
    i, j, t = where
    lo, hi = front[i], front[j]
    if i == j:
        return Interpolated(lo.interactivity, lo.total_tokens_per_s, lo.output_tokens_per_s, lo.input_tokens_per_s,
                            lo, lo, 0.0)
    return Interpolated(interactivity, log_lerp(lo.total_tokens_per_s, hi.total_tokens_per_s, t),
                        _lerp_rate(lo.output_tokens_per_s, hi.output_tokens_per_s, t),
                        _lerp_rate(lo.input_tokens_per_s, hi.input_tokens_per_s, t), lo, hi, t)


def interactivity_range(points: Iterable[WorkloadPoint]) -> tuple[float, float] | None:
    """(lowest, highest) interactivity of a curve's frontier; None when nothing is placed."""
    front = point_frontier(points)
    return (front[0].interactivity, front[-1].interactivity) if front else None


def span_text(rng: tuple[float, float] | None) -> str:
    """'0.2175-1.115 tokens/s per user', 'only at 90 tokens/s per user' (one point), 'no point placed'."""
    if rng is None:
        return "no point placed"
    if rng[0] == rng[1]:
        return f"only at {rng[0]:.4g} tokens/s per user"
    return f"{rng[0]:.4g}-{rng[1]:.4g} tokens/s per user"

"""`tokenbench compare`: two configurations side by side at a matched operating point.

A side is a measured run, a run projected onto a catalog device, or a catalog device alone (price and
spec figures, tokens/s only if given). The rows follow the public Hopper-vs-Blackwell table: price per
hour, spec FLOPS per $, measured FLOPS per $, tokens/s per device, tokens/s per MW, $/M tokens, and a
ratio column B vs A ("2.0x" more, or "35x lower" for figures where lower is better).

Matched operating point: both sides at the same model, dtype and context, and either the same batch
(default: the largest batch both ran that fits) or the same floor on tokens/s per user (each side then
at its highest-throughput step that still gives every user at least that rate).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from costmodel.economics import Economics, economics
from costmodel.input_errors import CostInputError
from costmodel.number_format import money, si, sig
from costmodel.inputs import PriceQuote
from costmodel.power import PowerFigure


@dataclass(frozen=True)
class OperatingPoint:
    batch: int | None
    context: int | None
    tokens_per_s_per_user_floor: float | None
    how: str


class ComparedStep(Protocol):
    """A step a side is matched on: a run's derived step (bench.records.schema.Step, as the store reads it)
    or a projected one (costmodel.roofline_projection.ProjectedStep); `to_dict` is what --json shows of it."""

    batch: int
    context: int | None
    backend: str
    tokens_per_s: float | None
    tokens_per_s_per_user: float | None

    def to_dict(self) -> dict: ...


@dataclass
class Side:
    label: str
    price: PriceQuote | None
    power: PowerFigure | None
    spec_tflops: float | None = None
    measured_tflops: float | None = None
    steps: list[ComparedStep] | None = None  # measured or projected steps; None for a catalog device alone
    tokens_per_s: float | None = None  # given directly (catalog device) or chosen from steps
    step: ComparedStep | None = None
    kind: str = "catalog"  # "measured" | "projected" | "catalog"
    model: str | None = None
    dtype: str | None = None
    notes: list[str] = field(default_factory=list)

    def economics(self) -> Economics:
        return economics(
            self.price.price_per_hour if self.price else None,
            self.tokens_per_s,
            self.power.kw if self.power else None,
            utilisation=self.price.utilisation if self.price else 1.0,
            spec_tflops=self.spec_tflops,
            measured_tflops=self.measured_tflops,
        )


def _pick(steps: list[ComparedStep], batch: int | None, context: int, floor: float | None, backend: str | None):
    pool = [s for s in steps if s.context == context and (backend is None or s.backend == backend)]
    if floor is not None:
        pool = [s for s in pool if s.tokens_per_s_per_user >= floor]
    elif batch is not None:
        pool = [s for s in pool if s.batch == batch]
    # among what is left, the fastest backend / the highest-throughput batch
    return max(pool, key=lambda s: s.tokens_per_s, default=None)


def match(a: Side, b: Side, batch: int | None = None, context: int | None = None,
          tokens_per_s_per_user: float | None = None, backend: str | None = None) -> OperatingPoint:
    """Choose one step on each side with steps, at a point both share; sets side.step and tokens_per_s."""
    sides = [s for s in (a, b) if s.steps is not None]
    if not sides:
        return OperatingPoint(None, None, None, "catalog figures only; tokens/s as given")
    if len(sides) == 2:
        for attr in ("model", "dtype"):
            if getattr(a, attr) != getattr(b, attr):
                raise CostInputError(f"not a matched comparison: {attr} {getattr(a, attr)!r} vs {getattr(b, attr)!r} "
                                     f"(compare runs of the same model and dtype)")
    contexts = set.intersection(*({s.context for s in side.steps} for side in sides))
    if context is None:
        if not contexts:
            raise CostInputError("the two runs share no context length; nothing to match")
        context, how_ctx = max(contexts), "largest common context"
    else:
        if context not in contexts:
            raise CostInputError(f"context {context} was not run on both sides; common: {sorted(contexts)}")
        how_ctx = "context as asked"
    if tokens_per_s_per_user is not None:
        how = f"{how_ctx} {context}; each side's highest-throughput step with >= {sig(tokens_per_s_per_user)} " \
              f"tokens/s per user"
    else:
        batches = set.intersection(*({s.batch for s in side.steps if s.context == context}
                                     for side in sides))
        if batch is None:
            if not batches:
                raise CostInputError(f"the two runs share no batch size at context {context}")
            batch, how_b = max(batches), "largest common batch"
        else:
            if batch not in batches:
                raise CostInputError(f"batch {batch} at context {context} was not run on both sides; "
                                     f"common: {sorted(batches)}")
            how_b = "batch as asked"
        how = f"{how_b} {batch}, {how_ctx} {context}"
    for side in sides:
        step = _pick(side.steps, None if tokens_per_s_per_user else batch, context, tokens_per_s_per_user,
                     backend)
        if step is None:
            raise CostInputError(f"{side.label}: no step meets the operating point ({how})")
        side.step, side.tokens_per_s = step, step.tokens_per_s
    if backend is None:
        how += "; fastest backend on each side"
    return OperatingPoint(batch if tokens_per_s_per_user is None else None, context, tokens_per_s_per_user, how)


# metric key, label, formatter, whether higher is better
ROWS = [
    ("price_per_hour", "price per device-hour", money, False),
    ("spec_flops_per_dollar", "spec FLOPS per $ ({dtype} TFLOP/s per $/h)", sig, True),
    ("measured_flops_per_dollar", "measured FLOPS per $ ({dtype} TFLOP/s per $/h)", sig, True),
    ("total_tokens_per_s", "tokens/s per device", sig, True),
    ("tokens_per_s_per_user", "tokens/s per user", sig, True),
    ("power_kw", "all-in kW per device", sig, False),
    ("tokens_per_s_per_mw", "tokens/s per MW", si, True),
    ("joules_per_token", "J/token (all-in)", sig, False),
    ("cost_per_mtok", "$/M tokens", money, False),
    ("effective_cost_per_mtok", "effective $/M tokens (utilisation)", money, False),
]


def versus(a: float | None, b: float | None, higher_is_better: bool) -> str:
    """B against A in the public table's words: '2.0x' when B is larger, '35x lower' for costs that fell."""
    if a is None or b is None or a <= 0 or b <= 0:
        return "-"
    r = b / a

    def fmt(x: float) -> str:
        return f"{x:.2f}x" if x < 10 else f"{x:.1f}x" if x < 100 else f"{x:,.0f}x"

    if not higher_is_better and r < 1:
        return f"{fmt(1 / r)} lower"
    return fmt(r)


@dataclass
class Comparison:
    a: Side
    b: Side
    point: OperatingPoint
    econ_a: Economics
    econ_b: Economics

    def values(self, side: str, key: str) -> float | None:
        s, e = (self.a, self.econ_a) if side == "a" else (self.b, self.econ_b)
        if key == "tokens_per_s_per_user":
            return s.step.tokens_per_s_per_user if s.step else None
        return getattr(e, key)

    def rows(self) -> list[list[str]]:
        out = []
        for key, label, fmt, higher in ROWS:
            va, vb = self.values("a", key), self.values("b", key)
            if va is None and vb is None:
                continue
            out.append([label.format(dtype=self.a.dtype or self.b.dtype or "?"), fmt(va), fmt(vb),
                        versus(va, vb, higher)])
        return out

    def to_dict(self) -> dict:
        return {
            "operating_point": self.point.__dict__,
            "a": _side_dict(self.a, self.econ_a),
            "b": _side_dict(self.b, self.econ_b),
            "rows": [{"metric": key, "a": self.values("a", key), "b": self.values("b", key),
                      "b_vs_a": versus(self.values("a", key), self.values("b", key), higher)}
                     for key, _, _, higher in ROWS],
        }


def _side_dict(side: Side, econ: Economics) -> dict:
    return {"label": side.label, "kind": side.kind, "step": side.step.to_dict() if side.step else None,
            "economics": econ.to_dict()}


def compare(a: Side, b: Side, **point) -> Comparison:
    op = match(a, b, **point)
    return Comparison(a, b, op, a.economics(), b.economics())

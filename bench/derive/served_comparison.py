"""`tokenbench compare RUN.json --served FILE`: a workload run's measured-kernel curve beside served results.

For each served curve (hardware, model, precision, ISL/OSL, TP, engine) at the run's model, precision and
workload, and at each served point's interactivity inside the run's frontier (or at the interactivities
asked for), this gives:

    served tokens/s per GPU                      (what the engine delivered)
    tokenbench tokens/s per device               (the run's chunked-prefill frontier, read log-linearly there)
    served / tokenbench                          (the engine's efficiency against its hardware's kernels,
                                                  when both are the same hardware)
    $/M tokens of each                           (costmodel.workload_economics.workload_economics; the served side at its
                                                  hardware's catalog price and all-in kW)

The tokenbench side is the run's measured points; points projected onto other devices (source "projected",
e.g. from a projection of the run onto the served hardware) may be passed in as `extra_points`, and a served
curve on a device they cover is compared with them instead. Where the two sides are on different hardware the
comparison says so: its ratio is then not an engine efficiency. Nothing is extrapolated; no served row is
dropped without a reason.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable

from costmodel import catalog
from costmodel.input_errors import CostInputError
from costmodel.frontier import curves, interactivity_range, placed, point_at, span_text
from costmodel.served_results import describe
from costmodel.workload_economics import WorkloadEconomics, WorkloadPoint, workload_economics
from bench.records.schema import WorkloadRecord

TOKENBENCH_ENGINE = "chunked-prefill"  # the engine behaviour a served result is compared with
DIFFERENT_HARDWARE = "different hardware: the ratio is not an engine efficiency"


@dataclass(frozen=True)
class Pricing:
    price_per_hour: float | None
    power_kw: float | None
    source: str


@dataclass(frozen=True)
class Figures:
    """One side at one interactivity: its rates, how they were read, their economics (None: not there)."""

    total_tokens_per_s: float | None
    output_tokens_per_s: float | None
    how: str
    economics: WorkloadEconomics | None = None


@dataclass(frozen=True)
class Row:
    interactivity: float
    served_concurrency: int | None  # the served point's, when the row is at one
    served: Figures
    tokenbench: Figures

    @property
    def ratio(self) -> float | None:
        a, b = self.served.total_tokens_per_s, self.tokenbench.total_tokens_per_s
        return None if a is None or b is None else a / b


@dataclass
class CurveComparison:
    served_label: str
    hardware: str  # catalog key
    tp: int
    reference: str
    served_pricing: Pricing
    tokenbench_label: str
    tokenbench_device: str
    tokenbench_source: str  # measured | projected
    tokenbench_pricing: Pricing
    same_hardware: bool
    tokenbench_range: tuple[float, float]
    rows: list[Row] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # served points with no row, and why

    @property
    def header(self) -> str:
        if self.same_hardware:
            return (f"same hardware ({self.hardware}): served / tokenbench is the engine's efficiency against "
                    f"this hardware's kernels ({self.tokenbench_source} kernels)")
        return (f"{DIFFERENT_HARDWARE} (served on {self.hardware}; tokenbench {self.tokenbench_source} on "
                f"{self.tokenbench_label})")


@dataclass
class ServedComparison:
    run: str
    served_file: str
    model: str
    precision: str
    workload: str
    at: list[float] | None
    curves: list[CurveComparison]
    unmatched: list[tuple[str, str]]  # (served row, why it is not compared)
    notes: list[str]

    def to_dict(self) -> dict:
        out = asdict(self)
        for c, d in zip(self.curves, out["curves"]):
            d["header"] = c.header
            for r, rd in zip(c.rows, d["rows"]):
                rd["ratio"] = r.ratio
        out["unmatched"] = [{"row": r, "reason": why} for r, why in self.unmatched]
        return out


def _economics(point: WorkloadPoint, pricing: Pricing) -> WorkloadEconomics:
    return workload_economics(point, pricing.price_per_hour, pricing.power_kw)


def _catalog_pricing(device: str, tier: str | None) -> Pricing:
    quote = catalog.catalog_price(device, tier)
    if quote is None:
        return Pricing(None, catalog.all_in_kw(device), f"no catalog price for {device}")
    prov = " (provisional)" if quote.provisional else ""
    return Pricing(quote.price_per_hour, quote.all_in_kw, f"catalog: {quote.source}{prov}; all-in kW per device")


def _run_pricing(run: WorkloadRecord) -> Pricing:
    return Pricing(run.price_per_hour, run.power_kw, f"recorded in the run ({run.price_sources})")


def _mismatch(p: WorkloadPoint, run: WorkloadRecord) -> str | None:
    if p.model != run.model_name:
        return f"model {p.model}, not the run's {run.model_name}"
    if p.precision != run.dtype:
        return f"precision {p.precision}, not the run's {run.dtype}"
    if (p.isl, p.osl) != (run.isl, run.osl):
        return f"workload {p.workload} (ISL {p.isl}, OSL {p.osl}), not the run's {run.workload_label}"
    return None


def _tokenbench_curves(run: WorkloadRecord, extra: Iterable[WorkloadPoint]) -> dict[str, list[WorkloadPoint]]:
    """device -> the chunked-prefill points tokenbench compares with there: the run's measured points under
    the run's device, and each projected device's points."""
    out: dict[str, list[WorkloadPoint]] = {}
    for p in list(run.workload_points) + list(extra):
        if p.engine_model != TOKENBENCH_ENGINE or p.source not in ("measured", "projected"):
            continue
        if (p.model, p.precision, p.isl, p.osl) != (run.model_name, run.dtype, run.isl, run.osl):
            continue
        out.setdefault(p.device, []).append(p)
    return out


def _figures(point: WorkloadPoint | None, pricing: Pricing, how: str) -> Figures:
    if point is None:
        return Figures(None, None, how)
    return Figures(point.total_tokens_per_s, point.output_tokens_per_s, how, _economics(point, pricing))


def _read(points: list[WorkloadPoint], u: float, pricing: Pricing, side: str) -> Figures:
    got = point_at(points, u)
    if got is None:
        rng = interactivity_range(points)
        return Figures(None, None, f"outside the {side} range ({span_text(rng)})")
    return _figures(got.as_point(), pricing, got.between)


def compare_served(run: WorkloadRecord, served: list[WorkloadPoint], served_file: str,
                   at: list[float] | None = None, extra_points: Iterable[WorkloadPoint] = (),
                   tier: str | None = None) -> ServedComparison:
    """The served comparison of one workload run; CostInputError when nothing in the file matches the run."""
    for u in at or []:
        if not u > 0:
            raise CostInputError(f"--at-interactivity must be positive tokens/s per user, got {u!r}")
    if tier is not None:
        catalog.require_tier(tier)
    unmatched, matched = [], []
    for p in served:
        why = _mismatch(p, run)
        (unmatched.append((describe(p), why)) if why else matched.append(p))
    if not matched:
        has = sorted({f"{p.model} {p.precision} {p.workload}" for p in served})
        raise CostInputError(f"served results {served_file}: no row matches the run's model {run.model_name}, "
                             f"precision {run.dtype} and workload {run.workload_label} ({run.path}); the file has: "
                             f"{'; '.join(has)}")
    ours = _tokenbench_curves(run, extra_points)
    own_device = next((p.device for p in run.workload_points if p.source == "measured"), run.device.label)
    if not any(placed(p) for p in ours.get(own_device, [])):
        raise CostInputError(f"workload file {run.path} has no {TOKENBENCH_ENGINE} point that fits and has an "
                             f"interactivity: nothing to compare served results with")
    notes = [f"tokenbench side: the {TOKENBENCH_ENGINE} frontier (continuous batching with chunked prefill, what "
             f"vLLM/SGLang run by default), read log-linearly between its points, never extrapolated.",
             "interactivity: served results give the median over requests of 1 / time per output token; "
             "tokenbench's is 1 / the mean time per output token of its composed steps."]
    out = []
    for key, pts in curves(matched).items():
        first = pts[0]
        hw = first.device
        if hw in ours and any(placed(p) for p in ours[hw]):
            mine, same = ours[hw], True
        else:
            mine, same = ours[own_device], own_device == hw
        src = "projected" if any(p.source == "projected" for p in mine) else "measured"
        tb_pricing = _run_pricing(run) if src == "measured" else _catalog_pricing(mine[0].device, tier)
        if src == "measured":
            tb_label = run.device.described
        else:
            tb_label = f"{mine[0].device} (projected from {run.device.display_name})"
        sv_pricing = _catalog_pricing(hw, tier)
        cmp = CurveComparison(
            served_label=first.label or describe(first), hardware=hw, tp=first.tp, reference=first.reference,
            served_pricing=sv_pricing, tokenbench_label=tb_label, tokenbench_device=mine[0].device,
            tokenbench_source=src, tokenbench_pricing=tb_pricing, same_hardware=same,
            tokenbench_range=interactivity_range(mine))
        lo, hi = cmp.tokenbench_range
        if at:
            for u in at:
                cmp.rows.append(Row(u, None, _read(pts, u, sv_pricing, "served"),
                                    _read(mine, u, tb_pricing, "tokenbench")))
        else:
            for p in pts:
                if not placed(p):
                    why = "does not fit" if not p.fits else "no interactivity published"
                    cmp.skipped.append(f"concurrency {p.concurrency}: {why}: cannot be placed on a curve")
                    continue
                tb = _read(mine, p.interactivity, tb_pricing, "tokenbench")
                if tb.total_tokens_per_s is None:
                    cmp.skipped.append(f"concurrency {p.concurrency}: interactivity {p.interactivity:.4g} is "
                                       f"outside tokenbench's frontier ({span_text((lo, hi))}): not extrapolated")
                    continue
                cmp.rows.append(Row(p.interactivity, p.concurrency,
                                    _figures(p, sv_pricing, f"served at concurrency {p.concurrency}"), tb))
        out.append(cmp)
    return ServedComparison(run=run.path, served_file=served_file, model=run.model_name, precision=run.dtype,
                            workload=run.workload_label, at=list(at) if at else None, curves=out,
                            unmatched=unmatched, notes=notes)

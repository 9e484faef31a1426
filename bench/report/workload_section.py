"""The report's workload section: from workload files (`tokenbench workload`), served results (`--served FILE`)
and projected points, the InferenceX-style throughput-interactivity curve, $/M tokens against interactivity,
and a table at one chosen interactivity (`--at-interactivity U`), read on each curve's Pareto frontier
(costmodel/frontier.py: log-linear between neighbours, never extrapolated).

Each curve is one device / precision / workload / engine model from one source: measured (a workload file's
own points, at the price and power recorded in it), projected (drawn dashed, at the device's catalog price),
or served (markers, at the hardware's catalog price and all-in kW).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.report import page
from costmodel.frontier import curves as group_curves
from costmodel.frontier import interactivity_range, placed, point_at, point_frontier, span_text
from costmodel.workload_economics import WorkloadEconomics, WorkloadPoint, workload_economics

MEASURED = ("Measured: tokenbench's workload points, composed from steps measured on the device (`tokenbench "
            "workload`): chunked-prefill = continuous batching with chunked prefill (circles), prefill-then-decode = "
            "a cohort prefilled, then decoded (squares); c = concurrency.")
PROJECTED = "Projected (dashed, labelled 'projected'): points carried onto a device not measured; a PROJECTION."
NOT_PROJECTED = "Projected: nothing in this figure."
SERVED = ("Served (crosses): a serving engine's published results from {file}, at their hardware; interactivity "
          "there is the median over requests of 1 / time per output token, tokenbench's 1 / the mean.")
CPU_NOTE = "Measured on a CPU, not an accelerator: CPU figures."  # as build.py's runs say it
FRONTIER = ("Each line joins a curve's Pareto frontier (points no other point of the curve beats on both axes); "
            "hollow markers are off it; points that do not fit in memory are not drawn.")


@dataclass
class Pricing:
    price_per_hour: float | None
    power_kw: float | None
    source: str


@dataclass(eq=False)
class WCurve:
    """One curve of the workload figures: its points, frontier and price."""

    source: str  # measured | projected | served
    device: str
    device_kind: str  # cpu, cuda, or "catalog" for served/projected devices
    model: str
    precision: str
    workload: str
    engine_model: str
    points: list[WorkloadPoint]
    pricing: Pricing
    origin: str  # the file the points came from
    date: str = ""
    legend: str = ""
    frontier: list[WorkloadPoint] = field(default_factory=list)

    def __post_init__(self):
        self.frontier = point_frontier(self.points)

    @property
    def placed(self) -> list[WorkloadPoint]:
        return [p for p in self.points if placed(p)]

    def economics(self, point: WorkloadPoint) -> WorkloadEconomics:
        return workload_economics(point, self.pricing.price_per_hour, self.pricing.power_kw)

    @property
    def priced(self) -> bool:
        return self.pricing.price_per_hour is not None


def _catalog_pricing(device: str) -> Pricing:
    from costmodel import catalog
    quote = catalog.catalog_price(device)
    if quote is None:
        return Pricing(None, catalog.all_in_kw(device), f"no catalog price for {device}")
    return Pricing(quote.price_per_hour, quote.all_in_kw, f"catalog ({quote.source})"
                   + (", provisional" if quote.provisional else ""))


def build_curves(workloads: list, served: list[WorkloadPoint], served_file: str | None,
                 extra: list[WorkloadPoint], allow_mixed: bool) -> tuple[list[WCurve], list[str]]:
    """Every curve to draw, and notes on what was left out (never silently)."""
    out, notes = [], []
    for w in workloads:
        src = w.price_sources
        for pts in group_curves(w.workload_points).values():
            p = pts[0]  # measured at the file's own price; projected or served at the device's catalog price
            pricing = (Pricing(w.price_per_hour, w.power_kw, f"recorded in {Path(w.path).name} ({src})")
                       if p.source == "measured" else _catalog_pricing(p.device))
            kind = (w.device.kind or "?") if p.source == "measured" else "catalog"
            out.append(WCurve(p.source, p.device, kind, p.model, p.precision, p.workload, p.engine_model, pts,
                              pricing, Path(w.path).name, w.date))
    for pts in group_curves(extra).values():
        p = pts[0]
        out.append(WCurve(p.source, p.device, "catalog", p.model, p.precision, p.workload, p.engine_model, pts,
                          _catalog_pricing(p.device), "projection"))
    models = {c.model for c in out}
    kept = []
    for pts in group_curves(served).values():
        p = pts[0]
        if p.model not in models and not allow_mixed:
            notes.append(f"Served {p.label} ({p.model}, {len(pts)} point(s)) not drawn: no workload file of model "
                         f"{p.model} (--allow-mixed draws it anyway).")
            continue
        kept.append(WCurve("served", p.device, "catalog", p.model, p.precision, p.workload, "served", pts,
                           _catalog_pricing(p.device), Path(served_file).name if served_file else "served"))
        unplaced = [q for q in pts if not placed(q)]
        if unplaced:
            notes.append(f"Served {p.label}: concurrency {', '.join(str(q.concurrency) for q in unplaced)} not "
                         f"placed (no interactivity published).")
    out += kept
    _legends(out, len(models) > 1)
    for c in out:
        if not c.placed:
            notes.append(f"{c.legend}: no point that fits and has an interactivity; nothing drawn.")
        for q in c.points:
            if not q.fits:
                notes.append(f"{c.legend}: concurrency {q.concurrency} does not fit in device memory"
                             + (f" ({q.bytes_needed:,} bytes needed of {q.memory_bytes:,})"
                                if q.bytes_needed and q.memory_bytes else "") + ": not an operating point.")
    return out, notes


def _legends(curves: list[WCurve], mixed_models: bool) -> None:
    for c in curves:
        parts = [c.device, c.precision, c.workload]
        if mixed_models:
            parts.insert(1, c.model)
        if c.source == "served":
            c.legend = "served: " + (c.points[0].label or " · ".join(parts))
        else:
            c.legend = " · ".join(parts + [c.engine_model]) + (" (projected)" if c.source == "projected" else "")
    seen: dict[str, int] = {}
    for c in curves:
        seen[c.legend] = seen.get(c.legend, 0) + 1
    for c in curves:
        if seen[c.legend] > 1:
            c.legend += f" ({c.origin})"


def describe(curves: list[WCurve], *status: str) -> str:
    """A caption's fixed part: devices with what each is (measured / projected / served), model, precision,
    workload, date."""
    def uniq(xs):
        return list(dict.fromkeys(xs))

    devices = uniq(f"{c.device} ({c.source}{', ' + c.device_kind if c.source == 'measured' else ''})"
                   for c in curves)
    text = (f"Device: {', '.join(devices)}. Model: {', '.join(uniq(c.model for c in curves))}. "
            f"Dtype: {', '.join(uniq(c.precision for c in curves))}. Workload (ISL/OSL): "
            f"{', '.join(uniq(c.workload for c in curves))}. Date: "
            f"{', '.join(uniq(c.date for c in curves if c.date)) or 'undated'}. " + " ".join(status))
    if any(c.source == "measured" and c.device_kind == "cpu" for c in curves):
        text += " " + CPU_NOTE
    return text


def _status(curves: list[WCurve], served_file: str | None) -> list[str]:
    out = [MEASURED] if any(c.source == "measured" for c in curves) else []
    out.append(PROJECTED if any(c.source == "projected" for c in curves) else NOT_PROJECTED)
    if any(c.source == "served" for c in curves):
        out.append(SERVED.format(file=served_file))
    out.append(FRONTIER)
    return out


# --- formatting (costmodel.number_format: sig for rates, money for dollars) ---------------------------------------

def _sig(x) -> str:
    from costmodel.number_format import sig

    return sig(x)


def _money(x) -> str:
    from costmodel.number_format import money

    return money(x)


def at_interactivity_row(c: WCurve, u: float) -> list[str]:
    """One row of the generation table: the curve read at interactivity u, or where it is not."""
    got = point_at(c.points, u)
    head = [c.legend, c.source, c.device, c.precision, c.workload, c.engine_model]
    if got is None:
        rng = interactivity_range(c.points)
        span = f" ({span_text(rng)})"
        return head + ["-"] * 6 + [f"outside the {c.source} range{span}"]
    e = c.economics(got.as_point())
    return head + [_sig(got.total_tokens_per_s), _sig(got.output_tokens_per_s), _money(e.cost_per_mtok_total),
                   _money(e.cost_per_mtok_output), _money(e.cost_per_mtok_input), _sig(e.tokens_per_s_per_mw),
                   got.between]


AT_HEADER = ["curve", "source", "device", "dtype", "workload", "engine model", "tokens/s per GPU (total)",
             "output tokens/s per GPU", "$/M total", "$/M output", "$/M input", "tokens/s per MW", "read"]


def section(rep) -> None:
    """Add the workload figures and tables to a build.Report (its blocks, figure files and names)."""
    opts = rep.options
    b = rep.blocks
    b.append(page.Heading("Workload: throughput, interactivity and cost", 2))
    curves, notes = build_curves(rep.workloads, opts.served, opts.served_file, opts.extra_points, opts.allow_mixed)
    drawn = [c for c in curves if c.placed]
    if notes:
        b.append(page.Bullets(notes))
    if not drawn:
        b.append(page.Para("No workload point that fits and has an interactivity: nothing to draw."))
        return
    status = _status(drawn, opts.served_file)
    caption = describe(drawn, "Total (input + output) tokens/s per GPU against tokens/s per user, one line per "
                              "device / precision / workload / engine model.", *status)
    rep.figure(rep.name("workload-throughput-interactivity"), "workload throughput vs interactivity",
               lambda p: _plots().throughput(drawn, p, "Throughput vs interactivity (workload)", caption))
    rows = []
    for c in drawn:
        front = {id(p) for p in c.frontier}
        for p in c.points:
            rows.append([c.legend, c.source, str(p.concurrency), _sig(p.interactivity), _sig(p.total_tokens_per_s),
                         _sig(p.output_tokens_per_s), _sig(p.input_tokens_per_s), _sig(p.ttft_s),
                         "yes" if p.fits else "no", "yes" if id(p) in front else ""])
    b.append(page.Table(["curve", "source", "concurrency", "tokens/s per user", "tokens/s per GPU (total)",
                         "output tokens/s per GPU", "input tokens/s per GPU", "TTFT s", "fits", "on frontier"], rows,
                        caption="The plotted points ('-': not known or not an operating point).", align_left={0, 1}))

    priced = [c for c in drawn if c.priced]
    unpriced = [c.legend for c in drawn if not c.priced]
    if priced:
        extra = [f"Not drawn (no price): {', '.join(unpriced)}."] if unpriced else []
        cost_caption = describe(priced, "$/M tokens (total: the device-hour's price over all tokens, input and "
                                        "output, InferenceX's convention; output and input $/M in the table are "
                                        "each the whole hour over one kind, so they do not add up) against tokens/s "
                                        "per user.", *_status(priced, opts.served_file), *extra)
        rep.figure(rep.name("workload-cost"), "workload cost vs interactivity",
                   lambda p: _plots().cost(priced, p, "Cost per token vs interactivity (workload)", cost_caption))
        rows = []
        for c in priced:
            for p in c.placed:
                e = c.economics(p)
                rows.append([c.legend, str(p.concurrency), _sig(p.interactivity), _money(e.cost_per_mtok_total),
                             _money(e.cost_per_mtok_output), _money(e.cost_per_mtok_input),
                             _sig(e.tokens_per_s_per_mw), _sig(e.joules_per_token), c.pricing.source])
        b.append(page.Table(["curve", "concurrency", "tokens/s per user", "$/M total", "$/M output", "$/M input",
                             "tokens/s per MW", "J/token (all-in)", "price and power"], rows,
                            caption="The plotted costs and the rest of each point's economics.", align_left={0, 8}))
    else:
        b.append(page.Para("No curve carries a price: no cost figure (give `--price-per-hour` and `--power-kw` to "
                           "`tokenbench workload`)."))

    u = opts.at_interactivity
    if u is None:
        b.append(page.Para("Give `--at-interactivity U` for a table of every curve at U tokens/s per user."))
        return
    b.append(page.Heading(f"At {_sig(u)} tokens/s per user", 3))
    b.append(page.Table(AT_HEADER, [at_interactivity_row(c, u) for c in drawn],
                        caption=f"Each curve read on its Pareto frontier at {_sig(u)} tokens/s per user, log-linear "
                                f"between the two neighbouring points (never extrapolated: outside a curve's range "
                                f"it says so). $/M total/output/input: InferenceX's convention. Priced as in the cost "
                                f"table.", align_left={0, 1, 2, 3, 4, 5, 12}))


def _plots():
    from bench.report import workload_plots
    return workload_plots

"""A report for a set of runs: the figures, the tables with the figures they plot, the page in two forms."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench.report import cell_format, page, plots
from bench.report.load import Ceilings, Run, ceilings, check_mixing, curves

MEASURED_OPS = "Measured: each op's and the layer's median (p50) time, after a check against a float64 reference."
DERIVED_STEP = "Derived: the decode step = layers x layer + final_norm + lm_head; tokens/s per device = batch / " \
               "step time, per user = 1 / step time."
DERIVED_COST = "Derived: $/M tokens = $ per device-hour / (tokens/s x 3600 / 1e6) and tokens/s per MW = tokens/s " \
               "x 1000 / all-in kW, from the derived tokens/s and the price and power recorded in each run."
NOT_PROJECTED = "Projected: nothing in this figure."
CPU_NOTE = "Measured on a CPU, not an accelerator: CPU figures."


@dataclass
class Options:
    allow_mixed: bool = False
    pairs: list = field(default_factory=list)  # [(a, b)]: each a Run or a catalog device key
    project_to: list = field(default_factory=list)  # catalog device keys: runs projected there, drawn dashed
    project_as: str | None = None  # dtype the projections serve in (default: the run's)
    # workload section (bench/report/workload_section.py): served results drawn as markers, a table at one interactivity,
    # and points projected onto other devices (WorkloadPoint, source "projected"), drawn dashed
    served: list = field(default_factory=list)
    served_file: str | None = None
    at_interactivity: float | None = None
    extra_points: list = field(default_factory=list)


def _unique(values) -> list:
    return list(dict.fromkeys(values))


def describe(runs: list[Run], *status: str) -> str:
    """A caption's fixed part: device, model, dtype, date, and what is measured, derived or projected."""
    devices = _unique(r.device.described for r in runs)
    text = (f"Device: {', '.join(devices)}. Model: {', '.join(_unique(r.model for r in runs))}. "
            f"Dtype: {', '.join(_unique(r.dtype for r in runs))}. "
            f"Date: {', '.join(_unique(r.record.date for r in runs))}. " + " ".join(status))
    if any(r.device.is_cpu for r in runs):
        text += " " + CPU_NOTE
    return text


class Report:
    """Collects blocks and written files while the figures are drawn."""

    def __init__(self, runs: list[Run], out: Path, options: Options, workloads: list | None = None):
        self.runs, self.out, self.options = runs, out, options
        self.workloads = workloads or []  # bench.records.schema.WorkloadRecord, read by store.load_workload
        models = {}
        for w in self.workloads:
            models.setdefault(w.model_name, []).append(Path(w.path).name)
        if len(models) > 1 and not options.allow_mixed:
            from bench.errors import UserError

            listed = "; ".join(f"{m}: {', '.join(files)}" for m, files in models.items())
            raise UserError(f"the workload files mix models ({listed}); report each model separately, or pass "
                            f"--allow-mixed to draw them together, labelled")
        self.mixed = check_mixing(runs, options.allow_mixed)
        self.curves = curves(runs, self.mixed)
        self.blocks: list = []
        self.files: list[Path] = []
        self._names: set[str] = set()

    def name(self, stem: str) -> str:
        """A file name in the report folder not used yet by this report."""
        base = re.sub(r"[^a-z0-9.]+", "-", stem.lower())[:80].strip("-.") or "figure"
        name, i = f"{base}.png", 1
        while name in self._names:
            i += 1
            name = f"{base}-{i}.png"
        self._names.add(name)
        return name

    def figure(self, name: str, alt: str, draw) -> None:
        caption = draw(self.out / name)
        self.files.append(self.out / name)
        self.blocks.append(page.Image(name, alt, caption))

    # --- sections ---

    def inputs(self) -> None:
        b = self.blocks
        b.append(page.Heading("tokenbench report", 1))
        from bench import __version__
        files = len(self.runs) + len(self.workloads)
        b.append(page.Para(f"Made by tokenbench {__version__} from {files} result file(s). Every "
                           f"figure below is read from these files; measured, derived and projected figures are "
                           f"labelled as such."))
        if self.workloads:
            b.append(page.Table(["file", "device", "kind", "model", "dtype", "ISL/OSL", "concurrency", "TP",
                                 "created", "$/device-hour", "all-in kW", "points", "status"],
                                [_workload_row(w) for w in self.workloads], caption="Workload files.",
                                align_left={0, 1, 2, 3, 4, 5, 6, 8, 11, 12}))
        if not self.runs:
            return
        rows = []
        for r in self.runs:
            rec = r.record
            rows.append([r.path.name, r.label, r.device.display_name, r.device.kind or "?", r.model, r.dtype,
                         rec.created or "-", ", ".join(_unique(s.backend for s in rec.steps)) or "-",
                         cell_format.num(rec.ceilings.measured_gbps), cell_format.num(rec.price_per_hour),
                         cell_format.num(rec.power_kw), rec.status])
        b.append(page.Table(["file", "label", "device", "kind", "model", "dtype", "created", "backends",
                             "measured copy GB/s", "$/device-hour", "all-in kW", "status"], rows,
                            align_left={0, 1, 2, 3, 4, 5, 6, 7, 11}))
        notes = []
        if self.mixed:
            notes.append("Mixed models or dtypes (--allow-mixed): curves on one plot are not like for like.")
        for r in self.runs:
            if r.device.is_cpu:
                notes.append(f"{r.label}: {CPU_NOTE}")
            if r.record.price_per_hour:  # where its $/M came from (a CPU catalog estimate says so)
                notes.append(f"{r.label}: priced at ${r.record.price_per_hour:.4g}/device-hour "
                             f"[{r.record.price.source or 'source not recorded'}].")
            if r.record.price_hint:
                notes.append(f"{r.label}: {r.record.price_hint}.")
            bad = [x for x in r.record.rows if not (x.valid and x.seconds_p50)]
            for x in bad:
                notes.append(f"{r.label}: {x.op} batch {x.batch} context {x.context} {x.backend} not "
                             f"timed ({x.skipped or x.check or 'no timing'}).")
            for s in r.record.steps:
                if not s.valid:
                    notes.append(f"{r.label}: decode step batch {s.batch} context {s.context} not derived "
                                 f"({'invalid' if s.reason is None else s.reason}).")
        if notes:
            b.append(page.Heading("Notes", 2))
            b.append(page.Bullets(notes))

    def throughput(self) -> None:
        b = self.blocks
        b.append(page.Heading("Throughput vs interactivity", 2))
        if not self.curves:
            b.append(page.Para("No run has a valid decode step: nothing to draw."))
            return
        runs = _unique(c.run for c in self.curves)
        caption = describe(runs, "Tokens/s per device against tokens/s per user across the batch sweep (b = batch), "
                                 "one curve per run, backend and context; the Pareto frontier is marked.",
                           MEASURED_OPS, DERIVED_STEP, NOT_PROJECTED)
        self.figure(self.name("throughput-interactivity"), "throughput vs interactivity",
                    lambda p: plots.throughput_interactivity(self.curves, p, "Throughput vs interactivity", caption))
        front = set(plots.pareto([(s.tokens_per_s_per_user, s.tokens_per_s) for c in self.curves
                                  for s in c.steps if s.fits is not False]))
        rows = [[c.label, c.backend, str(s.batch), str(s.context), cell_format.scaled(s.step_seconds, 1e3),
                 cell_format.num(s.tokens_per_s), cell_format.num(s.tokens_per_s_per_user), cell_format.num(s.fits),
                 "yes" if (s.tokens_per_s_per_user, s.tokens_per_s) in front else ""]
                for c in self.curves for s in c.steps]
        b.append(page.Table(["curve", "backend", "batch", "context", "step ms (derived)", "tokens/s per device",
                             "tokens/s per user", "fits in memory", "on frontier"], rows,
                            caption="The plotted points (derived decode steps).", align_left={0, 1}))

    def cost(self) -> None:
        b = self.blocks
        b.append(page.Heading("Cost per token", 2))
        priced = [c for c in self.curves if any(s.cost_per_mtok or s.tokens_per_s_per_mw for s in c.steps)]
        unpriced = _unique(c.run.label for c in self.curves if c not in priced)
        projected, projection_notes = [], []
        if self.options.project_to:
            from bench.report import generation
            projected, projection_notes = generation.projections(self.runs, self.options.project_to,
                                                                 self.options.project_as)
        if not priced and not projected:
            b.append(page.Para("No run carries a price or a power figure (give `--price-per-hour` and "
                               "`--power-kw` to `tokenbench run`): no cost curve."))
            return
        status = [DERIVED_COST]
        if projected:
            as_dtype = f" as {self.options.project_as}" if self.options.project_as else ""
            status.append(f"Projected (dashed, square markers): the runs carried onto "
                          f"{', '.join(self.options.project_to)}{as_dtype} by `tokenbench project` and costed at the "
                          f"catalog's price and all-in power; a PROJECTION, not a measurement: each op is assumed to "
                          f"reach there the fraction of its roofline bound it reached where measured (assumptions "
                          f"and notes on the report page).")
        else:
            status.append(NOT_PROJECTED)
        if unpriced:
            status.append(f"Not drawn (no price or power recorded): {', '.join(unpriced)}.")
        runs = _unique([c.run for c in priced] + [c.run for c in projected])
        caption = describe(runs, "$/M tokens and tokens/s per MW against tokens/s per user, one curve per run, "
                                 "backend and context.", *status)
        self.figure(self.name("cost"), "cost curves",
                    lambda p: plots.cost_curves(priced, projected, p, "Cost per token and per megawatt", caption))
        rows = [[c.label + (" (projected)" if c in projected else ""), c.backend, str(s.batch), str(s.context),
                 cell_format.num(s.tokens_per_s_per_user), cell_format.num(s.cost_per_mtok),
                 cell_format.num(s.tokens_per_s_per_mw)] for c in priced + projected for s in c.steps]
        if projection_notes:
            b.append(page.Para("Projections (as `tokenbench project` states them):"))
            b.append(page.Bullets(projection_notes))
        b.append(page.Table(["curve", "backend", "batch", "context", "tokens/s per user", "$/M tokens",
                             "tokens/s per MW"], rows, caption="The plotted points.", align_left={0, 1}))

    def rooflines(self) -> None:
        b = self.blocks
        groups: dict[tuple, list[Run]] = {}
        for r in self.runs:
            groups.setdefault((r.device.identity, r.dtype), []).append(r)
        for (device_id, dtype), runs in groups.items():
            b.append(page.Heading(f"Roofline: {runs[0].device.display_name}, {dtype}", 2))
            per_run = {r.label: ceilings(r) for r in runs}
            shown = _collapse(per_run)
            notes = _unique(n for c in per_run.values() for n in c.notes)
            peak_sources = _unique(r.measured_peak[1] for r in runs if r.measured_peak)
            status = [MEASURED_OPS, DERIVED_STEP.split(";")[0] + " (black stars).", NOT_PROJECTED,
                      "Ceilings: spec sheet solid, measured on the device dashed."]
            if notes:
                text = "; ".join(notes)
                status.append(text[:1].upper() + text[1:] + ".")
            if peak_sources:
                status.append("Measured FLOP ceiling: " + "; ".join(peak_sources) + ".")
            caption = describe(runs, "Each op (colour) and the whole decode step placed by arithmetic intensity "
                                     "and achieved TFLOP/s, under the roofline ceilings.", *status)
            self.figure(self.name(f"roofline-{device_id}-{dtype}"), f"roofline {device_id} {dtype}",
                        lambda p, runs=runs, shown=shown, caption=caption, dtype=dtype: plots.roofline(
                            runs, shown, p, f"Roofline: {runs[0].device.display_name}, {dtype}", caption))
            rows = [[label, cell_format.num(c.spec_tflops), cell_format.num(c.spec_gbps), cell_format.num(c.measured_tflops),
                     cell_format.num(c.measured_gbps)] for label, c in per_run.items()]
            b.append(page.Table(["run", "spec TFLOP/s", "spec GB/s", "measured TFLOP/s", "measured copy GB/s"],
                                rows, caption="Ceilings ('-': unknown).", align_left={0}))

    def efficiency(self) -> None:
        b = self.blocks
        for r in self.runs:
            rows = r.valid_rows()
            if not rows:
                continue
            key, ylabel, meaning = plots.efficiency_basis(r)
            points, cut = plots.efficiency_points(r)
            b.append(page.Heading(f"Efficiency: {r.label}", 2))
            status = [MEASURED_OPS, meaning, NOT_PROJECTED]
            over = sorted({x.op for x in rows if (getattr(x, key) or 0) > 1}, key=plots._op_rank)
            if over:
                status.append(f"Above 100% ({', '.join(over)}): faster than the bound allows, so that ceiling is not "
                              f"a true one there (a read-mostly op can outrun a copy, which reads and writes; or the "
                              f"data stayed in cache).")
            if cut:
                status.append(f"{len(points)} of the run's (batch, context) points shown; the table has them all.")
            caption = describe([r], "Each op's % of its roofline bound, per backend.", *status)
            self.figure(self.name(f"efficiency-{r.path.stem}"), f"efficiency {r.label}",
                        lambda p, r=r, caption=caption: plots.efficiency_bars(r, p, f"Efficiency: {r.label}",
                                                                              caption))
            rows = sorted(rows, key=lambda x: (x.context, x.batch, x.backend, plots._op_rank(x.op)))
            table = [[x.op, str(x.batch), str(x.context), x.backend, cell_format.scaled(x.seconds_p50, 1e6),
                      cell_format.num(x.tflops), cell_format.num(x.gbps), cell_format.num(x.intensity),
                      cell_format.pct(getattr(x, key))] for x in rows]
            b.append(page.Table(["op", "batch", "context", "backend", "p50 us", "TFLOP/s", "GB/s", "FLOP/byte",
                                 ylabel], table, caption="Measured op timings and the figures derived from them.",
                                align_left={0, 3}))

    def generation(self) -> None:
        if not self.options.pairs:
            return
        from bench.report import generation
        b = self.blocks
        b.append(page.Heading("Generation comparison", 2))
        for a, c in self.options.pairs:
            b.extend(generation.blocks(a, c))


def _workload_row(w) -> list[str]:
    wl = w.workload
    counts = {}
    for p in w.workload_points:
        counts[p.source] = counts.get(p.source, 0) + 1
    return [Path(w.path).name, w.device.display_name, w.device.kind or "?", w.model_name, w.dtype,
            w.workload_label, ",".join(map(str, wl.get("concurrency") or [])) or "-", str(wl.get("tp", 1)),
            w.created or "-", cell_format.num(w.price_per_hour), cell_format.num(w.power_kw),
            ", ".join(f"{n} {s}" for s, n in counts.items()) or "none", w.status]


def _collapse(per_run: dict[str, Ceilings]) -> dict[str, Ceilings]:
    """One set of ceiling lines when the runs agree, else one per run."""
    distinct = _unique((c.spec_tflops, c.spec_gbps, c.measured_tflops, c.measured_gbps) for c in per_run.values())
    if len(distinct) == 1:
        return {"": next(iter(per_run.values()))}
    return per_run


def build(runs: list[Run], out: Path, options: Options | None = None, workloads: list | None = None) -> list[Path]:
    """Write the PNGs, report.md and report.html into `out`; the paths written, page files last.

    Everything is drawn into a staging folder beside `out` and moved in only once the page is complete, so a
    report that fails halfway leaves no half-written folder behind."""
    options = options or Options()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        written = _build_into(runs, staging, options, workloads or [])
        out.mkdir(parents=True, exist_ok=True)
        final = []
        for path in written:
            os.replace(path, out / path.name)
            final.append(out / path.name)
        return final
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _build_into(runs: list[Run], out: Path, options: Options, workloads: list) -> list[Path]:
    rep = Report(runs, out, options, workloads)  # refuses mixed models or dtypes before anything is drawn
    rep.inputs()
    if runs:
        rep.throughput()
        rep.cost()
    if workloads or options.extra_points:
        from bench.report import workload_section
        workload_section.section(rep)
    if runs:
        rep.rooflines()
        rep.efficiency()
        rep.generation()
    md, htm = out / "report.md", out / "report.html"
    md.write_text(page.markdown(rep.blocks))
    htm.write_text(page.html_page(rep.blocks, out, "tokenbench report"))
    return rep.files + [md, htm]

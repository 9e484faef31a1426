"""The terminal tables of a workload run: per concurrency and engine model, throughput per device,
interactivity, latency, fit and $/M tokens; then how each point was composed (and checked end to end)."""
from __future__ import annotations

from bench.records.schema import WorkloadRecord
from bench.report.terminal_tables import Col, print_table
from costmodel.number_format import money, si
from costmodel.workload_economics import ENGINE_MODELS


def _n(value, fmt: str, scale: float = 1.0) -> str:
    return "-" if value is None else format(value * scale, fmt)


def print_workload(record: WorkloadRecord, points: list, console) -> None:
    """The tables of a workload record as the store reads it (bench.records.store.load, or store.as_record
    of a record just written); points: [(WorkloadPoint, Composition)] in the record's order."""
    dev, w = record.device, record.workload
    unit = "GPU" if dev.kind == "cuda" else "device (CPU)"
    if w.get("tp", 1) > 1:  # bench/workload/tp_group.py: the group's rates divided over its ranks
        unit = ("GPU" if dev.kind == "cuda" else "rank (CPU process)") + f" over a TP group of {w['tp']}"
    console.print(f"[bold]Workload[/] {record.model['name']} {record.dtype} on {dev.name}: ISL {w['isl']}, "
                  f"OSL {w['osl']}, prompt-token budget {w['chunk']} a step; rates are tokens/s per {unit}")
    for name in ("chunked-prefill", "prefill-then-decode"):
        console.print(f"[dim]{name}: {ENGINE_MODELS[name]}[/]")
    if w.get("ttft_model"):  # records written before the queueing model carry none: shown as they were
        console.print(f"[dim]chunked-prefill TTFT: {w['ttft_model']}; engine policy {w.get('engine_policy')}: "
                      f"{w.get('engine_policy_source', '')}[/]")
    for note in w.get("notes", []):
        console.print(f"[yellow]{note}[/]")
    if record.shared_machine_warning:
        console.print(f"[yellow]{record.shared_machine_warning}[/]", highlight=False)
    econ = record.economics or [{}] * len(points)
    cols = [Col("engine", right=False, key=True), Col("C", key=True), Col("total tok/s"), Col("out tok/s"),
            Col("in tok/s"), Col("tok/s/user"), Col("TTFT ms"), Col("e2e s"), Col("fits", right=False),
            Col("$/M total"), Col("$/M out"), Col("$/M in"), Col("add. $/M out"), Col("add. $/M in"),
            Col("tok/s/MW"), Col("J/tok")]
    metered = any(p.board_joules_per_token for p, _ in points)
    if metered:
        cols.append(Col("board J/tok"))
    wave = any(p.ttft_first_wave_s is not None for p, _ in points)
    if wave:
        cols.insert(7, Col("1st-wave TTFT ms"))
    rows = []
    for (p, _), e in zip(points, econ):
        engine = "chunked" if p.engine_model == "chunked-prefill" else "cohort"
        fits = "yes" if p.fits else f"no ({p.bytes_needed / 2**30:,.1f} GiB)"
        if p.total_tokens_per_s is None:
            rows.append([engine, str(p.concurrency)] + ["-"] * (6 + wave) + [fits] + ["-"] * (7 + metered))
            continue
        rows.append([engine, str(p.concurrency), _n(p.total_tokens_per_s, ",.1f"), _n(p.output_tokens_per_s, ",.1f"),
                     _n(p.input_tokens_per_s, ",.1f"), _n(p.interactivity, ",.1f"), _n(p.ttft_s, ",.0f", 1e3)]
                    + ([_n(p.ttft_first_wave_s, ",.0f", 1e3)] if wave else [])
                    + [_n(p.e2e_latency_s, ",.2f"), fits, money(e.get("cost_per_mtok_total")),
                     money(e.get("cost_per_mtok_output")), money(e.get("cost_per_mtok_input")),
                     money(e.get("additive_cost_per_mtok_output")), money(e.get("additive_cost_per_mtok_input")),
                     si(e.get("tokens_per_s_per_mw")), _n(e.get("joules_per_token"), ",.3g")]
                    + ([_n(p.board_joules_per_token, ",.3g")] if metered else []))
    print_table(console, "Workload points (composed from measured steps)", cols, rows)
    if not metered:
        console.print(f"[dim]J/tok is all-in (catalog kW); {(record.energy or {}).get('reason') or 'no board reading'}[/]")
    console.print("[dim]$/M total, out, in: InferenceX's convention, the whole device-hour charged to each kind of "
                  "token in turn (not additive). add. $/M: each kind charged only its share of device time "
                  "(input + output add up to the hour's price).[/]")
    if record.price_per_hour:  # where the $/M came from: a CPU catalog estimate says so
        console.print(f"price: ${record.price_per_hour:.4g}/device-hour [{record.price.source or 'source not recorded'}]",
                      highlight=False, markup=False)
    if record.price_hint:
        console.print(f"[dim]{record.price_hint}[/]")
    for p, _ in points:
        if p.note and p.engine_model == "chunked-prefill":
            console.print(f"[yellow]C={p.concurrency}: {p.note}[/]")

    cols = [Col("engine", right=False, key=True), Col("C", key=True), Col("step ms"), Col("decode-only ms"),
            Col("prefill ms"), Col("composed s"), Col("affine dev"), Col("measured s"), Col("meas./comp.")]
    rows = []
    for p, c in points:
        if not p.fits:
            continue
        engine = "chunked" if c.engine_model == "chunked-prefill" else "cohort"
        off = "-" if c.affine_deviation is None else f"{c.affine_deviation:.1%}" + ("" if c.affine else " (!)")
        rows.append([engine, str(c.concurrency), _n(c.step_seconds, ",.2f", 1e3),
                     _n(c.decode_only_seconds, ",.2f", 1e3), _n(c.prefill_seconds, ",.1f", 1e3),
                     _n(c.wall_seconds, ",.3f"), off, _n(c.measured_wall_seconds, ",.3f"),
                     _n(c.measured_over_composed, ".3f") + ("" if c.agrees is not False else " (!)")])
    if any(c.agrees is False for _, c in points):
        from bench.workload.compose import E2E_TOLERANCE

        console.print(f"[yellow](!) measured end to end more than {E2E_TOLERANCE:.0%} away from the composition[/]")
    if rows:
        print_table(console, "How each point was composed (affine dev: the middle context's step off the line "
                             "through the ends)", cols, rows)
    if dev.is_cpu:
        console.print("[yellow]Measured on a CPU: these are CPU figures, not an accelerator's.[/]")


def _err(predicted, served) -> str:
    return "-" if predicted is None or not served else f"{predicted / served - 1:+.0%}"


def print_gaps(gaps: list, policy: str, budget: int, what: str, console) -> None:
    """Served beside the record's chunked points as written (before) and composed again under `policy`
    (after), with each prediction's error (predicted / served - 1); gaps: bench.workload.recompose.Gap."""
    cols = [Col("C", key=True), Col("figure", right=False, key=True), Col("served"), Col("before"), Col("err"),
            Col("after"), Col("err "), Col("after 1st wave")]
    rows = []
    for g in gaps:
        b, a, s = g.before, g.after, g.served
        for name, served, get, fmt in (("total tok/s", s.total_tokens_per_s, "total_tokens_per_s", ",.1f"),
                                       ("tok/s/user", s.tokens_per_s_per_user, "interactivity", ",.2f"),
                                       ("median TTFT s", s.median_ttft_s, "ttft_s", ",.1f")):
            old = None if b is None else getattr(b, get)
            new = None if a is None else getattr(a, get)
            wave = "-" if a is None or get != "ttft_s" else _n(a.ttft_first_wave_s, fmt)
            rows.append([str(g.concurrency), name, format(served, fmt), _n(old, fmt), _err(old, served),
                         _n(new, fmt), _err(new, served), wave])
    print_table(console, f"Chunked prefill: served vs the record as written (before) and composed again under "
                         f"--engine-policy {policy}, budget {budget:,} tokens a step (after)", cols, rows)
    console.print(f"[dim]served: {what}[/]")
    console.print("[dim]err: predicted / served - 1. The after composition reads the same measured steps; where the "
                  "engine runs its own kernels the error mixes kernel and engine differences.[/]")

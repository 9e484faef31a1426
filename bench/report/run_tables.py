"""The terminal tables of a run: every measured row, then the derived decode steps."""
from __future__ import annotations

from bench.records.schema import MeasuredRow, PeakRecord, RunRecord
from bench.report.terminal_tables import Col, print_table
from costmodel.number_format import money


def _num(value, fmt: str, scale: float = 1.0) -> str:
    return "-" if value is None else format(value * scale, fmt)


def print_summary(record: RunRecord, console) -> None:
    """The tables of a run record as the store reads it (bench.records.store.load, or store.as_record of a
    record just written)."""
    dev = record.device
    head = f"{dev.name} ({dev.kind}), {record.model['name']} {record.dtype}"
    copy = record.ceilings.measured_gbps
    if copy:
        head += f", measured copy bandwidth {copy:.1f} GB/s"
    phase = record.phase or "decode"
    op_cols = [Col("op", right=False, key=True), Col("batch", key=True),
               Col("ctx" if phase == "decode" else "tokens@prefix", key=True),
               Col("backend", right=False, key=True), Col("p50 us"), Col("noise"), Col("TFLOP/s"), Col("GB/s"),
               Col("% copy BW"), Col("% spec roof"), Col("check", right=False, wrap=True)]
    op_rows = []
    for r in record.rows:
        routing = getattr(r, "routing", None)  # MoE rows: the routing distribution they were measured at
        keys = [r.op + (f" {routing}" if routing else ""), str(r.batch), str(_row_where(r)), r.backend]
        if r.seconds_p50 is None:
            status = r.skipped or r.check or "not timed"
            op_rows.append(keys + ["-"] * 6 + [f"[red]{status}[/]"])
            continue
        noise = _num(r.noise, ".1%") + ("!" if r.noisy else "") + ("?" if r.unreliable else "")
        op_rows.append(keys + [_num(r.seconds_p50, ",.1f", 1e6), noise, _num(r.tflops, ".3f"),
                               _num(r.gbps, ".1f"), _num(r.pct_copy_bw, ".0%"),
                               _num(r.efficiency_spec, ".0%"), f"ok {r.rel_error:.1e}"])
    print_table(console, f"Ops: {head}", op_cols, op_rows)

    if record.kind == "moe":
        print_moe_steps(record, console)
        _print_notes(record, console)
        return
    if phase != "decode":
        _print_phase_steps(record, console)
        _print_notes(record, console)
        return
    step_cols = [Col("batch", key=True), Col("ctx", key=True), Col("backend", right=False, key=True),
                 Col("step ms"), Col("tok/s"), Col("tok/s/user"), Col("GB/s"), Col("% copy BW"),
                 Col("fits", right=False), Col("$/M tok"), Col("tok/s/MW")]
    step_rows = []
    for s in record.steps:
        keys = [str(s.batch), str(s.context), s.backend]
        if not s.valid:
            step_rows.append(keys + ["-"] * 5 + ["yes" if s.fits else "no", "-", f"[red]{_reason(s)}[/]"])
            continue
        fits = "yes" if s.fits else f"no ({s.bytes_needed / 2**30:.0f} GiB)"
        step_rows.append(keys + [_num(s.step_seconds, ",.2f", 1e3), _num(s.tokens_per_s, ",.1f"),
                                 _num(s.tokens_per_s_per_user, ",.1f"), _num(s.gbps, ".1f"),
                                 _num(s.pct_copy_bw, ".0%"), fits, money(s.cost_per_mtok),
                                 _num(s.tokens_per_s_per_mw, ",.0f")])
    print_table(console, "Decode step (derived: layers x layer + final_norm + lm_head)", step_cols, step_rows)
    measured = [s for s in record.steps if s.measured_step_seconds]
    if measured:  # --full-model: the whole model timed, every layer with its own weights, beside the derivation
        cols = [Col("batch", key=True), Col("ctx", key=True), Col("backend", right=False, key=True),
                Col("derived ms"), Col("measured ms"), Col("measured tok/s"), Col("derived/measured")]
        rows = [[str(s.batch), str(s.context), s.backend, _num(s.step_seconds, ",.2f", 1e3),
                 _num(s.measured_step_seconds, ",.2f", 1e3),
                 _num(s.batch / s.measured_step_seconds, ",.1f"), _num(s.derived_over_measured, ".3f")]
                for s in measured]
        print_table(console, "Whole model measured (--full-model)", cols, rows)
    _print_notes(record, console)


def print_moe_steps(record: RunRecord, console) -> None:
    """`tokenbench moe`: the MoE MLPs of one step per routing and backend, with what the routing activated."""
    cols = [Col("tokens", key=True), Col("routing", right=False, key=True), Col("backend", right=False, key=True),
            Col("active experts"), Col("heaviest expert tokens"), Col("MoE step ms"), Col("tok/s"), Col("GB/s"),
            Col("% copy BW"), Col("not timed", right=False, wrap=True)]
    rows = []
    for s in record.steps:
        keys = [str(s.batch), s.routing or "-", s.backend, _num(s.active_experts_measured, ".1f"),
                _num(s.max_tokens_per_expert, ".1f")]
        if not s.valid:
            rows.append(keys + ["-"] * 4 + [f"[red]{_reason(s)}[/]"])
            continue
        rows.append(keys + [_num(s.step_seconds, ",.3f", 1e3), _num(s.tokens_per_s, ",.1f"), _num(s.gbps, ".1f"),
                            _num(s.pct_copy_bw, ".0%"), ""])
    print_table(console, "MoE step (derived: moe_layers x MoE block; attention, dense layers and LM head excluded; "
                         "experts and heaviest expert: mean over the timed input sets)", cols, rows)


def _print_notes(record: RunRecord, console) -> None:
    if record.bandwidth_warning:
        console.print(f"[yellow]{record.bandwidth_warning}[/]")
    if record.shared_machine_warning:
        console.print(f"[yellow]{record.shared_machine_warning}[/]", highlight=False)
    if record.price_per_hour:  # where the $/M came from: a CPU catalog estimate says so
        console.print(f"price: ${record.price_per_hour:.4g}/device-hour [{record.price.source or 'source not recorded'}]",
                      highlight=False, markup=False)
    if record.price_hint:
        console.print(f"[dim]{record.price_hint}[/]")
    if record.device.is_cpu:
        console.print("[yellow]Measured on a CPU: these are CPU figures, not an accelerator's.[/]")


def _reason(step) -> str:
    return "" if step.reason is None else step.reason


def _row_where(r: MeasuredRow) -> str:
    """The context column: decode rows' context; prefill rows' chunk tokens @ prefix; mixed rows' context."""
    if r.phase == "prefill" and (r.chunk_tokens is not None or "chunk_tokens" in r.nulls):
        return f"{r.chunk_tokens}@{r.prefix}"
    if r.phase == "prefill":
        return f"prompt {r.prompt}"
    return str(r.context)


def _print_phase_steps(record: RunRecord, console) -> None:
    if record.phase == "prefill":
        cols = [Col("batch", key=True), Col("prompt", key=True), Col("chunk", key=True),
                Col("backend", right=False, key=True), Col("step ms"), Col("TTFT ms"), Col("prompt tok/s"),
                Col("TFLOP/s"), Col("% spec FLOPs"), Col("% meas. FLOPs"), Col("fits", right=False), Col("$/M in tok")]
        where = ("prompt", "chunk")

        def figures(s):
            return [_num(s.step_seconds, ",.2f", 1e3), _num(s.time_to_first_token_s, ",.2f", 1e3),
                    _num(s.prompt_tokens_per_s, ",.1f"), _num(s.tflops, ",.3f"),
                    _num(s.pct_spec_flops, ".0%"), _num(s.pct_measured_flops, ".0%")]
        title = "Prefill step (derived: layers x sum over chunks of the prefill layer + final_norm + lm_head)"
    else:
        cols = [Col("batch", key=True), Col("ctx", key=True), Col("chunk", key=True),
                Col("backend", right=False, key=True), Col("step ms"), Col("decode tok/s"), Col("prompt tok/s"),
                Col("tok/s/user"), Col("TFLOP/s"), Col("fits", right=False), Col("$/M tok")]
        where = ("context", "chunk")

        def figures(s):
            return [_num(s.step_seconds, ",.2f", 1e3), _num(s.tokens_per_s, ",.1f"),
                    _num(s.prompt_tokens_per_s, ",.1f"), _num(s.tokens_per_s_per_user, ",.1f"),
                    _num(s.tflops, ",.3f")]
        title = "Mixed step (derived: layers x mixed layer + final_norm + lm_head); $/M over decode + prompt tokens"
    rows = []
    n_figures = len(cols) - 6  # 4 keys, fits, and the last column ($/M, or the reason a step is missing)
    for s in record.steps:
        keys = [str(s.batch), *(str(getattr(s, k)) for k in where), s.backend]
        if not s.valid:
            rows.append(keys + ["-"] * n_figures + ["yes" if s.fits else "no", f"[red]{_reason(s)}[/]"])
            continue
        fits = "yes" if s.fits else f"no ({s.bytes_needed / 2**30:.0f} GiB)"
        rows.append(keys + figures(s) + [fits, money(s.cost_per_mtok)])
    print_table(console, title, cols, rows)
    share = record.prefill_gemm_share_of_measured_peak
    if share is not None:
        console.print(f"prefill GEMMs together: {share:.0%} of the measured matmul peak")


def print_peak(record: PeakRecord, console) -> None:
    """The table of a `tokenbench peak` record (what the command prints, and `show` prints again)."""
    dev = record.device
    cols = [Col("metric", right=False, key=True), Col("dtype", right=False, key=True), Col("measured"),
            Col("spec"), Col("ratio"), Col("unit", right=False), Col("best shape", right=False), Col("noise"),
            Col("note", right=False, wrap=True)]
    rows = []
    for r in record.rows:
        note = r.skipped or r.stopped or ""
        if r.skipped:
            note = f"[yellow]skipped: {note}[/]"
        rows.append([r.metric, r.dtype, _num(r.measured, ".4g"), _num(r.spec, ".4g"),
                     _num(r.ratio, ".0%"), r.unit, r.best_shape_label or "-",
                     _num(r.noise, ".1%"), note])
    spec = "unknown" if dev.spec is None else dev.spec["name"]
    print_table(console, f"Measured ceilings: {dev.name} ({dev.kind}), spec {spec}", cols, rows)
    if dev.is_cpu:
        console.print("[yellow]Measured on a CPU: these are CPU figures, not an accelerator's; "
                      "a CPU has no spec-sheet entry, so spec and ratio are empty.[/]")

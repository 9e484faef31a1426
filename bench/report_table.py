"""The terminal tables of a run: every measured row, then the derived decode steps."""
from __future__ import annotations


def _num(value, fmt: str, scale: float = 1.0) -> str:
    return "-" if value is None else format(value * scale, fmt)


def print_summary(record: dict, console) -> None:
    from rich.table import Table

    dev = record["device"]
    head = f"{dev['name']} ({dev['kind']}), {record['model']['name']} {record['dtype']}"
    copy = record.get("measured_copy_gbps")
    if copy:
        head += f", measured copy bandwidth {copy:.1f} GB/s"
    rows = Table(title=f"Ops: {head}", title_justify="left")
    for col in ("op", "batch", "ctx", "backend", "p50 us", "noise", "TFLOP/s", "GB/s", "% copy BW",
                "% spec roof", "check"):
        rows.add_column(col, justify="left" if col in ("op", "backend", "check") else "right")
    for r in record["rows"]:
        if r.get("seconds_p50") is None:
            status = r.get("skipped") or r.get("check") or "not timed"
            rows.add_row(r["op"], str(r["batch"]), str(r["context"]), r["backend"], "-", "-", "-", "-", "-", "-",
                         f"[red]{status}[/]")
            continue
        noise = _num(r["noise"], ".1%") + ("!" if r.get("noisy") else "")
        rows.add_row(r["op"], str(r["batch"]), str(r["context"]), r["backend"], _num(r["seconds_p50"], ".1f", 1e6),
                     noise, _num(r["tflops"], ".3f"), _num(r["gbps"], ".1f"), _num(r.get("pct_copy_bw"), ".0%"),
                     _num(r.get("efficiency_spec"), ".0%"), f"ok {r['rel_error']:.1e}")
    console.print(rows)

    steps = Table(title="Decode step (derived: layers x layer + final_norm + lm_head)", title_justify="left")
    for col in ("batch", "ctx", "backend", "step ms", "tok/s", "tok/s/user", "GB/s", "% copy BW", "fits",
                "$/M tok", "tok/s/MW"):
        steps.add_column(col, justify="left" if col == "backend" else "right")
    for s in record["steps"]:
        if not s.get("valid"):
            steps.add_row(str(s["batch"]), str(s["context"]), s["backend"], "-", "-", "-", "-", "-",
                          "yes" if s["fits"] else "no", "-", f"[red]{s.get('reason', '')}[/]")
            continue
        fits = "yes" if s["fits"] else f"no ({s['bytes_needed'] / 2**30:.0f} GiB)"
        steps.add_row(str(s["batch"]), str(s["context"]), s["backend"], _num(s["step_seconds"], ".2f", 1e3),
                      _num(s["tokens_per_s"], ",.1f"), _num(s["tokens_per_s_per_user"], ",.1f"),
                      _num(s["gbps"], ".1f"), _num(s.get("pct_copy_bw"), ".0%"), fits,
                      _num(s.get("cost_per_mtok"), ",.4f"), _num(s.get("tokens_per_s_per_mw"), ",.0f"))
    console.print(steps)
    if record.get("bandwidth_warning"):
        console.print(f"[yellow]{record['bandwidth_warning']}[/]")
    hint = (record.get("price") or {}).get("hint")
    if hint:
        console.print(f"[dim]{hint}[/]")
    if record["device"]["kind"] == "cpu":
        console.print("[yellow]Measured on a CPU: these are CPU figures, not an accelerator's.[/]")

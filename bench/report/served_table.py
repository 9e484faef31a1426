"""The table `tokenbench served` prints: each point of a served-results file, per GPU, as InferenceX reports
it (total / output / input tokens/s per GPU, median interactivity, median time to first token), and the
llama-bench step rates that are no served workload beside it."""
from __future__ import annotations

from costmodel.number_format import sig
from costmodel.served_results import ServedFile


def point_columns() -> list:
    from bench.report.terminal_tables import Col

    return [Col("hardware", right=False, key=True), Col("model", right=False, wrap=True), Col("prec", right=False),
            Col("GPUs"), Col("C", key=True), Col("ISL"), Col("OSL"), Col("total /GPU"), Col("output /GPU"),
            Col("input /GPU"), Col("tok/s /user"), Col("TTFT s")]


def point_rows(f: ServedFile) -> list[list[str]]:
    return [[p.device, p.model, p.precision, str(p.tp), str(p.concurrency), str(p.isl), str(p.osl),
             sig(p.total_tokens_per_s, 4), sig(p.output_tokens_per_s, 4), sig(p.input_tokens_per_s, 4),
             sig(p.interactivity, 4), sig(p.ttft_s, 3)]
            for p in f.points]


def step_columns() -> list:
    from bench.report.terminal_tables import Col

    return [Col("test", right=False, key=True), Col("prompt tokens"), Col("generated tokens"),
            Col("tok/s (whole run)"), Col("what", right=False, wrap=True)]


def step_rows(f: ServedFile) -> list[list[str]]:
    return [[r.where.rsplit(": ", 1)[-1], str(int(r.total_input_tokens or 0)), str(int(r.total_output_tokens or 0)),
             sig(r.total_tokens_per_s, 4), r.note] for r in f.step_rates]


def reading_columns() -> list:
    from bench.report.terminal_tables import Col

    return [Col("hardware", right=False, key=True), Col("model", right=False, wrap=True), Col("prec", right=False),
            Col("ISL/OSL"), Col("tok/s /user", key=True), Col("tok/s /GPU"), Col("$/M"), Col("implied $/h"),
            Col("~C"), Col("what", right=False, wrap=True)]


def reading_rows(f: ServedFile) -> list[list[str]]:
    from costmodel.number_format import money

    return [[r.hardware, r.model, r.precision or "-", f"{r.isl}/{r.osl}" if r.isl and r.osl else "-",
             sig(r.interactivity, 3), format(r.tokens_per_s_per_gpu, ",.10g"), money(r.cost_per_mtok),
             money(r.implied_price_per_hour), str(r.approx_concurrency or "-"), r.what] for r in f.readings]


def print_served(f: ServedFile, console) -> None:
    from bench.report.terminal_tables import print_table

    def say(text: str) -> None:
        console.print(text, markup=False, highlight=False)

    say(f"{f.path}: {f.format_name}")
    if f.points:
        given = f.given.flags()
        if given:
            say(f"  given on the command line: {', '.join(given)}; per GPU = the run's totals / GPUs")
        say("  tokens/s per GPU (total, output, input); tok/s /user = 1000 / median time per output token (ms); "
            "TTFT = median time to first token; ISL, OSL = token totals / completed requests")
        print_table(console, "Served points (per GPU)", point_columns(), point_rows(f))
        for p in f.points:
            tag = f"{p.device} {p.model} C {p.concurrency}"
            if p.note:
                say(f"  {tag}: {p.note}")
            if p.reference and f.format in ("csv", "inferencex"):
                say(f"  {tag} source: {p.reference}")
    if f.readings:
        say("  not runs: readings interpolated on a published frontier, and vendor claims; implied $/h = $/M x "
            "tok/s per GPU x 3600 / 1e6 (the price the row's own figures imply)")
        print_table(console, "Published readings (per GPU)", reading_columns(), reading_rows(f))
        for r in f.readings:
            say(f"  {r.hardware} {r.model} {format(r.tokens_per_s_per_gpu, ',.10g')}: {r.note} [{r.source}"
                + (f", {r.date}" if r.date else "") + "]")
    if f.step_rates:
        print_table(console, "llama-bench step rates (one sequence; not served workloads)", step_columns(),
                    step_rows(f))

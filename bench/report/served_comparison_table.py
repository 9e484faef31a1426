"""The terminal table of `tokenbench compare RUN --served FILE`: the comparison bench/derive/served_comparison.py
builds, printed per served curve with the prices each side was charged at and every row left unmatched."""
from __future__ import annotations

from bench.derive.served_comparison import CurveComparison, Figures, Pricing, ServedComparison
from bench.report.terminal_tables import Col, print_table
from costmodel.number_format import money, sig


def _econ(f: Figures, name: str) -> float | None:
    return None if f.economics is None else getattr(f.economics, name)


def columns(c: ServedComparison) -> list:
    """The printed table's columns: at served points (the served concurrency) or at chosen interactivities
    (how the served curve was read there)."""
    first = [Col("tokens/s per user", key=True)]
    first.append(Col("served C") if c.at is None else Col("served point", right=False, wrap=True))
    return first + [Col("served tok/s per GPU"), Col("tokenbench tok/s per device"), Col("served / tokenbench"),
                    Col("served $/M total"), Col("tokenbench $/M total"), Col("served $/M output"),
                    Col("tokenbench $/M output"), Col("tokenbench point", right=False, wrap=True)]


def table_rows(c: CurveComparison) -> list[list[str]]:
    """The printed cells of one curve's rows (costmodel.number_format: sig for rates, money for $)."""
    rows = []
    for r in c.rows:
        where = r.served.how if r.served_concurrency is None else str(r.served_concurrency)
        rows.append([sig(r.interactivity), where,
                     sig(r.served.total_tokens_per_s), sig(r.tokenbench.total_tokens_per_s),
                     "-" if r.ratio is None else f"{r.ratio:.3g}",
                     money(_econ(r.served, "cost_per_mtok_total")), money(_econ(r.tokenbench, "cost_per_mtok_total")),
                     money(_econ(r.served, "cost_per_mtok_output")),
                     money(_econ(r.tokenbench, "cost_per_mtok_output")), r.tokenbench.how])
    return rows


def print_comparison(c: ServedComparison, console) -> None:
    def price(p: Pricing) -> str:
        return (f"{money(p.price_per_hour)}/h" if p.price_per_hour else "no price") + ", " + \
            (f"{sig(p.power_kw)} kW all-in" if p.power_kw else "no power figure") + f" [{p.source}]"

    console.print(f"tokenbench compare: served results {c.served_file} against workload run {c.run}", markup=False,
                  highlight=False)
    console.print(f"model {c.model}, precision {c.precision}, workload {c.workload} (ISL/OSL)", markup=False,
                  highlight=False)
    for n in c.notes:
        console.print(f"  {n}", markup=False, highlight=False)
    cols = columns(c)
    for curve in c.curves:
        console.print()
        console.print(curve.header, markup=False, highlight=False)
        console.print(f"  served: {curve.served_label}; {price(curve.served_pricing)}", markup=False, highlight=False)
        if curve.reference:
            console.print(f"  source: {curve.reference}", markup=False, highlight=False)
        console.print(f"  tokenbench: {curve.tokenbench_label}, {curve.tokenbench_source}; "
                      f"{price(curve.tokenbench_pricing)}", markup=False, highlight=False)
        if curve.rows:
            print_table(console, f"Served {curve.served_label} vs tokenbench {curve.tokenbench_label}", cols,
                        table_rows(curve))
        else:
            console.print("  no served point inside tokenbench's frontier: nothing compared", markup=False,
                          highlight=False)
        for s in curve.skipped:
            console.print(f"  not compared: {s}", markup=False, highlight=False)
    if c.unmatched:
        console.print()
        console.print(f"Unmatched served rows ({len(c.unmatched)}):", markup=False, highlight=False)
        for row, why in c.unmatched:
            console.print(f"  {row}: {why}", markup=False, highlight=False)

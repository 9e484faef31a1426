"""Terminal tables that never cut a number or a key, at any width.

A table whose cells fit the console is printed as it is. When it does not, text columns (names, notes) wrap
at spaces and headers of text columns wrap between words; if it still does not fit, the value columns are split over
several tables that each repeat the key columns, so every cell is printed whole."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Col:
    name: str
    right: bool = True  # numbers right-aligned
    key: bool = False  # repeated in every part when the table is split
    wrap: bool = False  # free text that may wrap at spaces (never a number or a key)


def console_width(stream) -> int | None:
    """The width to lay tables out at: the terminal's own, else COLUMNS where the user set it (a CI log, a
    pipe to a narrow pager), else 150. Tables from print_table fit any of them without cutting a cell."""
    import os

    if stream.isatty():
        return None
    try:
        return max(40, int(os.environ["COLUMNS"]))
    except (KeyError, ValueError):
        return 150


def _cell_len(text: str) -> int:
    from rich.text import Text

    return Text.from_markup(text).cell_len


def _longest_word(text: str) -> int:
    from rich.text import Text

    return max((len(w) for w in Text.from_markup(text).plain.split()), default=0)


# rich's default box: "│ a │ b │" = one leading bar, then per column its width, two spaces and a bar
def _table_width(widths: list[int]) -> int:
    return sum(widths) + 3 * len(widths) + 1


def print_table(console, title: str, cols: list[Col], rows: list[list[str]]) -> None:
    from rich.table import Table

    width = console.width
    need = []
    for i, c in enumerate(cols):
        cells = [r[i] for r in rows]
        if c.wrap:
            need.append(max([min(_longest_word(x), 24) for x in cells] + [_longest_word(c.name), 8]))
        else:  # rich's no_wrap holds for the header too, so the whole header must fit
            need.append(max([_cell_len(x) for x in cells] + [_cell_len(c.name)]))

    def build(indices: list[int], part: str) -> Table:
        t = Table(title=title + part, title_justify="left")
        for i in indices:
            c = cols[i]
            t.add_column(c.name, justify="right" if c.right else "left", no_wrap=not c.wrap,
                         min_width=None if c.wrap else need[i], overflow="fold")
        for r in rows:
            t.add_row(*[r[i] for i in indices])
        return t

    everything = list(range(len(cols)))
    if _table_width(need) <= width or len(cols) <= 1:
        console.print(build(everything, ""))
        return
    keys = [i for i, c in enumerate(cols) if c.key]
    values = [i for i in everything if i not in keys]
    parts, current = [], []
    for i in values:
        if current and _table_width([need[j] for j in keys + current + [i]]) > width:
            parts.append(current)
            current = []
        current.append(i)
    if current:
        parts.append(current)
    for n, part in enumerate(parts, 1):
        console.print(build(keys + part, f" ({n}/{len(parts)})"))


def stdout_console():
    """The console a command prints its tables to: stdout, at console_width's width."""
    import sys

    from rich.console import Console

    return Console(file=sys.stdout, width=console_width(sys.stdout))


def print_report_table(console, t) -> None:
    """A costmodel.cost_report.Table (formatted cells, its key and text columns named) laid out by print_table."""
    from rich.markup import escape

    cols = [Col(escape(h), right=i >= t.keys and i not in t.text, key=i < t.keys, wrap=i in t.text)
            for i, h in enumerate(t.headers)]
    # cells are text, not markup: a source such as "[InferenceX]" must print as it is
    print_table(console, escape(t.title), cols, [[escape(c) for c in r] for r in t.rows])


def print_report(console, report) -> None:
    """A costmodel.cost_report.Report: its tables, then its lines as they are (never wrapped mid-figure)."""
    for t in report.tables:
        print_report_table(console, t)
    for line in report.lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)

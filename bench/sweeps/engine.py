"""The one measuring loop: every sweep (decode, prefill and mixed, MoE, FP8, peak, a tensor-parallel rank, a
workload's steps) is a SweepPlan this engine runs, and this is the one place a case is measured and its row
written.

The lifecycle, the same for every kind:
  open the record (plan.open) and write it; then, inside store.recording (Ctrl-C, SIGTERM and SIGHUP keep
  every row written so far and mark the record `interrupted`; any other failure marks it `failed`; either
  way with its wall time and one printed line):
    measure the ceilings (plan.measure_ceilings: the copy bandwidth, as `tokenbench run` measures it);
    for each group of cases plan.groups() yields (a (batch, context), a prefill point, a step's shapes; per
    backend): the fit check's reason, if any, said once; each case measured (gated against float64, then
    timed) or, where its group does not fit, the rows it leaves; every row kept and written at once, progress
    told; then the group's steps derived by the plan's own callback (plan.derive), kept and written;
    plan.finish (a drift check, flags, composed points).

A new sweep kind is a SweepPlan subclass: `open` (its record), `groups` (its cases, each a Case: a label
and how to measure it), `derive` (its steps from a group's rows), and where it needs them `total` (cases
for the progress bar), `measure_ceilings`, `keep_row`, `finish`. Rows and steps are the record dataclasses
of bench/records/schema.py, built typed by the plan; the store writes them.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass

from bench.progress import CaseProgress
from bench.records import store


def fit_reason(need_bytes: int, have_bytes: int, processes: int = 1) -> str | None:
    """Why a case's inputs (`need_bytes` in each of `processes` processes) cannot be allocated here (checked
    before anything is: on Linux a host allocation beyond RAM can succeed and the process then be killed when
    it is filled), or None when they fit."""
    if need_bytes * processes > 0.9 * have_bytes:
        each = f" each, {processes} processes" if processes > 1 else ""
        return (f"needs about {need_bytes / 2**30:.1f} GiB for one input set and its float64 reference{each}, "
                f"{have_bytes / 2**30:.1f} GiB available")
    return None


def timing_note(row) -> str:
    """What a finished row's progress line says: its median, or why it was not timed."""
    if not row.valid:
        return f"not timed ({row.skipped or row.check})"
    return f"p50 {row.seconds_p50 * 1e6:,.1f} us"


@dataclass
class Case:
    """One thing the engine measures: `measure(phase)` gates it, then times it, and returns its row(s)
    (`phase(text)` says what it is doing now); `skipped(why)` the row(s) it leaves when its group does not
    fit (none by default); `line(rows)` the progress line of its rows (None: the plain p50 or why not)."""

    label: str
    measure: Callable[[Callable[[str], None]], list]
    skipped: Callable[[str], list] = lambda why: []
    line: Callable[[list], str | None] | None = None
    line_on_terminal: bool = False  # a terminal shows the bar's count, not a line per case (unless True)


@dataclass
class Group:
    """Cases whose rows the plan derives its step(s) from once the last is in. `skip` is the fit check's
    reason (nothing of the group is measured), said once when `say_skip` (once per point, not per backend)."""

    label: str
    cases: list[Case]
    key: object = None  # what plan.derive reads: a (batch, context, backend), a point, a step key
    skip: str | None = None
    say_skip: bool = True


class SweepPlan:
    """What a sweep kind gives the engine. Subclasses set `console` (None: a rank that shows nothing) and
    implement `open`, `groups` and `derive`; the rest has defaults."""

    console = None

    def open(self, device) -> tuple:
        """(writer, record) of the run's results file (store.open_record), or (None, None) where this process
        writes nothing (a tensor-parallel rank other than 0)."""
        raise NotImplementedError

    def measure_ceilings(self, device, record, writer) -> None:
        """The ceilings the rows are read against, measured in the same run (default: none)."""

    def total(self) -> int:
        """Cases in the whole sweep, for the progress bar (an estimate where the plan cannot know)."""
        return 0

    def groups(self) -> Iterable[Group]:
        """The groups in measuring order; a generator may build a group's cases once the earlier ones ran."""
        raise NotImplementedError

    def derive(self, group: Group, rows: list) -> list:
        """The step(s) composed from a group's rows (default: none)."""
        return []

    def keep_row(self, record, row) -> None:
        """Put a measured row into the record (default: its rows)."""
        record["rows"].append(row)

    def keep_step(self, record, step) -> None:
        """Put a derived step into the record (default: its steps)."""
        record["steps"].append(step)

    def finish(self, device, record, writer) -> None:
        """After the last group, inside the interrupt handling (default: nothing)."""

    def warn(self, text: str) -> None:
        if self.console is not None:
            self.console.print(f"[yellow]{text}[/]")


@dataclass
class SweepRun:
    record: dict | None
    writer: store.ResultWriter | None
    status: int  # 0, or 128 + the signal when stopped (130: Ctrl-C); the rows measured so far are kept


def run_plan(plan: SweepPlan, device) -> SweepRun:
    """Measure `plan` on `device`: its record opened and written after every row and step, stopped cleanly
    by Ctrl-C or SIGTERM (status 130 or 143, record `interrupted`), a failure noted and re-raised."""
    writer, record = plan.open(device)
    if writer is not None:
        writer.write(record)
    run = SweepRun(record, writer, 0)
    with store.recording(record, writer, plan.warn if writer is not None else None) as state:
        plan.measure_ceilings(device, record, writer)
        console = plan.console
        with CaseProgress(console, plan.total()) if console is not None else nullcontext() as progress:
            for group in plan.groups():
                _measure_group(plan, group, record, writer, progress)
        plan.finish(device, record, writer)
    run.status = state["status"]
    return run


def _quiet(text: str) -> None:
    pass


def _measure_group(plan: SweepPlan, group: Group, record, writer, progress) -> None:
    """The one place a case is measured and its row written: each case of the group (or, where it does not
    fit, the rows it leaves), then the group's steps."""
    if group.skip and group.say_skip:
        plan.warn(f"{group.label} skipped: {group.skip}")
    rows = []
    for case in group.cases:
        if group.skip:
            new = case.skipped(group.skip)
            if progress is not None:
                progress.skip()
        else:
            if progress is not None:
                progress.start(case.label)
            new = case.measure(progress.phase if progress is not None else _quiet)
        for row in new:
            if record is not None:
                plan.keep_row(record, row)
        if new and writer is not None:
            writer.write(record)
        rows += new
        if not group.skip and progress is not None:
            _tell(plan, case, new, progress)
    steps = plan.derive(group, rows)
    for step in steps:
        if record is not None:
            plan.keep_step(record, step)
    if steps and writer is not None:
        writer.write(record)


def _tell(plan: SweepPlan, case: Case, rows: list, progress) -> None:
    """The case's progress line; a row not timed is also said in red on a terminal, where the bar hides it."""
    if case.line is not None:  # the plan's own line (None: none for these rows)
        text = case.line(rows)
    else:
        row = rows[0] if rows else None
        text = f"{case.label}: {timing_note(row) if row is not None else 'nothing measured'}"
        if row is not None and not row.valid and plan.console.is_terminal:
            plan.console.print(f"[red]{case.label}: {row.skipped or row.check}[/]")
    progress.finish(text, case.line_on_terminal)

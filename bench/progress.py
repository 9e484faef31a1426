"""Progress of a sweep whose cases are long (a tensor-parallel case takes ~26 s on a 2-core CPU).

On a terminal: a live bar naming the case and what it is doing now, with the time elapsed. In a pipe or a
CI log (no live bar there): one line per finished case, and a line whenever a case has run HEARTBEAT_S
without one, so a log never looks hung.
"""
from __future__ import annotations

import threading
import time

# Longest a piped log stays silent while a case runs.
HEARTBEAT_S = 10.0


class CaseProgress:
    """`with CaseProgress(console, total) as p:` then per case `p.start(label)`, `p.phase(text)` as it
    moves on, `p.finish(line)` when it is done. The console's own is_terminal picks bar or lines."""

    def __init__(self, console, total: int, heartbeat_s: float = HEARTBEAT_S):
        self.console, self.total, self.heartbeat_s = console, total, heartbeat_s
        self.done, self.label, self.what = 0, "", "starting"
        self.case_started = self.last_line = time.monotonic()
        self._bar, self._task = None, None
        self._stop = threading.Event()
        self._beat = None

    def __enter__(self) -> CaseProgress:
        if self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=self.console, transient=True)
            self._bar.start()
            self._task = self._bar.add_task("starting", total=self.total)
        else:
            # a daemon thread: the measuring thread spends whole seconds inside one timer or collective
            self._beat = threading.Thread(target=self._heartbeat, daemon=True)
            self._beat.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        if self._bar is not None:
            self._bar.stop()

    def _counter(self) -> str:
        return f"[{self.done + 1}/{self.total}]"

    def start(self, label: str) -> None:
        self.label, self.case_started = label, time.monotonic()
        self.phase("starting")

    def phase(self, what: str) -> None:
        self.what = what
        if self._bar is not None:
            self._bar.update(self._task, description=f"{self.label}: {what}")

    def finish(self, line: str | None, on_terminal: bool = True) -> None:
        """The case's result line, above the bar on a terminal (unless `on_terminal` is False: the bar's
        count says it), numbered in a pipe; None: no line."""
        if line is not None and (self._bar is None or on_terminal):
            self.console.print(line if self._bar is not None else f"{self._counter()} {line}", highlight=False,
                               markup=False, soft_wrap=True)
            self.last_line = time.monotonic()
        self.done += 1
        if self._bar is not None:
            self._bar.advance(self._task)

    def skip(self) -> None:
        """A case counted but not run (its group does not fit; the skip was said once for the group)."""
        self.done += 1
        if self._bar is not None:
            self._bar.advance(self._task)

    def _heartbeat(self) -> None:
        while not self._stop.wait(min(1.0, self.heartbeat_s / 4)):
            now = time.monotonic()
            if self.label and self.done < self.total and now - self.last_line >= self.heartbeat_s:
                self.console.print(f"{self._counter()} {self.label}: {self.what} "
                                   f"({now - self.case_started:.0f} s into the case)",
                                   highlight=False, markup=False, soft_wrap=True)
                self.last_line = now

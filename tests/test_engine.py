"""The measuring engine (bench/sweeps/engine.py) on a plan of its own: rows written as each case ends, steps
derived per group through the plan, a group that does not fit leaving its skipped rows, Ctrl-C and SIGTERM
keeping every row with the record marked interrupted, a failure marked and re-raised; and the stop signals
and die_with_parent of bench/errors.py."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from rich.console import Console

from bench.errors import Stopped, restore_signals, stop_on_signals
from bench.records import store
from bench.records.schema import MeasuredRow, Step
from bench.sweeps.engine import Case, Group, SweepPlan, fit_reason, run_plan
from costmodel.step import decode_rates, tokens_per_s_per_user


class FakeDevice:
    key, name, kind, memory_bytes, spec = "fake", "fake", "cpu", 2**30, None

    def to_dict(self):
        return {"key": self.key, "name": self.name, "kind": self.kind, "memory_bytes": self.memory_bytes}


class FakeModel:
    def to_dict(self):
        return {"name": "fake", "layers": 1}


class CountingPlan(SweepPlan):
    """Two groups (batches 1 and 2) of two cases; batch 3 does not fit. `fail_at` raises that exception at
    that case (1-based over measured cases)."""

    def __init__(self, out, fail_at=None, exc=None):
        self.out, self.fail_at, self.exc = out, fail_at, exc
        self.console = Console(file=io.StringIO(), width=120)
        self.measured = 0
        self.written = []  # rows on disk after each write

    def open(self, device):
        writer, record = store.open_record("run", self.out, device, {"created": "2026-12-07T00:00:00"}, ("t",),
                                           {}, model=FakeModel(), dtype="fp32", price={})
        real = writer.write

        def write(rec):
            real(rec)
            self.written.append(len(json.loads(writer.json_path.read_text())["rows"]))

        writer.write = write
        return writer, record

    def total(self):
        return 6

    def groups(self):
        for batch in (1, 2, 3):
            cases = [Case(f"op{i} b={batch}", self._measure(i, batch),
                          lambda why, i=i, b=batch: [MeasuredRow.build(op=f"op{i}", batch=b, backend="x", valid=False,
                                                                       skipped=why)])
                     for i in (1, 2)]
            yield Group(f"b={batch}", cases, key=batch, skip=fit_reason(batch * 2**40, int(3.1 * 2**40)))

    def _measure(self, i, batch):
        def run(phase):
            self.measured += 1
            if self.measured == self.fail_at:
                raise self.exc
            phase("timing")
            return [MeasuredRow.build(op=f"op{i}", batch=batch, backend="x", valid=True, seconds_p50=0.5 * i,
                                      check="ok")]

        return run

    def derive(self, group, rows):
        seconds = sum(r.seconds_p50 or 0 for r in rows)
        return [Step.build(batch=group.key, backend="x", valid=bool(seconds), step_seconds=seconds or None,
                           **(decode_rates(group.key, seconds) if seconds else {}))]


def _record(path):
    return json.loads(path.read_text())


def test_every_case_is_written_as_it_ends_and_steps_come_from_the_plan(tmp_path):
    plan = CountingPlan(tmp_path)
    run = run_plan(plan, FakeDevice())
    assert run.status == 0
    record = _record(run.writer.json_path)
    assert record["complete"] is True and record["wall_s"] >= 0
    assert [(r["op"], r["batch"]) for r in record["rows"]] == [("op1", 1), ("op2", 1), ("op1", 2), ("op2", 2),
                                                               ("op1", 3), ("op2", 3)]
    # the group that does not fit: its rows say why, nothing of it was measured
    assert plan.measured == 4
    assert all(r["valid"] is False and "needs about" in r["skipped"] for r in record["rows"][4:])
    assert plan.written[:4] == [0, 1, 2, 2]  # opened, then one row per write
    assert [s.get("step_seconds") for s in record["steps"]] == [1.5, 1.5, None]
    assert record["steps"][0]["tokens_per_s_per_user"] == pytest.approx(1 / 1.5)
    assert record["steps"][1]["tokens_per_s"] == pytest.approx(2 / 1.5)
    assert "b=3 skipped: needs about" in plan.console.file.getvalue()


@pytest.mark.parametrize("exc,status,name", [(KeyboardInterrupt(), 130, "Ctrl-C"),
                                             (Stopped(signal.SIGTERM), 143, "SIGTERM")])
def test_a_stop_keeps_every_row_and_marks_the_record(tmp_path, exc, status, name):
    run = run_plan(CountingPlan(tmp_path, fail_at=3, exc=exc), FakeDevice())
    assert run.status == status
    record = _record(run.writer.json_path)
    assert len(record["rows"]) == 2 and record["complete"] is False
    assert record["interrupted"].startswith(f"stopped by {name};") and record["wall_s"] >= 0


def test_a_failure_is_noted_and_raised(tmp_path):
    plan = CountingPlan(tmp_path, fail_at=2, exc=RuntimeError("a kernel crashed"))
    with pytest.raises(RuntimeError):
        run_plan(plan, FakeDevice())
    (path,) = tmp_path.glob("*.json")
    record = _record(path)
    assert len(record["rows"]) == 1 and "a kernel crashed" in record["failed"] and record["wall_s"] >= 0


def test_sigterm_raises_stopped_while_installed():
    previous = stop_on_signals()
    try:
        with pytest.raises(Stopped) as caught:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs at the next bytecode
        assert caught.value.signum == signal.SIGTERM and isinstance(caught.value, KeyboardInterrupt)
    finally:
        restore_signals(previous)
    assert signal.getsignal(signal.SIGTERM) == previous[signal.SIGTERM]


def test_a_child_dies_with_its_sigkilled_parent(tmp_path):
    # parent: starts a child that asks to die with it, prints the child's pid, then waits to be killed
    child = ("import time; from bench.errors import die_with_parent; die_with_parent(); print('ready', flush=True); "
             "time.sleep(60)")
    parent = (f"import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', {child!r}]); "
              "print(c.pid, flush=True); time.sleep(60)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True,
                         env=dict(os.environ, PYTHONPATH=root))
    pid = int(p.stdout.readline())
    assert p.stdout.readline().strip() == "ready"  # the child (same stdout) has made its request
    p.kill()
    p.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        try:  # a zombie of ours is gone for this purpose: it no longer runs
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    break
        except FileNotFoundError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the child outlived its SIGKILLed parent")


def test_tokens_per_s_per_user_is_one_figure():
    assert tokens_per_s_per_user(0.25) == 4.0
    assert tokens_per_s_per_user(2.0, tokens=7) == 3.5  # a cohort's OSL - 1 decode steps over their time
    assert decode_rates(8, 0.5) == {"tokens_per_s": 16.0, "tokens_per_s_per_user": 2.0}

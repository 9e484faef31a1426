"""A run that shares the machine says so: the CPU time other processes used during it (/proc/stat minus
/proc/self/stat) is recorded and, beyond SHARED_MACHINE_SHARE of the cores, warned about."""
import json
import os
import subprocess
import sys
import time

import pytest

from bench.records import machine_share
from bench.records.machine_share import CpuSnapshot, other_cpu_use, shared_machine_warning, snapshot
from bench.records import store

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="Linux /proc only")


def _ticks_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_another_process_busy_during_the_window_is_counted():
    start = snapshot()
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.0)
        child_ticks = _ticks_of(child.pid)  # what it used, read while it still runs (not yet ours once waited)
        use = other_cpu_use(start)
    finally:
        child.kill()
        child.wait()
    hz = os.sysconf("SC_CLK_TCK")
    # whatever else runs on the machine adds to it, never takes from it (one tick of rounding per reading)
    assert use["cpu_seconds"] >= (child_ticks - 2) / hz
    assert 0 <= use["share_of_machine"] and use["cores"] == os.cpu_count()


def test_this_process_own_time_is_not_counted():
    start = CpuSnapshot(wall=0.0, busy_ticks=1000, steal_ticks=0, own_ticks=500)
    end = CpuSnapshot(wall=2.0, busy_ticks=1000 + 300, steal_ticks=0, own_ticks=500 + 200)  # we used 200 of 300
    hz = os.sysconf("SC_CLK_TCK")
    use = other_cpu_use(start, end)
    assert use["cpu_seconds"] == pytest.approx(100 / hz)
    assert use["share_of_machine"] == pytest.approx(100 / hz / (2.0 * os.cpu_count()))


def test_the_warning_names_the_share_only_beyond_the_threshold():
    quiet = {"cpu_seconds": 0.1, "share_of_machine": 0.01, "cores": 2}
    busy = {"cpu_seconds": 30.0, "share_of_machine": 0.5, "cores": 2}
    assert shared_machine_warning(quiet) is None and shared_machine_warning(None) is None
    assert shared_machine_warning(busy).startswith("other processes used 30.0 CPU-seconds during the run (50% of")


def test_own_ticks_read_a_command_name_with_spaces_and_parentheses(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("123 (a (b) c) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n")
    assert machine_share._own_ticks(str(stat)) == 11 + 12 + 13 + 14


def test_recording_writes_it_and_says_it_when_shared(tmp_path, monkeypatch):
    monkeypatch.setattr(machine_share, "SHARED_MACHINE_SHARE", -1.0)  # any use at all counts as shared
    writer = store.ResultWriter(tmp_path, "x")
    record = store.clean(store.load(os.path.join(os.path.dirname(__file__), "data", "cpu-tiny-fp32.json")))
    said = []
    with store.recording(record, writer, said.append):
        pass
    written = json.loads(writer.json_path.read_text())
    assert written["other_cpu"]["cores"] == os.cpu_count() and written["other_cpu"]["cpu_seconds"] >= 0
    assert said == [written["shared_machine_warning"]]
    assert store.load(writer.json_path).shared_machine_warning == said[0]


def test_an_old_record_without_it_still_reads():
    old = store.load(os.path.join(os.path.dirname(__file__), "data", "cpu-tiny-fp32.json"))
    assert old.other_cpu is None and old.shared_machine_warning is None

"""Whether a run shared the machine: the CPU time other processes used while it ran, from /proc/stat (every
CPU's busy time) minus /proc/self/stat (this process's, its threads and waited-for children included).

A 2-core VM with another job on it times slower and noisier than a quiet one, and nothing in the timings
themselves says so; this figure does. Linux only: elsewhere nothing is recorded."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

# Beyond this share of the machine's cores used by others, the run says its timings may be contaminated:
# one busy core of two is 50%; a shell and a few daemons stay well under 5%.
SHARED_MACHINE_SHARE = 0.10


@dataclass(frozen=True)
class CpuSnapshot:
    wall: float
    busy_ticks: int  # every CPU's user, nice, system, irq and softirq time
    steal_ticks: int  # time the hypervisor gave this VM's CPUs to other VMs
    own_ticks: int  # this process: user + system, children it waited for included


def _proc_stat_busy(path: str = "/proc/stat") -> tuple[int, int]:
    with open(path) as f:
        fields = f.readline().split()
    if fields[0] != "cpu":
        raise OSError(f"unexpected first line of {path}")
    values = [int(v) for v in fields[1:]] + [0] * 8
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return user + nice + system + irq + softirq, steal


def _own_ticks(path: str = "/proc/self/stat") -> int:
    with open(path) as f:
        text = f.read()
    after_name = text[text.rindex(")") + 2:].split()  # the command name may hold spaces
    utime, stime, cutime, cstime = (int(v) for v in after_name[11:15])
    return utime + stime + cutime + cstime


def snapshot() -> CpuSnapshot | None:
    """Now; None where /proc cannot be read (not Linux)."""
    try:
        busy, steal = _proc_stat_busy()
        return CpuSnapshot(time.monotonic(), busy, steal, _own_ticks())
    except (OSError, ValueError, IndexError):
        return None


def other_cpu_use(start: CpuSnapshot | None, end: CpuSnapshot | None = None) -> dict | None:
    """What other processes used between two snapshots (end: now): CPU-seconds, as a share of the machine's
    cores over the wall time, and the hypervisor's steal; None where not measurable."""
    end = end or snapshot()
    if start is None or end is None or end.wall <= start.wall:
        return None
    hz = os.sysconf("SC_CLK_TCK")
    cores = os.cpu_count() or 1
    wall = end.wall - start.wall
    others = max(0, (end.busy_ticks - start.busy_ticks) - (end.own_ticks - start.own_ticks)) / hz
    return {"cpu_seconds": others, "share_of_machine": others / (wall * cores), "wall_s": wall, "cores": cores,
            "steal_seconds": max(0, end.steal_ticks - start.steal_ticks) / hz,
            "source": "/proc/stat busy time minus /proc/self/stat (this process and its waited-for children)"}


def shared_machine_warning(use: dict | None) -> str | None:
    """One line when others used more than SHARED_MACHINE_SHARE of the machine during the run, else None."""
    if not use or use["share_of_machine"] <= SHARED_MACHINE_SHARE:
        return None
    return (f"other processes used {use['cpu_seconds']:.1f} CPU-seconds during the run "
            f"({use['share_of_machine']:.0%} of this machine's {use['cores']} cores): the machine was shared, "
            "timings may be slower and noisier than on a quiet one")

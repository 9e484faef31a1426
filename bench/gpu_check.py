"""The one-call GPU check (entry point: `bash bench/gpu_check.sh OUT`). Standard library only: it must run on a
bare GPU machine before anything else is known to work there.

Steps run in order of value (what a cut-short try should still bring back comes first), each in its own
process group under min(its own limit, the time left before one global deadline). After every step, and
every PACK_EVERY_S while one runs, OUT is rewritten whole from the work folder: summary.txt, logs.txt and
results.tar.gz (three files, each bounded), so a check killed at any moment still leaves what it had.
SIGTERM/SIGINT/SIGHUP of the check stop the running step, pack, and exit 128+signal.

    python -m bench.gpu_check OUT [--deadline-s 480] [--fake ok,hang,orphan,...]

--fake replaces the steps with short stand-ins (ok, fail, hang, orphan: a step whose child ignores SIGINT and
escapes into its own session) so the control flow is tested on a CPU.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DEADLINE_S = 480.0
PACK_RESERVE_S = 5.0  # kept back from every step so the final pack always fits under the deadline
GRACE_S = float(os.environ.get("GPU_CHECK_GRACE_S", "10"))  # between SIGINT (runs keep their rows, pytest saves its JSON) and SIGKILL
PACK_EVERY_S = 20.0
MAX_FILE_BYTES = 15 * 2**20  # under the 16 MiB a remote runner brings back per file
LOG_HEAD_BYTES = 64 * 1024  # per step in logs.txt: its head and its tail, the middle elided when larger
LOG_TAIL_BYTES = 256 * 1024


@dataclass
class Step:
    name: str
    argv: list
    limit_s: float
    needs_triton: bool = False
    env: dict = field(default_factory=dict)


@dataclass
class Outcome:
    name: str
    rc: int | None = None  # None: skipped
    seconds: float = 0.0
    note: str = ""
    command: str = ""



def _die_with_parent():
    """In the step's child, before exec: ask Linux to SIGKILL it if the check itself is SIGKILLed, which
    leaves no chance to clean up (a hung step would otherwise outlive the check and hold the GPU)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

def python() -> str:
    return os.environ.get("PYTHON") or sys.executable


def real_steps(work: Path) -> list:
    """The check on a GPU machine, most valuable first. On a CPU the same commands measure the CPU."""
    py, res = python(), str(work / "results")
    storage = f"file://{work / 'results' / 'benchmarks' / '{slug}'}"
    env_budget = lambda name, default: os.environ.get(name, default)
    bench = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--benchmark-storage={storage}",
             "--benchmark-autosave"]
    gpu_tests = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu"]
    triton_tests = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_triton_*.py"))
    other_gpu = ["tests/test_run_gpu.py", "tests/test_peak_gpu.py", "tests/test_tp_moe_fp8_gpu.py",
                 "tests/test_moe.py", "tests/test_fp8.py"]
    return [
        Step("preflight", [py, "-m", "bench.gpu_preflight", str(work / "preflight.json")], 45),
        Step("peak", [py, "-m", "bench", "peak", "--dtype", "bf16,fp8", "--budget-s",
                      env_budget("PEAK_BUDGET_S", "20"), "--out", res], 75),
        # one process for both backends: one start-up, one copy-bandwidth measurement, the peak just measured
        Step("run", [py, "-m", "bench", "run", "--backend", "{backends}", "--budget-s",
                     env_budget("RUN_BUDGET_S", "0.5"), "--out", res], 150),
        Step("decode-bench", bench + ["benchmarks/test_decode.py", "--tokenbench-budget-s",
                                      env_budget("BENCH_BUDGET_S", "45")], 90),
        Step("triton-tests", gpu_tests + triton_tests, 120, needs_triton=True),
        # the compute-bound half: prompt chunks, GEMMs at M = 2048 read against the peak measured above
        Step("prefill", [py, "-m", "bench", "run", "--phase", "prefill", "--backend", "{backends}",
                         "--prompt", "1024,8192", "--chunk", "2048", "--budget-s", env_budget("RUN_BUDGET_S", "0.5"),
                         "--out", res], 150),
        # the question the tool exists for: a chat workload's tokens/s and $/M per GPU, composed from steps
        # measured here and checked against the same cohorts run end to end
        Step("workload", [py, "-m", "bench", "workload", "--model", "llama-3.1-8b", "--isl", "1024", "--osl", "1024",
                          "--concurrency", "1,8,64", "--chunk", "2048", "--budget-s", env_budget("RUN_BUDGET_S", "0.5"),
                          "--measure-e2e", "--out", res], 240),
        Step("gpu-tests", gpu_tests + other_gpu, 150),
        Step("ops-bench", bench + ["benchmarks/test_ops.py", "--tokenbench-budget-s",
                                   env_budget("BENCH_BUDGET_S", "45")], 90),
        Step("peak-full", [py, "-m", "bench", "peak", "--budget-s", env_budget("PEAK_FULL_BUDGET_S", "60"),
                           "--out", res], 100),
    ]


FAKE = {
    "ok": "import os, sys; open(os.path.join(sys.argv[1], 'results', sys.argv[2] + '.json'), 'w').write('{}'); "
          "print('fake step', sys.argv[2], 'done')",
    "fail": "import sys; print('fake step failing'); sys.exit(3)",
    "hang": "import time; print('fake step hanging', flush=True); time.sleep(3600)",
    # a grandchild that ignores SIGINT and leaves the step's process group, like a stuck torchrun worker
    "orphan": ("import os, subprocess, sys, time; "
               "c = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
               "signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(3600)'], start_new_session=True); "
               "open(os.path.join(sys.argv[1], 'orphan.pid'), 'w').write(str(c.pid)); "
               "print('fake step left a worker', c.pid, flush=True); time.sleep(3600)"),
}


def fake_steps(work: Path, spec: str) -> list:
    steps = []
    for i, kind in enumerate(k.strip() for k in spec.split(",") if k.strip()):
        if kind not in FAKE:
            raise SystemExit(f"tokenbench: error: unknown fake step {kind!r}; choose from {', '.join(FAKE)}")
        name = f"{i}-{kind}"
        limit = float(os.environ.get("GPU_CHECK_FAKE_LIMIT_S", "30"))
        steps.append(Step(name, [python(), "-c", FAKE[kind], str(work), name], limit))
    return steps


# ---- processes ---------------------------------------------------------------------------------------

def _children_table() -> dict:
    """ppid -> [pid] from /proc (Linux); {} elsewhere, where only the process group is cleaned up."""
    table = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        table.setdefault(ppid, []).append(int(entry))
    return table


def descendants(pid: int) -> set:
    table, found, todo = _children_table(), set(), [pid]
    while todo:
        for child in table.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _signal_all(pgid: int, pids: set, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Runner:
    """Runs one step at a time; `stop()` (from a signal handler) ends the running one at once."""

    def __init__(self, work: Path, out: Path, deadline: float, env: dict):
        self.work, self.out, self.deadline, self.env = work, out, deadline, env
        self.proc = None
        self.seen = set()  # every descendant seen while the step ran: killed at its end even if re-parented
        self.outcomes: list = []
        self.started = time.time()
        self.header = ""
        self.stopping = None

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, step: Step) -> Outcome:
        outcome = Outcome(step.name, command=" ".join(shlex.quote(a) for a in step.argv))
        limit = min(step.limit_s, self.time_left() - PACK_RESERVE_S - GRACE_S)
        log = self.work / "logs" / f"{len(self.outcomes):02d}-{step.name}.log"
        self.outcomes.append(outcome)
        if self.stopping:
            outcome.note = f"skipped: check stopped by {self.stopping}"
            return outcome
        if limit < 1:
            outcome.note = "skipped: global deadline reached"
            return outcome
        outcome.note = f"running (limit {limit:.0f} s)"
        self.pack()
        t0 = time.monotonic()
        with open(log, "w") as f:
            f.write(f"== {step.name} (limit {limit:.0f} s): {outcome.command}\n")
            f.flush()
            self.proc = subprocess.Popen(step.argv, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env={**self.env, **step.env},
                                         start_new_session=True, preexec_fn=_die_with_parent)
            self.seen = set()
            rc, why = self._wait(limit)
            outcome.rc, outcome.seconds = rc, time.monotonic() - t0
            outcome.note = why
            f.write(f"\n== {step.name}: exit {rc}, {outcome.seconds:.1f} s{', ' + why if why else ''}\n")
        print(f"gpu_check: {step.name}: exit {rc} in {outcome.seconds:.1f} s {why}", file=sys.stderr, flush=True)
        self.pack()
        return outcome

    def _wait(self, limit: float):
        proc, t0, last_pack = self.proc, time.monotonic(), time.monotonic()
        why = ""
        while proc.poll() is None:
            self.seen |= descendants(proc.pid)
            now = time.monotonic()
            if self.stopping:
                why = f"stopped by {self.stopping}"
                break
            if now - t0 > limit:
                why = f"stopped by its {limit:.0f} s limit"
                break
            if now - last_pack > PACK_EVERY_S:
                self.pack()
                last_pack = now
            time.sleep(0.2)
        killed = set()
        if proc.poll() is None:
            killed = self._interrupt(proc, GRACE_S if not self.stopping else 2.0)
        self.seen |= descendants(proc.pid) if proc.poll() is None else set()
        leftover = {p for p in self.seen if _alive(p)} | killed
        _signal_all(proc.pid, leftover, signal.SIGKILL)  # whatever the step started is gone when it ends
        if leftover:
            why = (why + "; " if why else "") + f"killed {len(leftover)} leftover process(es)"
        rc = proc.wait()
        self.proc = None
        return rc, why

    def _interrupt(self, proc, grace: float) -> set:
        """SIGINT to the group first: runs keep their rows and pytest still writes its JSON."""
        self.seen |= descendants(proc.pid)
        _signal_all(proc.pid, self.seen, signal.SIGINT)
        end = time.monotonic() + max(0.5, min(grace, self.time_left() - PACK_RESERVE_S))
        while proc.poll() is None and time.monotonic() < end:
            time.sleep(0.1)
        self.seen |= descendants(proc.pid) if proc.poll() is None else set()
        survivors = {p for p in self.seen if _alive(p)}  # those that ignored SIGINT
        _signal_all(proc.pid, self.seen, signal.SIGKILL)
        return survivors

    def stop(self, signum, _frame) -> None:
        self.stopping = signal.Signals(signum).name

    # ---- packing -----------------------------------------------------------------------------------------

    def summary(self) -> str:
        lines = [self.header, f"{'step':<14} {'exit':>5} {'seconds':>8}  note / command"]
        for o in self.outcomes:
            rc = "-" if o.rc is None else str(o.rc)
            lines.append(f"{o.name:<14} {rc:>5} {o.seconds:8.1f}  {o.note}".rstrip())
            if o.command:
                cmd = o.command if len(o.command) <= 240 else o.command[:237] + "..."
                lines.append(f"{'':<30}{cmd}")
        failed = [o.name for o in self.outcomes if o.rc not in (0, None) or o.note.startswith("skipped")]
        lines.append(f"elapsed {time.time() - self.started:.0f} s; "
                     + ("every step passed" if not failed else f"not passed: {', '.join(failed)}"))
        if self.stopping:
            lines.append(f"check stopped by {self.stopping}")
        return "\n".join(lines) + "\n"

    def logs(self) -> bytes:
        parts = []
        for path in sorted((self.work / "logs").glob("*.log")):
            data = path.read_bytes()
            if len(data) > LOG_HEAD_BYTES + LOG_TAIL_BYTES:
                cut = len(data) - LOG_HEAD_BYTES - LOG_TAIL_BYTES
                data = data[:LOG_HEAD_BYTES] + f"\n[... {cut} bytes elided ...]\n".encode() + data[-LOG_TAIL_BYTES:]
            parts.append(data + b"\n")
        return b"".join(parts)[-MAX_FILE_BYTES:]

    def pack(self) -> None:
        """Rewrite OUT whole: summary.txt, logs.txt, results.tar.gz; each written aside, then renamed."""
        summary = self.summary()
        (self.work / "summary.txt").write_text(summary)
        self._put("summary.txt", summary.encode())
        self._put("logs.txt", self.logs())
        self._put("results.tar.gz", self._tarball())

    def _tarball(self) -> bytes:
        """results/ (runs, peaks, benchmark JSON in the repository's layout) plus the preflight record.
        Files are added in order until the archive would pass the size bound; the rest are listed as left out."""
        buf, left_out = io.BytesIO(), []
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            files = [p for p in sorted((self.work / "results").rglob("*")) if p.is_file()]
            files += [p for p in (self.work / "preflight.json", self.work / "summary.txt") if p.is_file()]
            for path in files:
                if buf.tell() + path.stat().st_size > MAX_FILE_BYTES - 2**20:
                    left_out.append(str(path.relative_to(self.work)))
                    continue
                tar.add(path, arcname=str(path.relative_to(self.work)))
            if left_out:
                note = ("left out for size:\n" + "\n".join(left_out) + "\n").encode()
                info = tarfile.TarInfo("LEFT_OUT.txt")
                info.size = len(note)
                tar.addfile(info, io.BytesIO(note))
        return buf.getvalue()

    def _put(self, name: str, data: bytes) -> None:
        tmp = self.out / f".{name}.part"
        tmp.write_bytes(data)
        os.replace(tmp, self.out / name)


def git_commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def step_env(work: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    # autotune once per check: Triton's compile and autotuning caches shared by every step's processes
    env.setdefault("TRITON_CACHE_DIR", str(work / "triton-cache"))
    env.setdefault("TRITON_CACHE_AUTOTUNING", "1")
    env.setdefault("TOKENBENCH_FAST_AUTOTUNE", "1")
    env["TOKENBENCH_PEAK_DIR"] = str(work / "results")  # the suites read the peak this check measured
    env["PYTHONUNBUFFERED"] = "1"
    return env


def preflight_facts(work: Path) -> dict:
    try:
        return json.loads((work / "preflight.json").read_text())
    except (OSError, ValueError):
        return {}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="gpu_check", description="the one-call GPU check")
    p.add_argument("out", help="folder for summary.txt, logs.txt, results.tar.gz")
    p.add_argument("--deadline-s", type=float, default=float(os.environ.get("GPU_CHECK_DEADLINE_S",
                                                                            DEFAULT_DEADLINE_S)),
                   help=f"global deadline in seconds (default {DEFAULT_DEADLINE_S:g}, or GPU_CHECK_DEADLINE_S)")
    p.add_argument("--fake", default=os.environ.get("GPU_CHECK_FAKE"),
                   help="comma list of stand-in steps (ok, fail, hang, orphan) to test the control flow")
    p.add_argument("--only", help="comma list of step names to run (default all)")
    p.add_argument("--inject-hang", default="", help="comma list of step names replaced by a hanging stand-in "
                                                     "(a rehearsal of a stuck step)")
    args = p.parse_args(argv)
    if args.deadline_s <= PACK_RESERVE_S:
        print(f"tokenbench: error: --deadline-s must exceed {PACK_RESERVE_S:g}", file=sys.stderr)
        return 2
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"tokenbench: error: cannot create {out}: {exc}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="gpu-check."))
    (work / "logs").mkdir()
    (work / "results").mkdir()
    runner = Runner(work, out, time.monotonic() + args.deadline_s, step_env(work))
    runner.header = (f"tokenbench gpu check, {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, commit "
                     f"{git_commit()}, deadline {args.deadline_s:g} s, work {work}"
                     + (f", fake steps {args.fake}" if args.fake else ""))
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, runner.stop)
    steps = fake_steps(work, args.fake) if args.fake else real_steps(work)
    if args.only:
        wanted = {s.strip() for s in args.only.split(",")}
        steps = [s for s in steps if s.name in wanted]
    for step in steps:
        if step.name in args.inject_hang.split(","):
            step.argv = [python(), "-c", FAKE["orphan"], str(work), step.name]
    facts = {}
    for step in steps:
        if step.name != "preflight" and not args.fake and not facts:
            facts = preflight_facts(work)
        triton_ok, triton_why = facts.get("triton_ok", True), facts.get("triton_reason") or "preflight failed"
        if step.needs_triton and not triton_ok:
            runner.outcomes.append(Outcome(step.name, note=f"skipped: Triton cannot launch here ({triton_why})"))
            continue
        slug = facts.get("slug") or "unknown"
        backends = "torch,triton" if triton_ok else "torch"
        step.argv = [a.replace("{slug}", slug).replace("{backends}", backends) for a in step.argv]
        runner.run(step)
    runner.pack()
    print(runner.summary(), end="")
    print(f"packed into {out}: summary.txt logs.txt results.tar.gz")
    if runner.stopping:
        return 128 + getattr(signal, runner.stopping)
    return 0 if all(o.rc == 0 for o in runner.outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())

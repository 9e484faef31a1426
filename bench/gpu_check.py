"""The one-call GPU check (entry point: `bash bench/gpu_check.sh OUT`). Standard library only: it must run on a
bare GPU machine before anything else is known to work there.

Steps run in order of value under one global deadline (bench/gpu_check_plan.py: the steps, their plans and
their estimated seconds; docs/gpu-check.md). Each step is started with the largest of its plans that fits the
time left, each in its own process group under min(its own limit, the time left); after every step, and every
PACK_EVERY_S while one runs, OUT is rewritten whole from the work folder: summary.txt, logs.txt and
results.tar.gz (three files, each bounded), so a check killed at any moment still leaves what it had.
SIGTERM/SIGINT/SIGHUP of the check stop the running step, pack, and exit 128+signal. Every wait is bounded: a
step that survives SIGKILL is noted in the summary and left behind, and the check goes on.

    python -m bench.gpu_check OUT [--deadline-s 565] [--dry-run [--device h100-sxm|h200]] [--cpu-rehearsal]
                                  [--fake ok,hang,orphan,...]

The preflight is strict: no CUDA device stops the check after it with one line and exit 2 (--cpu-rehearsal
runs every step's control flow on a CPU instead, with tiny plans and a 180 s deadline). A package a step needs
that the preflight found missing skips that step alone, with the reason in summary.txt; a preflight that
crashed leaves Triton unknown, and the Triton steps are skipped rather than assumed to work.

--fake replaces the steps with short stand-ins (ok, fail, hang, orphan: a step whose child ignores SIGINT and
escapes into its own session; slow: a step whose large plan overruns, with a small one that fits; needs-missing:
a step that needs a package this machine lacks) so the control flow is tested on a CPU.
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
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: bench.gpu_check_plan is beside it
    sys.path.insert(0, str(ROOT))

from bench.gpu_check_plan import (CHECK_PACKAGES, DEFAULT_DEADLINE_S, DEVICES, REHEARSAL_DEADLINE_S,  # noqa: E402
                                  Plan, Step, choose, cpu_steps, device_from_name, dry_run, gpu_steps, later_core)

NO_CUDA_EXIT = 2  # bench/gpu_preflight.py's exit when torch sees no CUDA device
PACK_RESERVE_S = 5.0  # kept back from every step so the final pack always fits under the deadline
GRACE_S = float(os.environ.get("GPU_CHECK_GRACE_S", "10"))  # between SIGINT (runs keep their rows, pytest saves its JSON) and SIGKILL
KILL_WAIT_S = float(os.environ.get("GPU_CHECK_KILL_WAIT_S", "5"))  # after SIGKILL: longer means stuck in the driver
PACK_EVERY_S = 20.0
MAX_FILE_BYTES = 15 * 2**20  # under the 16 MiB a remote runner brings back per file
LOG_HEAD_BYTES = 64 * 1024  # per step in logs.txt: its head and its tail, the middle elided when larger
LOG_TAIL_BYTES = 256 * 1024


@dataclass
class Outcome:
    name: str
    rc: int | None = None  # None: not run
    seconds: float = 0.0
    note: str = ""
    command: str = ""
    plan: str = ""
    estimate_s: float | None = None


def _die_with_parent(parent: int):
    """For the step's child, before exec: ask Linux to SIGKILL it if the check itself is SIGKILLed, which
    leaves no chance to clean up (a hung step would otherwise outlive the check and hold the GPU). A check
    killed between the fork and the prctl would never send that signal, so the child then ends itself."""
    def arm():
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
        if os.getppid() != parent:  # the check died before the prctl took hold
            os._exit(137)
    return arm


def python() -> str:
    return os.environ.get("PYTHON") or sys.executable


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
    # sleeps its plan's seconds, then writes its result like "ok"
    "sleep": "import os, sys, time; time.sleep(float(sys.argv[3])); "
             "open(os.path.join(sys.argv[1], 'results', sys.argv[2] + '.json'), 'w').write('{}')",
}
MISSING_PACKAGE = "tokenbench-no-such-package"  # what the needs-missing stand-in needs


def fake_steps(work: Path, spec: str) -> list:
    steps = []
    limit = float(os.environ.get("GPU_CHECK_FAKE_LIMIT_S", "30"))
    for i, kind in enumerate(k.strip() for k in spec.split(",") if k.strip()):
        name = f"{i}-{kind}"
        if kind == "slow":  # a large plan that overruns what is left, a small one that fits
            big = float(os.environ.get("GPU_CHECK_FAKE_SLOW_S", "60"))
            plans = [Plan(f"large ({big:g} s)", [python(), "-c", FAKE["sleep"], str(work), name, str(big)],
                          extra_s=big),
                     Plan("small (1 s)", [python(), "-c", FAKE["sleep"], str(work), name, "1"], extra_s=0)]
            steps.append(Step(name, max(limit, big + 5), plans))
            continue
        if kind == "needs-missing":
            steps.append(Step(name, limit, [Plan("ok", [python(), "-c", FAKE["ok"], str(work), name])],
                              needs=(MISSING_PACKAGE,)))
            continue
        if kind not in FAKE or kind == "sleep":
            choices = ", ".join([k for k in FAKE if k != "sleep"] + ["slow", "needs-missing"])
            raise SystemExit(f"tokenbench: error: unknown fake step {kind!r}; choose from {choices}")
        steps.append(Step(name, limit, [Plan(kind, [python(), "-c", FAKE[kind], str(work), name])]))
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

    def __init__(self, work: Path, out: Path, deadline: float, env: dict, device: str = "h100-sxm"):
        self.work, self.out, self.deadline, self.env = work, out, deadline, env
        self.device = device  # whose estimates plan the steps (bench/gpu_check_plan.py)
        self.facts_line = ""
        self.proc = None
        self.seen = set()  # every descendant seen while the step ran: killed at its end even if re-parented
        self.outcomes: list = []
        self.started = time.time()
        self.header = ""
        self.stopping = None

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, step: Step, plan: Plan, why: str = "", limit_s: float | None = None) -> Outcome:
        """Run one plan of a step under min(limit_s or the step's limit, the time left)."""
        outcome = Outcome(step.name, command=" ".join(shlex.quote(a) for a in plan.args), plan=plan.label,
                          estimate_s=plan.estimate(self.device))
        limit = min(step.limit_s if limit_s is None else limit_s, self.time_left() - PACK_RESERVE_S - GRACE_S)
        log = self.work / "logs" / f"{len(self.outcomes):02d}-{step.name}.log"
        self.outcomes.append(outcome)
        if self.stopping:
            outcome.note = f"not run: check stopped by {self.stopping}"
            return outcome
        if limit < 1:
            outcome.note = "not run: global deadline reached"
            return outcome
        prefix = (why + "; ") if why else ""
        outcome.note = f"{prefix}running (limit {limit:.0f} s, estimate {outcome.estimate_s:.0f} s)"
        self.pack()
        t0 = time.monotonic()
        with open(log, "w") as f:
            f.write(f"== {step.name} [{plan.label}] (limit {limit:.0f} s, estimate {outcome.estimate_s:.0f} s): "
                    f"{outcome.command}\n")
            f.flush()
            self.proc = subprocess.Popen(plan.args, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env={**self.env, **step.env},
                                         start_new_session=True, preexec_fn=_die_with_parent(os.getpid()))
            self.seen = set()
            rc, stopped = self._wait(limit)
            outcome.rc, outcome.seconds = rc, time.monotonic() - t0
            outcome.note = "; ".join(x for x in (why, stopped) if x)
            f.write(f"\n== {step.name}: exit {rc}, {outcome.seconds:.1f} s{', ' + stopped if stopped else ''}\n")
        print(f"gpu_check: {step.name}: exit {rc} in {outcome.seconds:.1f} s {outcome.note}", file=sys.stderr,
              flush=True)
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
        try:
            rc = proc.wait(timeout=KILL_WAIT_S)
        except subprocess.TimeoutExpired:  # stuck in the kernel (a driver call): note it, leave it, go on
            rc = -int(signal.SIGKILL)
            why = (why + "; " if why else "") + (f"unkillable: pid {proc.pid} still alive {KILL_WAIT_S:g} s after "
                                                 f"SIGKILL, left behind")
        end = time.monotonic() + KILL_WAIT_S  # a SIGKILLed process takes a moment to die; one in the driver longer
        while any(_alive(p) for p in leftover) and time.monotonic() < end:
            time.sleep(0.05)
        stuck = [p for p in leftover if _alive(p)]
        if stuck:
            why = (why + "; " if why else "") + f"{len(stuck)} process(es) still alive after SIGKILL: {sorted(stuck)}"
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

    def skip(self, name: str, why: str) -> Outcome:
        """A step that is not started, with the reason."""
        outcome = Outcome(name, note=why)
        self.outcomes.append(outcome)
        return outcome

    def summary(self) -> str:
        lines = [self.header] + ([self.facts_line] if self.facts_line else [])
        lines.append(f"{'step':<14} {'exit':>5} {'seconds':>8} {'est s':>6}  plan: note / command")
        for o in self.outcomes:
            rc = "-" if o.rc is None else str(o.rc)
            est = "-" if o.estimate_s is None else f"{o.estimate_s:.0f}"
            text = f"{o.plan}: {o.note}" if o.plan else o.note
            lines.append(f"{o.name:<14} {rc:>5} {o.seconds:8.1f} {est:>6}  {text}".rstrip())
            if o.command:
                cmd = o.command if len(o.command) <= 240 else o.command[:237] + "..."
                lines.append(f"{'':<38}{cmd}")
        failed = [o.name for o in self.outcomes if o.rc != 0]
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


def detect_device() -> tuple:
    """(estimates' device, how it was chosen) from nvidia-smi's GPU name, for --dry-run without --device."""
    try:
        names = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                               text=True, timeout=10).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        names = []
    found = device_from_name(names[0] if names else None)
    if found:
        return found, f"detected {names[0].strip()}"
    if names:
        return "h100-sxm", f"detected {names[0].strip()}, no estimates of its own: the H100's shown"
    return "h100-sxm", "no GPU detected here: the H100 SXM's estimates (the likelier node)"


def missing_packages(step: Step, facts: dict) -> list:
    """The distributions this step needs that the preflight found missing ([] when it could not tell)."""
    packages = facts.get("packages") or {}
    return [name for name in step.needs if name in packages and packages[name] is None]


def facts_line(facts: dict, device: str, preflight_rc) -> str:
    packages = facts.get("packages") or {}
    missing = [k for k, v in packages.items() if v is None]
    if facts.get("triton_ok") is True:
        triton = "Triton launches"
    elif facts.get("triton_ok") is False:
        triton = f"Triton cannot launch ({facts.get('triton_reason')})"
    else:
        triton = f"Triton unknown (preflight exit {preflight_rc})"
    energy = ("; board energy not read: nvidia-ml-py missing" if packages.get("nvidia-ml-py", "") is None else "")
    return (f"device {facts.get('device', 'unknown')} (estimates: {device}); {triton}; packages missing: "
            f"{', '.join(missing) or 'none'}{energy}")


def run_steps(runner: Runner, steps: list, facts_from_preflight: bool, fake: bool,
              fixed_device: str | None = None) -> int | None:
    """Every step in order; returns NO_CUDA_EXIT when the preflight found no CUDA device (the rest not run).
    After the preflight the estimates are those of the GPU it found, unless `fixed_device` names them."""
    facts, preflight_rc = ({"packages": _package_versions()} if fake else {}), None
    for i, step in enumerate(steps):
        if step.name == "preflight" and facts_from_preflight:
            outcome = runner.run(step, step.plans[0])
            preflight_rc, facts = outcome.rc, preflight_facts(runner.work)
            runner.device = fixed_device or device_from_name(facts.get("device")) or "h100-sxm"
            runner.facts_line = facts_line(facts, runner.device, preflight_rc)
            if outcome.rc == NO_CUDA_EXIT:
                why = facts.get("cuda_reason") or "no CUDA device"
                outcome.note = f"stopped the check: {why} (--cpu-rehearsal runs it on a CPU)"
                for later in steps[i + 1:]:
                    runner.skip(later.name, "not run: the preflight found no CUDA device")
                return NO_CUDA_EXIT
            if outcome.rc != 0:
                outcome.note += f"; preflight exit {outcome.rc}: Triton unknown, packages as far as it got"
            continue
        missing = missing_packages(step, facts)
        if missing:
            runner.skip(step.name, f"not run: needs {', '.join(missing)}, not installed (preflight)")
            continue
        triton_ok = facts.get("triton_ok") if not fake else True
        if step.needs_triton and triton_ok is not True and not facts.get("rehearsal"):
            why = (f"Triton cannot launch here ({facts.get('triton_reason')})" if triton_ok is False
                   else f"Triton unknown: the preflight did not finish (exit {preflight_rc})")
            runner.skip(step.name, f"not run: {why}")
            continue
        if runner.stopping:
            runner.skip(step.name, f"not run: check stopped by {runner.stopping}")
            continue
        if runner.time_left() - PACK_RESERVE_S - GRACE_S < 1:
            runner.skip(step.name, "not run: global deadline reached")
            continue
        index, why = choose(step, runner.time_left() - PACK_RESERVE_S - GRACE_S,
                            later_core(steps, i, runner.device), runner.device)
        if index is None:
            runner.skip(step.name, why)
            continue
        plan = step.plans[index]
        backends = "torch,triton" if triton_ok is True else "torch"
        slug = facts.get("slug") or "unknown"
        plan.args = [a.replace("{slug}", slug).replace("{backends}", backends) for a in plan.args]
        # a core step may run past its estimate up to its own limit, but not into the later core steps' share
        room = runner.time_left() - PACK_RESERVE_S - GRACE_S - later_core(steps, i, runner.device)
        limit = min(step.limit_s, max(room, plan.estimate(runner.device) * 1.5 + 10))
        runner.run(step, plan, why, limit)
    return None


def _package_versions() -> dict:
    """The stand-in steps' facts: what a preflight would record here."""
    from bench.gpu_preflight import package_versions

    return package_versions(tuple(CHECK_PACKAGES) + (MISSING_PACKAGE,))  # the needs-missing stand-in's


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="gpu_check", description="the one-call GPU check")
    p.add_argument("out", help="folder for summary.txt, logs.txt, results.tar.gz")
    p.add_argument("--deadline-s", type=float, default=None,
                   help=f"global deadline in seconds (default {DEFAULT_DEADLINE_S:g}, {REHEARSAL_DEADLINE_S:g} with "
                        f"--cpu-rehearsal, or GPU_CHECK_DEADLINE_S)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the steps in order with their limits, commands and estimated seconds; run nothing")
    p.add_argument("--device", help=f"whose estimates: {', '.join(DEVICES[:2])} (default: the detected GPU)")
    p.add_argument("--cpu-rehearsal", action="store_true",
                   help="run every step's control flow on a CPU with tiny plans (the preflight does not stop it)")
    p.add_argument("--fake", default=os.environ.get("GPU_CHECK_FAKE"),
                   help="comma list of stand-in steps (ok, fail, hang, orphan, slow, needs-missing)")
    p.add_argument("--only", help="comma list of step names to run (default all)")
    p.add_argument("--inject-hang", default="", help="comma list of step names replaced by a hanging stand-in "
                                                     "(a rehearsal of a stuck step)")
    args = p.parse_args(argv)
    deadline = args.deadline_s
    if deadline is None:
        env_deadline = os.environ.get("GPU_CHECK_DEADLINE_S")
        deadline = float(env_deadline) if env_deadline else (REHEARSAL_DEADLINE_S if args.cpu_rehearsal
                                                             else DEFAULT_DEADLINE_S)
    if deadline <= PACK_RESERVE_S:
        print(f"tokenbench: error: --deadline-s must exceed {PACK_RESERVE_S:g}", file=sys.stderr)
        return 2
    if args.device is not None and args.device not in DEVICES[:2]:
        print(f"tokenbench: error: --device {args.device!r}: choose {' or '.join(DEVICES[:2])}", file=sys.stderr)
        return 2
    out = Path(args.out)
    if args.dry_run:
        if args.cpu_rehearsal:
            device, source = "cpu", "CPU rehearsal"
        elif args.device:
            device, source = args.device, "device given"
        else:
            device, source = detect_device()
        work = "$WORK"
        steps = cpu_steps(python(), work) if device == "cpu" else gpu_steps(python(), work)
        print(dry_run(_select(steps, args), device, deadline, python(), source, PACK_RESERVE_S + GRACE_S), end="")
        return 0
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"tokenbench: error: cannot create {out}: {exc}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="gpu-check."))
    (work / "logs").mkdir()
    (work / "results").mkdir()
    device = "stand-in" if args.fake else "cpu" if args.cpu_rehearsal else (args.device or "h100-sxm")
    runner = Runner(work, out, time.monotonic() + deadline, step_env(work), device)
    runner.header = (f"tokenbench gpu check, {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, commit "
                     f"{git_commit()}, deadline {deadline:g} s, work {work}"
                     + (f", fake steps {args.fake}" if args.fake else "")
                     + (", CPU rehearsal (tiny plans; GPU tests collected and skipped)" if args.cpu_rehearsal else ""))
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, runner.stop)
    if args.fake:
        steps = fake_steps(work, args.fake)
    else:
        steps = cpu_steps(python(), str(work)) if args.cpu_rehearsal else gpu_steps(python(), str(work))
    steps = _select(steps, args)
    for step in steps:
        if step.name in args.inject_hang.split(","):
            step.plans = [Plan("injected hang", [python(), "-c", FAKE["orphan"], str(work), step.name])]
    # the estimates of the GPU the preflight finds (an H100's where it is neither): --device, a rehearsal and
    # fake steps fix them
    fixed = "stand-in" if args.fake else "cpu" if args.cpu_rehearsal else args.device
    try:
        status = run_steps(runner, steps, bool(steps) and steps[0].name == "preflight", bool(args.fake), fixed)
    except Exception as exc:  # noqa: BLE001 - a bug in the check itself: still pack what the steps left
        import traceback

        traceback.print_exc()
        runner.skip("check", f"the check itself failed: {type(exc).__name__}: {exc}")
        status = None
    runner.pack()
    print(runner.summary(), end="")
    print(f"packed into {out}: summary.txt logs.txt results.tar.gz")
    if status == NO_CUDA_EXIT:
        facts = preflight_facts(work)
        print(f"tokenbench: error: {facts.get('cuda_reason') or 'no CUDA device'}: the check stopped after the "
              f"preflight (--cpu-rehearsal runs it on a CPU)", file=sys.stderr)
        return NO_CUDA_EXIT
    if runner.stopping:
        return 128 + getattr(signal, runner.stopping)
    return 0 if all(o.rc == 0 for o in runner.outcomes) else 1


def _select(steps: list, args) -> list:
    if not args.only:
        return steps
    wanted = {s.strip() for s in args.only.split(",")}
    return [s for s in steps if s.name in wanted]


if __name__ == "__main__":
    sys.exit(main())

"""Launching a torchrun group on this node and stopping it cleanly: what `tokenbench tp` and `tokenbench
workload --tp N` share (bench/commands/tp.py, bench/workload/tp_group.py), and, for `tokenbench tp`, finding
the results files the group's rank 0 wrote and marking those a stopped group left unfinished.

The group runs `python -m torch.distributed.run ... -m MODULE ARGS` in a session of its own, its stderr relayed
to ours; Ctrl-C, SIGTERM or SIGHUP to the launcher (or a timeout) stops the whole group (torchrun, then its
workers) and hands the caller the note to write into its results record, with a second Ctrl-C ignored while
it does so. A worker left behind would keep a GPU busy for the next step's numbers, so torchrun and each rank
also die with their parent when the launcher is SIGKILLed (die_with_parent).
"""
from __future__ import annotations

import codecs
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from bench.records import store
from bench.errors import UserError, die_with_parent, restore_signals, stop_on_signals, stop_status

# torchrun stops its workers within 30 s of a SIGTERM (SIGTERM, then SIGKILL); past this it is killed itself.
STOP_WAIT_S = 40


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_command(nproc: int, module: str, worker_args: list, nnodes: int = 1, node_rank: int = 0,
                     rdzv_endpoint: str | None = None, rdzv_id: str = "tokenbench-tp") -> list:
    """`python -m torch.distributed.run` with `nproc` ranks per node running `python -m module worker_args`;
    one node: a free port of 127.0.0.1; several: the given rendezvous, the same on every node."""
    if nproc < 1 or nnodes < 1:
        raise UserError("--tp and --nnodes must be positive")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc)]
    if nnodes == 1:
        cmd += ["--nnodes", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}"]
    else:
        if not rdzv_endpoint:
            raise UserError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (the same on every node)")
        cmd += ["--nnodes", str(nnodes), "--node-rank", str(node_rank), "--rdzv-backend", "c10d",
                "--rdzv-endpoint", rdzv_endpoint, "--rdzv-id", rdzv_id]
    return cmd + ["-m", module, *worker_args]


class Group:
    """The torchrun group launched in its own session, its stderr relayed to ours until stop(): told to
    stop, torchrun logs its shutdown and a ~40-line traceback, which is no news to a user who pressed Ctrl-C."""

    def __init__(self, cmd: list, env: dict):
        launcher = os.getpid()
        self.proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, start_new_session=True,
                                     preexec_fn=lambda: die_with_parent(launcher))
        self.quiet = threading.Event()
        self.relay = threading.Thread(target=self._relay, daemon=True)
        self.relay.start()

    def _relay(self) -> None:
        # raw chunks, not lines: rank 0's live bar on a terminal is control codes without newlines
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        while chunk := os.read(self.proc.stderr.fileno(), 65536):
            if not self.quiet.is_set():  # read on when quiet, so the group never blocks on a full pipe
                sys.stderr.write(decoder.decode(chunk))
                sys.stderr.flush()

    def wait(self, timeout_s: float | None) -> int:
        rc = self.proc.wait(timeout=timeout_s)
        self.relay.join(timeout=5)
        return rc

    def stop(self) -> None:
        """SIGTERM to torchrun, which stops its workers (each in a session of its own, which a signal to
        this group would not reach) before it exits; SIGKILL if it has not exited in STOP_WAIT_S."""
        self.quiet.set()
        for sig, wait_s in ((signal.SIGTERM, STOP_WAIT_S), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        self.relay.join(timeout=5)


def worker_env() -> dict:
    root = str(Path(__file__).resolve().parents[2])  # the source tree, importable without installing
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
               TOKENBENCH_DIE_WITH_PARENT="1")  # each rank dies with torchrun (bench/__init__.py)
    if sys.stderr.isatty():  # rank 0 writes to our pipe: tell it the user sees a terminal, and how wide
        from bench.sweeps.tp_sweep import TERMINAL_ENV

        env[TERMINAL_ENV] = "1"
        env["COLUMNS"] = str(shutil.get_terminal_size().columns)
    return env


def wait_for(group: Group, timeout_s: float | None) -> tuple[int, str | None]:
    """(exit status, None) when the group ends by itself, else (status, the note for the record). SIGTERM
    and SIGHUP to the launcher (a CI job's timeout, a closed terminal) stop it as Ctrl-C does: the group, in
    sessions of its own, would not get them."""
    previous = stop_on_signals()
    try:
        return group.wait(timeout_s), None
    except KeyboardInterrupt as exc:  # Ctrl-C, or bench.errors.Stopped
        return stop_status(exc), store.interrupted_note(exc)
    except subprocess.TimeoutExpired:
        return 124, f"stopped after --timeout-s {timeout_s:g}; the rows measured before it are kept"
    finally:
        restore_signals(previous)


def run_group(cmd: list, timeout_s: float | None, on_stopped: Callable[[str], str]) -> tuple[int, str | None, str]:
    """Launch the group and wait for it. (exit status, None, "") when it ends by itself; when it is stopped
    (Ctrl-C, SIGTERM, SIGHUP, the timeout): the group is ended, then on_stopped(note) keeps what was measured
    (a second Ctrl-C ignored meanwhile) and says what it kept: (status, note, what on_stopped said)."""
    print("launching: " + " ".join(cmd[1:]), file=sys.stderr)
    group = Group(cmd, worker_env())
    rc, note = wait_for(group, timeout_s)
    if note is None:
        return rc, None, ""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
    try:
        group.stop()
        kept = on_stopped(note)
    finally:
        signal.signal(signal.SIGINT, previous)
    if sys.stderr.isatty():  # erase rank 0's half-drawn bar and show the cursor it hid
        sys.stderr.write("\r\x1b[2K\x1b[?25h")
    return rc, note, kept


def in_torchrun() -> bool:
    """True in a process torchrun started (a worker): launching another group from it would nest."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def new_records(out: Path, before: set, kind: str) -> list:
    """(path, record) of the results files of `kind` that a launched group wrote into `out` since `before`
    (the files there before the launch): rank 0 names them, the launcher does not."""
    found = []
    for path in sorted(set(out.glob("*.json")) - before) if out.is_dir() else []:
        try:
            record = store.read_json(path, "results file")
        except UserError:
            continue
        if isinstance(record, dict) and record.get("kind") == kind:
            found.append((path, record))
    return found


def mark_stopped(found: list, note: str) -> str:
    """Note on each unfinished file of new_records() why it ends early (its rows stay), and say what was
    kept, in words."""
    kept = []
    for path, record in found:
        if record.get("complete"):
            continue
        record["interrupted"] = note
        store.ResultWriter.reopen(path).write(record)
        for tmp in (path.with_suffix(".json.tmp"), path.with_suffix(".csv.tmp")):  # rank 0 stopped mid-write
            tmp.unlink(missing_ok=True)
        cases = len(record.get("steps", []))
        kept.append(f"{cases} finished case(s) ({len(record.get('rows', []))} rows) kept in {path}" if cases
                    else f"no case had finished; {path} holds the settings and no rows")
    return "; ".join(kept) or "no results file was written yet"

"""Tensor parallel on CPU: 2 gloo ranks give the one-process layer output; the CLI path launches torchrun."""
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench.sweeps import tp_sweep
from bench.errors import UserError
from bench.configs.model_configs import get_model

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_match_one_process(gloo_pair):
    saved = gloo_pair["layer"]  # gloo_pair.layer_compare's output: tiny, batch 3, context 9
    for got, want in zip(saved["tp"], saved["one"]):
        # same fp32 math, different summation order across the split: a few ulps
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_shard_dims_and_kv_replication():
    d = get_model("tiny").layer_dims  # 4 heads, 2 KV heads, ffn 176
    dl, q, kv = tp_sweep.local_dims(d, 1, 2)
    assert (dl.heads, dl.kv_heads, dl.ffn, q, kv) == (2, 1, 88, [2, 3], [1])
    dl4, q4, kv4 = tp_sweep.local_dims(d, 3, 4)  # more ranks than KV heads: each rank keeps the one it reads
    assert (dl4.heads, dl4.kv_heads, q4, kv4) == (1, 1, [3], [1])
    assert kv4[0] == q4[0] // (d.heads // d.kv_heads)
    with pytest.raises(UserError):
        tp_sweep.local_dims(d, 0, 3)
    w = {k: v for k, v in __import__("kernels.layer", fromlist=["x"]).make_layer_weights(
        d, torch.float32, "cpu", 0).items()}
    s = tp_sweep.shard_weights(d, w, 1, 2)
    assert s["qkv"].shape == (2 * 16 + 2 * 16, 64) and s["o"].shape == (64, 32)
    assert s["gate_up"].shape == (176, 64) and s["down"].shape == (64, 88)
    torch.testing.assert_close(s["gate_up"][88:], w["gate_up"][176 + 88:])  # up rows follow the gate rows


def test_bus_bandwidth_nccl_tests_convention():
    algbw, busbw = tp_sweep.bus_bandwidth(8e6, 1e-3, 8)
    assert algbw == pytest.approx(8e9) and busbw == pytest.approx(8e9 * 2 * 7 / 8)
    assert tp_sweep.bus_bandwidth(1, 1, 1)[1] == 0


def test_memory_per_gpu_is_sharded():
    m = get_model("llama-3.1-70b")
    one, eight = tp_sweep.shard_weight_bytes(m, 1, 2), tp_sweep.shard_weight_bytes(m, 8, 2)
    assert one == pytest.approx(m.weight_bytes("bf16"), rel=1e-6)
    assert eight == pytest.approx(one / 8, rel=0.01)
    assert tp_sweep.kv_bytes_per_rank(m, 8, 1, 1000, 2) * 8 == m.kv_cache_bytes(1, 1000, "bf16")


def test_cli_launches_torchrun_and_writes_a_tp_record(tmp_path, capsys):
    """In-process launcher (the group is a real torchrun launch; rank 0's stderr is relayed to ours). The
    Ctrl-C tests below run the launcher as a real process."""
    from bench.cli import main

    code = main(["tp", "--tp", "2", "--model", "tiny", "--device", "cpu", "--batch", "2", "--context", "9",
                 "--budget-s", "0.01", "--out", str(tmp_path), "--price-per-hour", "2", "--power-kw", "1",
                 "--timeout-s", "100"])
    err = capsys.readouterr().err
    assert code == 0, err[-2000:]
    assert re.search(r"^\[1/1\] b=2 ctx=9 tp=2: layer ", err, re.M)  # numbered case lines in a pipe
    (path,) = tmp_path.glob("*.json")
    record = json.loads(path.read_text())
    assert record["kind"] == "tp" and record["complete"] and record["tp"]["world_size"] == 2
    assert record["tp"]["process_group_backend"] == "gloo"
    ranks = {(r["op"], r["rank"]) for r in record["rows"]}
    assert {("tp_layer", 0), ("tp_layer", 1), ("all_reduce", 0), ("all_reduce", 1)} <= ranks
    (step,) = record["steps"]
    assert step["valid"] and step["tp"] == 2
    assert step["tokens_per_s_per_gpu"] == pytest.approx(step["tokens_per_s"] / 2)
    assert step["tokens_per_s"] == pytest.approx(2 / step["step_seconds"])
    assert step["all_reduce_share"] == pytest.approx(2 * step["all_reduce_seconds"] / step["layer_seconds"])
    assert step["cost_per_mtok"] == pytest.approx(2 / (step["tokens_per_s_per_gpu"] * 3600 / 1e6))
    ar = next(r for r in record["rows"] if r["op"] == "all_reduce" and r["rank"] == 0)
    assert ar["busbw_gbps"] == pytest.approx(ar["algbw_gbps"] * 2 * 1 / 2)
    assert ar["bytes"] == 2 * 64 * 4


def test_moe_model_is_refused_with_a_reason(tmp_path):
    import argparse

    p = argparse.ArgumentParser()
    tp_sweep.add_worker_arguments(p)
    args = p.parse_args(["--model", "tiny-moe", "--device", "cpu", "--out", str(tmp_path)])
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    try:
        with pytest.raises(UserError, match="mixture of experts: `tokenbench tp` covers dense layers"):
            tp_sweep.run(args)
    finally:
        for k in ("MASTER_ADDR", "MASTER_PORT"):
            os.environ.pop(k)


def test_torchrun_dash_m_bench_tp_runs_the_worker_in_place(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--nnodes", "1",
                           "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}",
                           "-m", "bench", "tp", "--model", "tiny", "--device", "cpu", "--batch", "1", "--context", "5",
                           "--budget-s", "0.01", "--out", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = tmp_path.glob("*.json")  # one file: only rank 0 writes
    record = json.loads(path.read_text())
    assert record["tp"]["world_size"] == 2 and record["steps"][0]["valid"]


def test_launcher_passes_worker_flags_and_needs_an_endpoint_for_multinode():
    import argparse

    from bench.commands import tp as tp_cmd

    p = argparse.ArgumentParser()
    tp_cmd.add_arguments(p)
    cmd = tp_cmd.launch_command(p.parse_args(["--tp", "4", "--model", "tiny", "--no-cuda-graph"]))
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--nproc-per-node", "4"]
    assert "--no-cuda-graph" in cmd and cmd[cmd.index("-m", 3) + 1] == "bench.sweeps.tp_sweep"
    assert any(c.startswith("127.0.0.1:") for c in cmd)
    multi = tp_cmd.launch_command(p.parse_args(["--tp", "8", "--nnodes", "2", "--node-rank", "1",
                                                "--rdzv-endpoint", "head:29500"]))
    assert ["--nnodes", "2", "--node-rank", "1"] == multi[multi.index("--nnodes"):multi.index("--nnodes") + 4]
    with pytest.raises(UserError, match="rdzv-endpoint"):
        tp_cmd.launch_command(p.parse_args(["--nnodes", "2"]))


def test_run_dash_dash_tp_hands_over_to_the_tp_launcher(tmp_path, monkeypatch):
    """`run --tp 2` launches the very group `tp --tp 2` launches, with run's flags (and run's CPU defaults
    for the rest) reaching the workers. The group itself is not started here: test_cli_launches_... runs
    one launch to a complete record, and test_ctrl_c_...[run] runs `run --tp 2` for real."""
    import argparse

    from bench.cli import main
    from bench.commands import run as run_cmd
    from bench.commands import tp as tp_cmd

    launched = []

    def launch(cmd, timeout_s, on_stopped):  # what the group would run, then "it ended by itself"
        launched.append(cmd)
        return 0, None, ""

    monkeypatch.setattr(tp_cmd, "run_group", launch)
    flags = ["--model", "tiny", "--device", "cpu", "--batch", "1", "--context", "5", "--budget-s", "0.01",
             "--out", str(tmp_path)]
    assert main(["run", "--tp", "2", *flags]) == 0
    assert main(["tp", "--tp", "2", "--dtype", run_cmd.CPU_DEFAULTS["dtype"], *flags]) == 0
    via_run, via_tp = launched
    endpoint = via_run.index("--rdzv-endpoint") + 1  # a free port each launch
    assert via_run[:endpoint] + via_run[endpoint + 1:] == via_tp[:endpoint] + via_tp[endpoint + 1:]
    assert via_run[1:5] == ["-m", "torch.distributed.run", "--nproc-per-node", "2"]
    module = via_run.index("bench.sweeps.tp_sweep")
    assert via_run[module - 1] == "-m"
    p = argparse.ArgumentParser()
    tp_sweep.add_worker_arguments(p)
    worker = p.parse_args(via_run[module + 1:])  # what each rank parses
    assert (worker.model, worker.batch, worker.context, worker.device, worker.out, worker.budget_s) == (
        "tiny", "1", "5", "cpu", str(tmp_path), "0.01")
    assert worker.dtype == run_cmd.CPU_DEFAULTS["dtype"] and worker.backend == run_cmd.CPU_DEFAULTS["backend"]
    assert list(tmp_path.iterdir()) == []  # the launcher writes nothing itself: rank 0 does


def test_bad_tp_sizes_fail_before_launching(capsys):
    from bench.cli import main

    assert main(["tp", "--tp", "3", "--model", "tiny", "--device", "cpu"]) == 2  # 4 heads, 3 ranks
    assert "must divide" in capsys.readouterr().err
    assert main(["tp", "--tp", "2", "--model", "tiny-moe", "--device", "cpu"]) == 2
    assert "mixture of experts" in capsys.readouterr().err


def processes_naming(text: str) -> list:
    """Command lines of live processes that mention `text` (a test's own tmp folder: its workers)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:  # ended while we looked
            continue
        if any(text.encode() in a for a in argv):
            found.append(b" ".join(argv).decode(errors="replace"))
    return found


def first_case_written(folder: Path, proc, timeout_s: float = 120):
    """Wait until rank 0 has written a finished case to the results file; return its path."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        for path in folder.glob("*.json"):
            try:
                if json.loads(path.read_text()).get("steps"):
                    return path
            except (ValueError, OSError):  # a file rank 0 has just reserved ("{}") or is replacing
                pass
        time.sleep(0.1)
    raise AssertionError(f"no finished case written; exit {proc.poll()}")


@pytest.mark.parametrize("command", ["tp", "run"])
def test_ctrl_c_keeps_the_measured_cases_and_says_one_line(command, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # more cases than can finish before the signal lands
    proc = subprocess.Popen([sys.executable, "-m", "bench", command, "--tp", "2", "--model", "tiny", "--device", "cpu",
                             "--batch", "1,2,3,4,5,6,7,8", "--context", "5", "--budget-s", "0.02",
                             "--out", str(tmp_path)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        path = first_case_written(tmp_path, proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "SIGTERM" not in err, err[-3000:]  # torchrun's shutdown stays off
    assert err.strip().splitlines()[-1].startswith("tokenbench tp: stopped by Ctrl-C; ")
    record = json.loads(path.read_text())
    assert record["interrupted"] and not record["complete"]
    cases = len(record["steps"])
    assert 1 <= cases < 8 and len(record["rows"]) == cases * 2 * 5  # 2 ranks x 5 timed items per finished case
    assert f"{cases} finished case(s) ({len(record['rows'])} rows) kept in {path}" in err
    assert not list(tmp_path.glob("*.tmp"))
    assert processes_naming(str(tmp_path)) == []  # torchrun and both ranks are gone


def test_progress_in_a_pipe_beats_while_a_case_runs():
    from rich.console import Console

    from bench.progress import CaseProgress

    buf = io.StringIO()
    beat = "[1/2] b=1 ctx=8: timing one all-reduce ("
    with CaseProgress(Console(file=buf, width=80), total=2, heartbeat_s=0.1) as p:
        p.start("b=1 ctx=8")
        p.phase("timing one all-reduce")
        # one long phase: the log still hears from it. Waited for (up to 30 s), not slept for a fixed time: on
        # a loaded machine the heartbeat thread may run late, and the test is about that it beats at all
        deadline = time.monotonic() + 30
        while buf.getvalue().count(beat) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        p.finish("b=1 ctx=8 tp=2: layer 1.0 us")
    lines = buf.getvalue().splitlines()
    beats = [line for line in lines if line.startswith(beat)]
    assert len(beats) >= 2 and lines[-1] == "[1/2] b=1 ctx=8 tp=2: layer 1.0 us"


def test_progress_on_a_terminal_is_a_bar_naming_the_phase():
    from rich.console import Console

    from bench.progress import CaseProgress

    buf = io.StringIO()
    with CaseProgress(Console(file=buf, width=100, force_terminal=True), total=1, heartbeat_s=0.1) as p:
        p.start("b=1 ctx=8")
        p.phase("timing the layer step")
        deadline = time.monotonic() + 30  # until the live bar has drawn the phase (late on a loaded machine)
        while "b=1 ctx=8: timing the layer step" not in buf.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
        p.finish("b=1 ctx=8 tp=2: layer 1.0 us")
    text = buf.getvalue()
    assert "b=1 ctx=8: timing the layer step" in text and "0/1" in text  # the live bar
    assert "[1/1]" not in text and "(0 s into the case)" not in text  # no piped lines on a terminal

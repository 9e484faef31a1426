"""The GPU check's control flow on a CPU, with stand-in steps: order, deadline, packing after every step,
clean-up of what a step left running, and what OUT holds when the whole check is killed."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start(out: Path, fake: str, deadline: float = 20, limit: float = 3):
    # the check's work folder under the test's own tmp folder (TMPDIR), so its processes can be told apart
    # from those of any other check running on the machine
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_FAKE_LIMIT_S": str(limit), "GPU_CHECK_GRACE_S": "1",
           "TMPDIR": str(out.parent)}
    return subprocess.Popen(["bash", str(ROOT / "bench" / "gpu_check.sh"), str(out), "--fake", fake,
                             "--deadline-s", str(deadline)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def members(out: Path) -> list:
    with tarfile.open(fileobj=io.BytesIO((out / "results.tar.gz").read_bytes())) as tar:
        return sorted(tar.getnames())


def summary_rows(out: Path) -> dict:
    rows = {}
    for line in (out / "summary.txt").read_text().splitlines():
        parts = line.split(None, 3)
        if parts and parts[0][:1].isdigit() and "-" in parts[0]:
            rows[parts[0]] = parts[1:]
    return rows


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_order_limits_and_leftover_workers_killed(tmp_path):
    out = tmp_path / "out"
    proc = start(out, "ok,fail,orphan,hang,ok", deadline=30, limit=2)
    text, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, text
    assert sorted(p.name for p in out.iterdir()) == ["logs.txt", "results.tar.gz", "summary.txt"]
    rows = summary_rows(out)
    assert list(rows) == ["0-ok", "1-fail", "2-orphan", "3-hang", "4-ok"]
    assert rows["0-ok"][0] == "0" and rows["1-fail"][0] == "3" and rows["4-ok"][0] == "0"
    assert "limit" in rows["3-hang"][2]
    assert "leftover" in rows["2-orphan"][2]  # the worker that ignored SIGINT in its own session
    work = Path(text.split("work ", 1)[1].split(",")[0].split()[0])
    assert gone(int((work / "orphan.pid").read_text()))
    assert members(out) == ["results/0-ok.json", "results/4-ok.json", "summary.txt"]
    logs = (out / "logs.txt").read_text()
    assert logs.index("== 0-ok") < logs.index("== 3-hang") < logs.index("== 4-ok")


def test_global_deadline_skips_the_rest_and_still_packs(tmp_path):
    out = tmp_path / "out"
    t0 = time.monotonic()
    proc = start(out, "ok,hang,ok", deadline=9, limit=60)
    proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 15
    rows = summary_rows(out)
    assert rows["0-ok"][0] == "0"
    assert "stopped by its" in rows["1-hang"][2]  # its own 60 s cut to the time left
    assert rows["2-ok"][0] == "-" and "deadline" in " ".join(rows["2-ok"])
    assert members(out) == ["results/0-ok.json", "summary.txt"]


def test_sigterm_of_the_whole_check_keeps_what_it_had(tmp_path):
    out = tmp_path / "out"
    proc = start(out, "ok,orphan,ok", deadline=60, limit=60)
    for _ in range(100):  # until the stuck step is running
        if (out / "summary.txt").exists() and "1-orphan" in (out / "summary.txt").read_text():
            break
        time.sleep(0.1)
    time.sleep(0.5)  # the worker has started
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    text = (out / "summary.txt").read_text()
    assert "stopped by SIGTERM" in text and "check stopped by SIGTERM" in text
    assert summary_rows(out)["2-ok"][0] == "-" and "leftover" in summary_rows(out)["1-orphan"][-1]
    assert members(out) == ["results/0-ok.json", "summary.txt"]


def test_sigkill_leaves_the_last_pack(tmp_path):
    out = tmp_path / "out"
    proc = start(out, "ok,hang", deadline=60, limit=60)
    for _ in range(100):
        if (out / "summary.txt").exists() and "1-hang" in (out / "summary.txt").read_text():
            break
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    assert "running" in summary_rows(out)["1-hang"][-1]
    assert "results/0-ok.json" in members(out)
    # the hung step dies with the check (PR_SET_PDEATHSIG) instead of outliving it
    for _ in range(50):
        if not hanging_fake_steps(tmp_path):
            break
        time.sleep(0.1)
    assert not hanging_fake_steps(tmp_path)


def hanging_fake_steps(under: Path) -> list:
    """This test's hung fake steps still alive (their argv names the check's work folder under `under`)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes() if entry.name.isdigit() else b""
            if b"fake step hanging" in cmdline and str(under).encode() in cmdline:
                found.append(int(entry.name))
        except OSError:
            pass
    return found


def test_bad_arguments_are_one_line_errors(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), str(tmp_path), "--fake", "nope"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "tokenbench: error: unknown fake step 'nope'" in r.stderr
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), str(tmp_path), "--deadline-s", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("tokenbench: error:")


def test_suites_read_the_peak_folder_the_check_names(monkeypatch, tmp_path):
    from benchmarks import conftest
    monkeypatch.setenv("TOKENBENCH_PEAK_DIR", str(tmp_path))
    assert conftest.peak_folder() == tmp_path
    monkeypatch.delenv("TOKENBENCH_PEAK_DIR")
    assert conftest.peak_folder() == ROOT / "results"


def test_steps_share_triton_caches_and_the_peak_folder(tmp_path):
    from bench import gpu_check
    env = gpu_check.step_env(tmp_path)
    assert env["TRITON_CACHE_AUTOTUNING"] == "1" and env["TOKENBENCH_PEAK_DIR"] == str(tmp_path / "results")
    assert env.get("TRITON_CACHE_DIR", "").startswith(str(tmp_path)) or "TRITON_CACHE_DIR" in os.environ
    names = [s.name for s in gpu_check.real_steps(tmp_path)]
    assert names[:5] == ["preflight", "peak", "run", "decode-bench", "triton-tests"]


def test_autotune_options_follow_the_environment(monkeypatch):
    from kernels.triton import _common

    monkeypatch.setenv("TRITON_CACHE_AUTOTUNING", "1")
    monkeypatch.setenv("TOKENBENCH_FAST_AUTOTUNE", "1")
    opts = _common.autotune_options()
    assert opts["cache_results"] is True and opts["do_bench"] is _common._fast_bench
    monkeypatch.setenv("TOKENBENCH_FAST_AUTOTUNE", "0")
    monkeypatch.setenv("TRITON_CACHE_AUTOTUNING", "0")
    assert _common.autotune_options() == {"cache_results": False}


def test_chosen_configs_are_recorded_only_inside_a_recorder():
    import triton

    from kernels.triton import _common

    class Tuner:
        best_config = triton.Config({"BLOCK_M": 16, "BLOCK_N": 64}, num_warps=4, num_stages=3)

    _common.note_config("outside", Tuner())
    with _common.record_configs() as seen:
        _common.note_config("gemm M=1 N=8 K=8", Tuner())
    assert list(seen) == ["gemm M=1 N=8 K=8"]
    assert "BLOCK_M=16" in seen["gemm M=1 N=8 K=8"] and "num_warps=4" in seen["gemm M=1 N=8 K=8"]

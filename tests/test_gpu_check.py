"""The GPU check's control flow on a CPU, with stand-in steps: order, deadline, packing after every step,
clean-up of what a step left running, what OUT holds when the whole check is killed, plans re-made smaller to
fit, packages a step needs, the strict preflight, and the dry-run plan with its estimates."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

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
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), str(tmp_path), "--dry-run", "--device",
                        "a100"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr == "tokenbench: error: --device 'a100': choose h100-sxm or h200\n"


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
    names = [s.name for s in gpu_check.gpu_steps("python", str(tmp_path))]
    assert names == ["preflight", "peak", "run", "prefill", "workload", "moe-layer", "triton-tests", "decode-bench",
                     "gpu-tests", "ops-bench", "peak-full"]


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


# ---- plans, estimates and the dry run -----------------------------------------------------------------

CORE = ["preflight", "peak", "run", "prefill", "workload"]


def dry_run(*extra):
    r = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "unused-out", "--dry-run", *extra],
                       env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines() if line[:2].strip().isdigit()]
    return r.stdout, rows


@pytest.mark.parametrize("device", [None, "h100-sxm", "h200"])
def test_dry_run_lists_the_core_steps_first_within_the_deadline(device):
    text, rows = dry_run(*(["--device", device] if device else []))
    assert [r[1] for r in rows][:5] == CORE and len(rows) == 11
    assert rows[5][1] == "moe-layer" and float(rows[5][4]) < 565  # the served MoE layer fits after the core
    assert "deadline 565 s" in text and "ESTIMATES" in text
    assert f"device {device or 'h100-sxm'};" in text  # no GPU here: the H100's estimates
    cumulative = [float(r[4]) for r in rows]
    assert cumulative[4] < 565 and cumulative == sorted(cumulative)
    for r in rows:  # each with its limit and estimate; its command on the next line
        assert float(r[2]) > 0 and float(r[3]) > 0
    assert "python -m bench workload" in text and "--measure-e2e" in text


def test_the_core_steps_fit_the_deadline_on_both_devices():
    from bench import gpu_check_plan as gp

    steps = gp.gpu_steps("python", "/w")
    for device in ("h100-sxm", "h200"):
        core = sum(s.plans[0].estimate(device) for s in steps if s.core)
        assert [s.name for s in steps if s.core] == CORE and core < gp.DEFAULT_DEADLINE_S
    # memory-bound work is faster on the H200: its end-to-end cohorts are estimated shorter
    assert gp.e2e_seconds("h200", (1, 8, 64), 1024, 1024) < gp.e2e_seconds("h100-sxm", (1, 8, 64), 1024, 1024)


def test_the_estimates_count_the_cases_the_commands_run():
    """The row counts behind the estimates, from the code that makes the cases."""
    import torch

    from bench import gpu_check_plan as gp
    from bench.configs.model_configs import get_model
    from bench.sweeps.prefill_sweep import prefill_points
    from bench.workload import compose as comp
    from bench.workload.measure_steps import tail_rows
    from bench.workload.plan import make_spec
    from kernels.layer import model_op_shapes, op_shapes
    from kernels.prefill_layer import Chunk, prefill_op_shapes

    d = get_model("llama-3.1-8b").layer_dims
    assert gp.DECODE_ROWS_PER_POINT == len(op_shapes(d, 1, 2048)) + len(model_op_shapes(d, 1)) + 1
    assert gp.PREFILL_ROWS_PER_CHUNK == len(prefill_op_shapes(d, Chunk(1, 2048, 0))) + 1
    chunks = sum(len(p.chunks()) for p in prefill_points([1], [1024, 8192], 2048))
    steps = {s.name: s for s in gp.gpu_steps("python", "/w")}
    assert steps["prefill"].plans[0].rows == (chunks * gp.PREFILL_ROWS_PER_CHUNK + 2 * gp.PREFILL_MODEL_ROWS) * 2
    assert steps["run"].plans[0].rows == 4 * gp.DECODE_ROWS_PER_POINT * 2
    for plan in steps["workload"].plans:
        conc = [int(c) for c in plan.args[plan.args.index("--concurrency") + 1].split(",")]
        keys = comp.needed_keys(make_spec(1024, 1024, conc, 2048), conc)
        assert plan.rows == len(keys) + 2 * len({tail_rows(k) for k in keys}) and plan.windows == len(keys)
    from kernels import spec_model

    moe = get_model("qwen3-30b-a3b").spec  # --layer-only: per layer type its layer (and, for MoE, its attention
    types = spec_model.layer_types(moe)     # part and the block at each routing), then final_norm and lm_head
    per_type = [1 + (1 + len(spec_model.routings(moe)) if t.spec.mlp.kind == "moe" else 0) for t in types]
    assert gp.MOE_ROWS_PER_POINT == sum(per_type) + 2
    assert steps["moe-layer"].plans[0].rows == 3 * gp.MOE_ROWS_PER_POINT
    assert torch  # the case lists above are torch-built: the plan module itself imports none of it


def test_the_plan_module_and_the_check_import_nothing_heavy():
    code = ("import sys; import bench.gpu_check_plan, bench.gpu_preflight; "
            "sys.argv = ['x']; import importlib; importlib.import_module('bench.gpu_check'); "
            "heavy = [m for m in ('torch', 'triton', 'pandas', 'rich', 'transformers') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_versions_are_read_without_importing_the_packages():
    code = ("import sys; from bench.records import environment; from bench.gpu_preflight import package_versions; "
            "v, p = environment.versions(), package_versions(); "
            "assert v['pandas'] and p['pytest'] and p['torch'], (v, p); "
            "assert 'tokenbench-no-such-package' not in p; "
            "sys.exit(1 if 'transformers' in sys.modules or 'pandas' in sys.modules else 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_step_that_would_overrun_is_started_with_a_smaller_plan(tmp_path):
    out = tmp_path / "out"
    t0 = time.monotonic()
    proc = start(out, "ok,slow,ok", deadline=20, limit=30)
    text, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, text
    rows = summary_rows(out)
    assert rows["1-slow"][0] == "0" and "re-planned smaller" in rows["1-slow"][2]
    assert "small (1 s)" in rows["1-slow"][2] and "stopped" not in rows["1-slow"][2]  # run whole, not cut
    assert rows["2-ok"][0] == "0" and time.monotonic() - t0 < 20
    assert members(out) == ["results/0-ok.json", "results/1-slow.json", "results/2-ok.json", "summary.txt"]


def test_choose_takes_the_largest_plan_that_leaves_the_later_core_steps_their_smallest():
    from bench.gpu_check_plan import Plan, Step, choose, later_core

    big, mid, small = Plan("big", [], extra_s=100), Plan("mid", [], extra_s=40), Plan("small", [], extra_s=10)
    steps = [Step("a", 200, [big, mid, small], core=True), Step("b", 200, [Plan("b", [], extra_s=30)], core=True)]
    need = later_core(steps, 0, "stand-in")
    assert need == 30.5
    assert choose(steps[0], 200, need, "stand-in")[0] == 0
    index, why = choose(steps[0], 80, need, "stand-in")
    assert index == 1 and "re-planned smaller" in why
    assert choose(steps[0], 20, need, "stand-in")[0] == 2  # its smallest, into the later step's share
    index, why = choose(steps[0], 5, need, "stand-in")
    assert index is None and "not started" in why


def test_a_missing_package_stops_only_the_steps_that_need_it(tmp_path):
    out = tmp_path / "out"
    proc = start(out, "ok,needs-missing,ok", deadline=30, limit=10)
    text, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, text
    rows = summary_rows(out)
    assert rows["0-ok"][0] == "0" and rows["2-ok"][0] == "0"
    assert rows["1-needs-missing"][0] == "-"
    assert "needs tokenbench-no-such-package, not installed" in rows["1-needs-missing"][2]


def test_missing_packages_and_an_unknown_triton_skip_their_steps(tmp_path):
    from bench import gpu_check
    from bench.gpu_check_plan import Plan, Step

    step = Step("bench", 10, [Plan("p", [])], needs=("pandas", "pytest-benchmark"))
    assert gpu_check.missing_packages(step, {"packages": {"pandas": "3.0", "pytest-benchmark": None}}) == [
        "pytest-benchmark"]
    assert gpu_check.missing_packages(step, {}) == []  # a preflight that told nothing stops nothing
    # a preflight that crashed: Triton unknown, its steps skipped, the others still run
    work, out = tmp_path / "work", tmp_path / "out"
    for folder in (work / "logs", work / "results", out):
        folder.mkdir(parents=True)
    runner = gpu_check.Runner(work, out, time.monotonic() + 60, gpu_check.step_env(work), "stand-in")
    steps = [Step("preflight", 10, [Plan("crash", [sys.executable, "-c", "import sys; sys.exit(5)"])]),
             Step("triton-tests", 10, [Plan("t", [sys.executable, "-c", "pass"])], needs_triton=True),
             Step("run", 10, [Plan("r", [sys.executable, "-c", "import sys; print(sys.argv[1])", "{backends}"])])]
    assert gpu_check.run_steps(runner, steps, True, False, "stand-in") is None
    pre, triton_step, run = runner.outcomes
    assert pre.rc == 5 and "Triton unknown" in pre.note
    assert triton_step.rc is None and "Triton unknown" in triton_step.note
    assert run.rc == 0 and run.command.endswith("torch")  # torch alone, never the Triton it could not check


def test_a_step_that_survives_sigkill_is_noted_and_the_check_goes_on(tmp_path, monkeypatch):
    from bench import gpu_check
    from bench.gpu_check_plan import Plan, Step

    class Stuck(subprocess.Popen):
        def wait(self, timeout=None):
            if timeout is not None and self.args[-1] == "stuck":
                super().wait()  # reap it, then say it never went
                raise subprocess.TimeoutExpired(self.args, timeout)
            return super().wait(timeout)

    monkeypatch.setattr(gpu_check.subprocess, "Popen", Stuck)
    monkeypatch.setattr(gpu_check, "GRACE_S", 0.5)
    monkeypatch.setattr(gpu_check, "KILL_WAIT_S", 0.5)
    work, out = tmp_path / "work", tmp_path / "out"
    for folder in (work / "logs", work / "results", out):
        folder.mkdir(parents=True)
    runner = gpu_check.Runner(work, out, time.monotonic() + 60, gpu_check.step_env(work), "stand-in")
    hang = [sys.executable, "-c", "import time; time.sleep(60)"]
    steps = [Step("stuck", 1, [Plan("p", hang + ["stuck"])]), Step("next", 10, [Plan("p", [sys.executable, "-c", ""])])]
    gpu_check.run_steps(runner, steps, False, True, "stand-in")
    stuck, after = runner.outcomes
    assert "unkillable" in stuck.note and "left behind" in stuck.note
    assert after.rc == 0


def test_without_cuda_the_check_stops_after_the_preflight_with_exit_2(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    r = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), str(out)], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("tokenbench: error:")]
    assert len(errors) == 1 and "no CUDA device" in errors[0] and "--cpu-rehearsal" in errors[0]
    text = (out / "summary.txt").read_text()
    assert "stopped the check: no CUDA device" in text
    assert text.count("not run: the preflight found no CUDA device") == 10


def test_the_rehearsal_preflight_records_the_packages_and_goes_on(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    r = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), str(out), "--cpu-rehearsal", "--only",
                        "preflight"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "deadline 180 s" in r.stdout and "CPU rehearsal" in r.stdout
    with tarfile.open(fileobj=io.BytesIO((out / "results.tar.gz").read_bytes())) as tar:
        facts = __import__("json").load(tar.extractfile("preflight.json"))
    assert facts["cuda"] is False and facts["rehearsal"] and facts["packages"]["pytest"]
    assert facts["triton_ok"] is False and "no CUDA device" in facts["triton_reason"]

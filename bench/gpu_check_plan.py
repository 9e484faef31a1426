"""The GPU check's steps, their plans (largest first) and their estimated seconds per device. Standard library
only: the check reads it before anything else is known to work on the machine.

Every estimate is read off the code, not measured (no GPU was available when it was written), and labelled
so wherever it is shown: a step's seconds = process start + timed rows x (per-case budget + the row's
verification and set-up) + NVML windows + Triton compiles + what the step adds (a copy-bandwidth
measurement, the peak sweep's budget, the end-to-end cohorts). The counts of rows come from the commands'
own case lists (tests/test_gpu_check.py checks them against kernels/ and bench/workload/); the per-row and
per-compile seconds are the assumptions in DEVICE_COSTS. `bash bench/gpu_check.sh OUT --dry-run` prints them.

A step whose largest plan does not fit the time left (less what the core steps after it need at their
smallest) is started with the largest smaller plan that does: fewer batches, fewer concurrencies, a
shorter answer for the end-to-end cohort. It is not started large and cut mid-way.
"""
from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_DEADLINE_S = 565.0  # a 600 s command, less the final pack and the grace between SIGINT and SIGKILL
REHEARSAL_DEADLINE_S = 180.0
DEVICES = ("h100-sxm", "h200", "cpu")

# Every distribution any step needs, read by the preflight from installed metadata (never imported).
CHECK_PACKAGES = ("torch", "triton", "numpy", "pandas", "rich", "pytest", "pytest-benchmark", "nvidia-ml-py",
                  "transformers")
MEASURE_NEEDS = ("torch", "numpy", "pandas", "rich")  # `python -m bench <measuring command>` writes tables


@dataclass(frozen=True)
class DeviceCosts:
    """The assumptions the estimates rest on (seconds unless named otherwise); all leads, none measured here."""

    start_s: float  # python + torch import + CUDA context + device detection, per process
    row_overhead_s: float  # per timed row beyond its budget: float64 check, input sets, warm-up, graph capture
    window_s: float  # one NVML window: >= 1 s plus up to two waits for a counter tick
    copy_bw: float  # bytes/s, a measured device-to-device copy (read + written), for the end-to-end decode steps
    matmul_flops: float  # bf16 FLOP/s a prefill sustains (about 60% of the measured 790-800 TFLOP/s)
    step_floor_s: float  # an eager decode step's host-side launch floor (32 layers x ~15 launches)
    compile_scale: float = 1.0  # Triton compile seconds scale (the host CPU compiles)


DEVICE_COSTS = {
    # H100 SXM 80 GB (HBM3, 3.35 TB/s by NVIDIA's datasheet): about 3.0 TB/s copy and 798 TFLOP/s on an 8192^3 bf16
    # matmul were measured on the H100 node this check targets, before any tokenbench code ran there
    "h100-sxm": DeviceCosts(start_s=8.0, row_overhead_s=0.5, window_s=1.25, copy_bw=3.0e12, matmul_flops=4.8e14,
                            step_floor_s=5e-3),
    # H200 141 GB (HBM3e, 4.8 TB/s by NVIDIA's datasheet): the same chip and matmul rate (770-800 TFLOP/s measured),
    # about 4.3 TB/s copy measured on the H200 nodes this check targets
    "h200": DeviceCosts(start_s=8.0, row_overhead_s=0.5, window_s=1.25, copy_bw=4.3e12, matmul_flops=4.8e14,
                        step_floor_s=5e-3),
    # the CPU rehearsal's tiny plans on a shared 2-core machine (a process start took 3 s quiet, 10-20 s loaded)
    "cpu": DeviceCosts(start_s=8.0, row_overhead_s=0.1, window_s=0.0, copy_bw=1e10, matmul_flops=5e10,
                       step_floor_s=5e-4, compile_scale=0.0),
    # the stand-in steps of `--fake` (bench/gpu_check.py): a bare python start each
    "stand-in": DeviceCosts(start_s=0.5, row_overhead_s=0.0, window_s=0.0, copy_bw=1e10, matmul_flops=5e10,
                            step_floor_s=0.0, compile_scale=0.0),
}

# Case counts, mirrored from the code (tests/test_gpu_check.py compares them with kernels/ and bench/workload/)
DECODE_ROWS_PER_POINT = 13  # kernels/layer.py op_shapes (10) + final_norm + lm_head + the layer
PREFILL_ROWS_PER_CHUNK = 11  # kernels/prefill_layer.py prefill_op_shapes (10) + the prefill layer
PREFILL_MODEL_ROWS = 2  # final_norm + lm_head once per prompt
MOE_ROWS_PER_POINT = 6  # kernels/spec_model.py, --layer-only: layer, attention_part, 2 routings, final_norm, lm_head

# The Llama-3.1-8B end-to-end cohort's sizes (bench/configs/model_configs.py): bf16 weights and KV per token
E2E_WEIGHT_BYTES = 16.06e9
E2E_KV_BYTES_PER_TOKEN = 131072  # 32 layers x 2 x 8 KV heads x 128 x 2 bytes
E2E_FLOPS_PER_TOKEN = 16.06e9  # 2 x parameters
E2E_BUILD_S = 6.0  # drawing 16 GB of weights and the float64 check on the short cohorts


@dataclass
class Plan:
    """One way to run a step: its arguments and the parts its estimate is made of."""

    label: str
    args: list
    rows: int = 0  # timed rows (cases x backends)
    budget_s: float = 0.0  # timing budget per row
    windows: int = 0  # NVML windows
    compile_s: float = 0.0  # Triton compiles and autotuning (first use of a kernel in this check)
    extra_s: float = 0.0  # what the step adds on top (peak sweep budget, copy bandwidth, test bodies)
    e2e: tuple = ()  # (concurrencies, isl, osl) of the end-to-end cohorts, or ()
    starts: int = 1  # processes started

    def estimate(self, device: str) -> float:
        c = DEVICE_COSTS[device]
        return (self.starts * c.start_s + self.rows * (self.budget_s + c.row_overhead_s)
                + self.windows * c.window_s + self.compile_s * c.compile_scale + self.extra_s
                + e2e_seconds(device, *self.e2e))

    def basis(self, device: str) -> str:
        c = DEVICE_COSTS[device]
        parts = [f"start {self.starts * c.start_s:g}"]
        if self.rows:
            parts.append(f"{self.rows} rows x {self.budget_s + c.row_overhead_s:g}")
        if self.windows and c.window_s:
            parts.append(f"{self.windows} NVML windows x {c.window_s:g}")
        if self.compile_s and c.compile_scale:
            parts.append(f"Triton compile {self.compile_s * c.compile_scale:g}")
        if self.extra_s:
            parts.append(f"{self.extra_s:g} own")
        if self.e2e:
            parts.append(f"e2e {e2e_seconds(device, *self.e2e):.0f}")
        return " + ".join(parts)


@dataclass
class Step:
    """A step of the check: its plans, largest first (plans[0] is what a check with time to spare runs)."""

    name: str
    limit_s: float
    plans: list
    needs: tuple = ()  # distributions (CHECK_PACKAGES) the step cannot run without
    needs_triton: bool = False
    core: bool = False  # one of the first five: the steps the deadline is planned around
    env: dict = field(default_factory=dict)


def bench_pytest(py: str, work: str) -> list:
    """pytest over the benchmark suites, saving pytest-benchmark's JSON under results/benchmarks/<device>."""
    return [py, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            f"--benchmark-storage=file://{work}/results/benchmarks/{{slug}}", "--benchmark-autosave"]


def e2e_seconds(device: str, concurrencies=(), isl: int = 0, osl: int = 0) -> float:
    """The end-to-end cohorts of `tokenbench workload --measure-e2e`: the model built and checked once, then
    per cohort a warm-up, the prefill (C x ISL tokens at the sustained matmul rate) and OSL - 1 decode steps
    (weights + KV at the mean context read at copy bandwidth, at least the eager launch floor)."""
    if not concurrencies:
        return 0.0
    c = DEVICE_COSTS[device]
    if device == "cpu":
        return 2.0 * len(concurrencies)
    total = E2E_BUILD_S
    for conc in concurrencies:
        prefill = conc * isl * E2E_FLOPS_PER_TOKEN / c.matmul_flops
        mean_ctx = isl + osl / 2
        step = max(c.step_floor_s, (E2E_WEIGHT_BYTES + conc * mean_ctx * E2E_KV_BYTES_PER_TOKEN) / c.copy_bw)
        step += 0.5e-3  # the per-step sync and argmax
        total += prefill * 1.1 + step * (osl - 1) + step + 0.5  # warm-up: a group and a decode step
    return total


def gpu_steps(py: str, work: str) -> list:
    """The check on an H100 or H200, most valuable first (cpu_steps: the same order sized for a CPU)."""
    res = f"{work}/results"
    bench = bench_pytest(py, work)
    gpu_tests = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu"]
    m = [py, "-m", "bench"]
    run_common = ["--budget-s", "0.5", "--energy", "steps", "--out", res]
    # Triton seconds: GEMM autotuning 9 configs x 0.45-1.5 s compile per new specialisation, the 5 other
    # decode kernels ~1 s each; prefill attention 7 configs x 2.3-5.2 s (Triton 3.6 for sm_90, compile-checked)
    run_plans = [
        Plan("batch 1,8,32,128; torch + triton", ["--backend", "{backends}", "--batch", "1,8,32,128"],
             rows=4 * DECODE_ROWS_PER_POINT * 2, budget_s=0.5, compile_s=25, extra_s=1),
        Plan("batch 1,32; torch + triton", ["--backend", "{backends}", "--batch", "1,32"],
             rows=2 * DECODE_ROWS_PER_POINT * 2, budget_s=0.5, compile_s=20, extra_s=1),
        Plan("batch 8; torch", ["--backend", "torch", "--batch", "8"], rows=DECODE_ROWS_PER_POINT, budget_s=0.5,
             extra_s=1),
    ]
    prefill_plans = [
        Plan("prompts 1024,8192 in 2048-token chunks; torch + triton", ["--backend", "{backends}", "--prompt",
             "1024,8192"], rows=((1 + 4) * PREFILL_ROWS_PER_CHUNK + 2 * PREFILL_MODEL_ROWS) * 2, budget_s=0.5,
             compile_s=35, extra_s=1),
        Plan("prompt 8192 in 2048-token chunks; torch + triton", ["--backend", "{backends}", "--prompt", "8192"],
             rows=(4 * PREFILL_ROWS_PER_CHUNK + PREFILL_MODEL_ROWS) * 2, budget_s=0.5, compile_s=35, extra_s=1),
        Plan("prompt 2048; torch", ["--backend", "torch", "--prompt", "2048"],
             rows=PREFILL_ROWS_PER_CHUNK + PREFILL_MODEL_ROWS, budget_s=0.5, extra_s=1),
    ]
    wl = m + ["workload", "--model", "llama-3.1-8b", "--isl", "1024", "--osl", "1024", "--chunk", "2048",
              "--budget-s", "0.5", "--energy", "steps", "--out", res]
    # rows: one layer row per step key + final_norm and lm_head per distinct tail row count
    # (bench/workload/compose.needed_keys); one NVML window per composed step (--energy steps)
    workload_plans = [
        Plan("C 1,8,64; e2e cohorts with OSL 1024", ["--concurrency", "1,8,64", "--measure-e2e"],
             rows=20 + 12, budget_s=0.5, windows=20, extra_s=1, e2e=((1, 8, 64), 1024, 1024)),
        Plan("C 1,8,64; e2e cohorts with OSL 256", ["--concurrency", "1,8,64", "--measure-e2e", "--e2e-osl", "256"],
             rows=20 + 12, budget_s=0.5, windows=20, extra_s=1, e2e=((1, 8, 64), 1024, 256)),
        Plan("C 1,64; e2e cohorts with OSL 128", ["--concurrency", "1,64", "--measure-e2e", "--e2e-osl", "128"],
             rows=14 + 8, budget_s=0.5, windows=14, extra_s=1, e2e=((1, 64), 1024, 128)),
        Plan("C 64; no e2e cohort", ["--concurrency", "64"], rows=8 + 8, budget_s=0.5, windows=8, extra_s=1),
    ]
    # One served mixture of experts, read from its own config (bench/data/models/qwen3-30b-a3b.json): Qwen3-30B-A3B
    # fits one H100 in bf16 (61 GB) and routes 128 experts top-8 by softmax, like most served MoE models; gpt-oss
    # is served with MXFP4 experts and DeepSeek-V3 needs 8 GPUs. Rows per batch with --layer-only: the MoE layer,
    # its attention part, the MoE block at uniform and zipf:1 routing, final_norm and lm_head (kernels/spec_model.py).
    moe = m + ["run", "--model", "qwen3-30b-a3b", "--layer-only", "--backend", "torch", "--context", "2048",
               "--budget-s", "0.3", "--energy", "off", "--out", res]
    moe_plans = [
        Plan("Qwen3-30B-A3B layer, batch 1,8,64", moe + ["--batch", "1,8,64"], rows=3 * MOE_ROWS_PER_POINT,
             budget_s=0.3, extra_s=4),
        Plan("Qwen3-30B-A3B layer, batch 8", moe + ["--batch", "8"], rows=MOE_ROWS_PER_POINT, budget_s=0.3,
             extra_s=4),
    ]
    triton_files = ["tests/test_triton_elementwise.py", "tests/test_triton_gemm.py", "tests/test_triton_layer.py",
                    "tests/test_triton_attention.py", "tests/test_triton_prefill_attention.py"]
    other_gpu = ["tests/test_run_gpu.py", "tests/test_peak_gpu.py", "tests/test_prefill.py",
                 "tests/test_workload_e2e.py", "tests/test_tp_moe_fp8_gpu.py", "tests/test_moe.py", "tests/test_fp8.py"]
    return [
        Step("preflight", 45, [Plan("versions, device, one Triton kernel", [py, "-m", "bench.gpu_preflight",
                                                                             f"{work}/preflight.json"],
                                    compile_s=3, extra_s=2)], needs=("torch",), core=True),
        Step("peak", 75, [
            Plan("bf16 + fp8, 20 s", m + ["peak", "--dtype", "bf16,fp8", "--budget-s", "20", "--out", res],
                 extra_s=22),
            Plan("bf16, 8 s", m + ["peak", "--dtype", "bf16", "--budget-s", "8", "--out", res], extra_s=9),
        ], needs=MEASURE_NEEDS, core=True),
        Step("run", 200, [Plan(p.label, m + ["run"] + p.args + run_common, p.rows, p.budget_s, p.windows,
                               p.compile_s, p.extra_s) for p in run_plans], needs=MEASURE_NEEDS, core=True),
        Step("prefill", 220, [Plan(p.label, m + ["run", "--phase", "prefill", "--chunk", "2048"] + p.args + run_common,
                                   p.rows, p.budget_s, p.windows, p.compile_s, p.extra_s) for p in prefill_plans],
             needs=MEASURE_NEEDS, core=True),
        Step("workload", 240, [Plan(p.label, wl + p.args, p.rows, p.budget_s, p.windows, p.compile_s, p.extra_s,
                                    p.e2e) for p in workload_plans], needs=MEASURE_NEEDS, core=True),
        Step("moe-layer", 60, [Plan(p.label, p.args, p.rows, p.budget_s, p.windows, p.compile_s, p.extra_s)
                               for p in moe_plans], needs=MEASURE_NEEDS),
        Step("triton-tests", 120, [
            Plan("every Triton test file", gpu_tests + triton_files, compile_s=40, extra_s=25),
            Plan("GEMM and layer tests", gpu_tests + ["tests/test_triton_gemm.py", "tests/test_triton_layer.py"],
                 compile_s=20, extra_s=10),
        ], needs=("torch", "triton", "pytest"), needs_triton=True),
        Step("decode-bench", 90, [
            Plan(f"decode step benchmarks, {b} s", bench + ["benchmarks/test_decode.py",
                                                           "--tokenbench-budget-s", str(b)], extra_s=b + 5)
            for b in (45, 20, 8)], needs=MEASURE_NEEDS + ("pytest", "pytest-benchmark")),
        Step("gpu-tests", 150, [Plan("the other GPU tests", gpu_tests + other_gpu, compile_s=20, extra_s=60)],
             needs=("torch", "pytest")),
        Step("ops-bench", 90, [
            Plan(f"op benchmarks, {b} s", bench + ["benchmarks/test_ops.py", "--tokenbench-budget-s", str(b)],
                 extra_s=b + 5) for b in (45, 15)], needs=MEASURE_NEEDS + ("pytest", "pytest-benchmark")),
        Step("peak-full", 100, [
            Plan(f"every dtype, {b} s", m + ["peak", "--budget-s", str(b), "--out", res], extra_s=b + 2)
            for b in (60, 20)], needs=MEASURE_NEEDS),
    ]


def cpu_steps(py: str, work: str) -> list:
    """The same steps in the same order, sized for a CPU rehearsal (--cpu-rehearsal): every step's control
    flow (plan, start, wait, pack) with the tiny model, where a GPU test is collected and skipped."""
    steps = gpu_steps(py, work)
    res = f"{work}/results"
    m = [py, "-m", "bench"]
    quick = ["--device", "cpu", "--model", "tiny", "--budget-s", "0.02", "--energy", "steps", "--out", res]
    tiny_bench = ["--tokenbench-models", "tiny", "--tokenbench-budget-s", "1", "--tokenbench-rounds", "2"]
    peak = m + ["peak", "--device", "cpu", "--dtype", "fp32", "--budget-s", "0.3", "--no-bandwidth", "--out", res]
    workload = m + ["workload", "--isl", "8", "--osl", "2", "--chunk", "8", "--concurrency", "1"] + quick
    cpu = {
        "preflight": [Plan("versions, device (no CUDA: rehearsal)", steps[0].plans[0].args + ["--cpu-rehearsal"],
                           extra_s=2)],
        "peak": [Plan("fp32, 0.3 s", peak, extra_s=1)],
        "run": [Plan("tiny, batch 1, layer and tail", m + ["run", "--batch", "1", "--context", "8", "--layer-only"]
                     + quick, rows=3, budget_s=0.02, extra_s=1)],
        "prefill": [Plan("tiny, prompt 16, layer and tail", m + ["run", "--phase", "prefill", "--prompt", "16",
                                                                "--chunk", "16", "--layer-only"] + quick,
                         rows=3, budget_s=0.02, extra_s=1)],
        # one layer row per step and final_norm + lm_head per tail row count (5 steps, 2 row counts)
        "workload": [Plan("tiny, C 1; e2e cohort", workload + ["--measure-e2e"], rows=5 + 4, budget_s=0.02,
                          extra_s=1, e2e=((1,), 8, 2)),
                     Plan("tiny, C 1; no e2e", workload, rows=5 + 4, budget_s=0.02, extra_s=1)],
        "moe-layer": [Plan("tiny Qwen3-MoE layer, batch 2", m + ["run", "--batch", "2", "--context", "8", "--layer-only"]
                           + [a if a != "tiny" else "tiny-qwen3-moe" for a in quick],
                           rows=MOE_ROWS_PER_POINT, budget_s=0.02, extra_s=2)],
        "decode-bench": [Plan("tiny decode step benchmark", bench_pytest(py, work) + tiny_bench + [
            "benchmarks/test_decode.py"], extra_s=3)],
        "ops-bench": [Plan("tiny op benchmarks", bench_pytest(py, work) + tiny_bench + [
            "benchmarks/test_ops.py", "-k", "torch"], extra_s=8)],
        "peak-full": [Plan("fp32, 0.3 s", peak, extra_s=1)],
    }
    for step in steps:
        if step.name in cpu:
            step.plans = cpu[step.name]
        else:  # the GPU tests: collected and skipped on a CPU (tests/conftest.py), the control flow all the same
            step.plans = [Plan(p.label + " (skipped on a CPU)", p.args, extra_s=8) for p in step.plans[:1]]
    return steps


def device_from_name(name: str | None) -> str | None:
    """The estimates' device for a GPU's name (nvidia-smi's or torch's), None when unknown."""
    n = (name or "").upper()
    if "H200" in n:
        return "h200"
    if "H100" in n:
        return "h100-sxm"
    return None


def choose(step: Step, left_s: float, later_core_s: float, device: str) -> tuple:
    """(plan index, why) of the largest plan whose estimate fits in `left_s` less what the core steps after
    it need at their smallest (`later_core_s`); (None, why) when not even the smallest fits in `left_s`."""
    room = left_s - later_core_s
    for i, plan in enumerate(step.plans):
        if plan.estimate(device) <= room:
            return i, "" if i == 0 else (f"re-planned smaller to fit: {plan.label} (~{plan.estimate(device):.0f} s; "
                                         f"{room:.0f} s left after the core steps' smallest plans)")
    smallest = step.plans[-1]
    if smallest.estimate(device) <= left_s:
        return len(step.plans) - 1, (f"re-planned to its smallest plan: {smallest.label} (~"
                                     f"{smallest.estimate(device):.0f} s, eating into the later core steps' time)")
    return None, f"not started: its smallest plan needs ~{smallest.estimate(device):.0f} s, {left_s:.0f} s left"


def later_core(steps: list, index: int, device: str) -> float:
    """Seconds the core steps after steps[index] need at their smallest plans."""
    return sum(s.plans[-1].estimate(device) for s in steps[index + 1:] if s.core)


def show_argv(argv: list, py: str) -> str:
    import shlex

    return " ".join("python" if a == py else shlex.quote(a) for a in argv)


def simulate(steps: list, device: str, deadline_s: float, reserve_s: float) -> list:
    """[(step, plan index or None, why, start s, end s)] if every step took exactly its estimate: the plans the
    check would choose (reserve_s: the final pack and the SIGINT grace, kept back from every step)."""
    out, clock = [], 0.0
    for i, step in enumerate(steps):
        left = deadline_s - clock - reserve_s
        index, why = choose(step, left, later_core(steps, i, device), device) if left >= 1 else (
            None, "not run: global deadline reached")
        took = 0.0 if index is None else step.plans[index].estimate(device)
        out.append((step, index, why, clock, clock + took))
        clock += took
    return out


def dry_run(steps: list, device: str, deadline_s: float, py: str, source: str, reserve_s: float = 15.0) -> str:
    """The plan as text: each step with its limit, command and estimated seconds, and the cumulative time;
    then the plans the check would choose if every estimate held."""
    lines = [f"tokenbench gpu check plan, {source}: device {device}; deadline {deadline_s:g} s. Seconds are "
             f"ESTIMATES read off the code (bench/gpu_check_plan.py), not measurements.",
             f"{'#':>2}  {'step':<13} {'limit s':>7} {'est s':>6} {'cum s':>6}  plan, basis; command"]
    cum = 0.0
    for i, step in enumerate(steps, 1):
        plan = step.plans[0]
        est = plan.estimate(device)
        cum += est
        mark = "" if cum <= deadline_s else "  (past the deadline: re-planned smaller or not started)"
        lines.append(f"{i:>2}  {step.name:<13} {step.limit_s:>7.0f} {est:>6.0f} {cum:>6.0f}  {plan.label}; "
                     f"{plan.basis(device)}{mark}")
        lines.append(f"{'':<38}{show_argv(plan.args, py)}")
        for smaller in step.plans[1:]:
            lines.append(f"{'':<38}smaller: {smaller.label} (~{smaller.estimate(device):.0f} s)")
    core = sum(s.plans[0].estimate(device) for s in steps if s.core)
    lines.append(f"core steps ({', '.join(s.name for s in steps if s.core)}): ~{core:.0f} s of {deadline_s:g} s; "
                 f"all steps at their largest plans: ~{cum:.0f} s")
    lines.append(f"if every estimate held (keeping {reserve_s:g} s back for the pack and the SIGINT grace):")
    for step, index, why, start, end in simulate(steps, device, deadline_s, reserve_s):
        what = why if index is None else f"{step.plans[index].label}" + (" (smaller)" if index else "")
        lines.append(f"    {step.name:<13} {start:>5.0f}-{end:>4.0f} s  {what}")
    return "\n".join(lines) + "\n"

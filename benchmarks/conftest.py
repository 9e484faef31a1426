"""pytest-benchmark suites (benchmarks/): the ops of a decode step and the whole step, at a curated set of
shapes per model. This conftest sits beside the suites so that `pytest benchmarks --benchmark-...` (or a
file of it) loads it before pytest-benchmark reads its options, as a plain `pytest` (testpaths) does too.

    pytest benchmarks                                      # time, print pytest-benchmark's table
    pytest benchmarks --benchmark-autosave                 # ... and store results/benchmarks/<device>/...
    pytest benchmarks --tokenbench-baseline --benchmark-compare-fail=median:10%
                                                           # fail on a regression against this device's
                                                           # newest stored run

What this conftest adds to pytest-benchmark:
- storage: unless --benchmark-storage is given, runs are stored (and compared) under
  results/benchmarks/<device>/, so a baseline is always one of the same device;
- machine info: device name, SMs, memory, L2, driver, CUDA, torch, triton, clocks, power limit (NVML), so
  files from different hardware generations are told apart (`tokenbench history` reads them);
- the timer: CUDA events on a GPU (harness.cuda_event_clock), the host clock on a CPU;
- shapes: parametrized per device at collection time (no device query on import); the triton backend is
  parametrized everywhere and skipped with the reason where there is no CUDA device;
- the measured ceilings: the newest peak file in $TOKENBENCH_PEAK_DIR (default results/);
- --tokenbench-budget-s: once spent, the remaining benchmarks skip (so a job with a hard timeout still ends
  normally and saves what it measured).
"""
from __future__ import annotations

import os
import sys
import time
from functools import lru_cache
from pathlib import Path

import pytest

from benchmarks import harness

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STORAGE = "file://./.benchmarks"  # pytest-benchmark's own default
SCHEMA = 1  # of the "tokenbench" section this suite adds to pytest-benchmark's JSON
SUITE = Path(__file__).resolve().parent
_STARTED = {}


@lru_cache(maxsize=1)
def local_device():
    from bench.configs.device_catalog import detect

    return detect("auto")


def storage_dir(device) -> Path:
    from bench.records.store import slug

    return ROOT / "results" / "benchmarks" / slug(device.key or device.name)


def pytest_addoption(parser):
    group = parser.getgroup("tokenbench", "tokenbench benchmark suites")
    group.addoption("--tokenbench-models", default=None,
                    help="comma list of models to benchmark (default: the curated set for this device)")
    group.addoption("--tokenbench-rounds", type=int, default=None,
                    help="pedantic rounds per op benchmark (default 50 on a GPU, 10 on a CPU)")
    group.addoption("--tokenbench-budget-s", type=float, default=None,
                    help="after this many seconds, benchmarks not yet started are skipped")
    group.addoption("--tokenbench-baseline", action="store_true", default=False,
                    help="compare against the newest stored run of this device (results/benchmarks/<device>/); "
                         "when there is none, comparing is dropped with a warning and this run can become one")


def newest_baseline(folder: Path) -> Path | None:
    """The newest pytest-benchmark file under `folder` (any machine-id subfolder), by its own datetime."""
    import json

    found = []
    for path in folder.glob("*/[0-9][0-9][0-9][0-9]_*.json"):
        try:
            found.append((json.loads(path.read_text()).get("datetime") or "", path.name, path))
        except (OSError, ValueError):
            continue
    return max(found)[2] if found else None


def pytest_configure(config):
    # Runs before pytest-benchmark's own pytest_configure (which is trylast) reads these options.
    if not hasattr(config.option, "benchmark_storage"):
        return  # pytest-benchmark not installed: the benchmark tests will error with its missing fixture
    wants_storage = (config.option.benchmark_save or config.option.benchmark_autosave
                     or config.option.benchmark_compare or config.getoption("tokenbench_baseline"))
    if not wants_storage:
        return
    if config.option.benchmark_storage == DEFAULT_STORAGE:
        folder = storage_dir(local_device())
        config.option.benchmark_storage = "file://" + os.path.relpath(folder)
    else:
        folder = Path(config.option.benchmark_storage.split("://", 1)[-1])
    if config.getoption("tokenbench_baseline"):
        base = newest_baseline(folder)
        if base is not None:
            config.option.benchmark_compare = str(base)
            print(f"tokenbench: comparing against the stored baseline {os.path.relpath(base)}", file=sys.stderr)
        else:
            config.option.benchmark_compare = []
            config.option.benchmark_compare_fail = None
            print(f"tokenbench: no stored baseline for {local_device().name} under {os.path.relpath(folder)}; "
                  f"not comparing (save this run with --benchmark-autosave to make one)", file=sys.stderr)


def pytest_sessionstart(session):
    _STARTED["t"] = time.perf_counter()


def _in_suite(item) -> bool:
    return SUITE in Path(str(item.path)).resolve().parents


def pytest_collection_modifyitems(config, items):
    suite = [item for item in items if _in_suite(item)]
    if not suite or local_device().kind != "cuda":
        return
    for item in suite:  # time with CUDA events on a GPU, through pytest-benchmark's timer option
        if item.get_closest_marker("benchmark") is None:
            item.add_marker(pytest.mark.benchmark(timer=harness.cuda_event_clock))


def pytest_generate_tests(metafunc):
    device = local_device()
    if "workload" in metafunc.fixturenames:
        shapes = harness.GPU_SHAPES if device.kind == "cuda" else harness.CPU_SHAPES
        chosen = metafunc.config.getoption("tokenbench_models")
        if chosen:
            from bench.configs.model_configs import get_model, refuse_moe
            from bench.errors import UserError

            names = [m.strip() for m in chosen.split(",") if m.strip()]
            for name in names:
                try:  # an unknown name, or layers the dense step does not compute, fail collection in one line
                    refuse_moe(get_model(name), "the benchmark suite")
                except UserError as exc:
                    raise pytest.UsageError(str(exc)) from None
            default = next(iter(shapes.values()))
            shapes = {name: shapes.get(name, default) for name in names}
        cases = [(m, b, c) for m, combos in shapes.items() for b, c in combos]
        metafunc.parametrize("workload", cases, ids=[f"{m}-b{b}-ctx{c}" for m, b, c in cases])
    if "backend" in metafunc.fixturenames:
        params = [pytest.param("torch", id="torch")]
        if device.kind == "cuda":
            params.append(pytest.param("triton", id="triton"))
        else:
            params.append(pytest.param("triton", id="triton", marks=pytest.mark.skip(
                reason="triton is timed only on CUDA (on a CPU it runs under its interpreter, for correctness)")))
        metafunc.parametrize("backend", params)


@pytest.fixture(scope="session")
def device():
    return local_device()


@pytest.fixture(scope="session")
def run_dtype(device):
    return harness.GPU_DTYPE if device.kind == "cuda" else harness.CPU_DTYPE


def peak_folder() -> Path:
    return Path(os.environ.get("TOKENBENCH_PEAK_DIR") or ROOT / "results")


@pytest.fixture(scope="session")
def ceilings(device, run_dtype):
    """(Ceilings, peak file name or None): this device's measured ceilings from the newest `tokenbench peak` file in $TOKENBENCH_PEAK_DIR (the GPU
    check sets it to the folder its own peak step just wrote), else in results/, if any."""
    from bench.records.peak_files import latest_peak
    from bench.configs.device_catalog import PEAK_DTYPE
    from costmodel.ceilings import Ceilings

    found = latest_peak(peak_folder(), device)
    if found is None:
        return Ceilings(), None
    path, record = found
    matmul = record.row("matmul", PEAK_DTYPE.get(run_dtype, run_dtype))
    copy = record.row("copy")
    return Ceilings(measured_tflops=matmul and matmul.measured, measured_gbps=copy and copy.measured), path.name


@pytest.fixture
def rounds(request, device):
    n = request.config.getoption("tokenbench_rounds") or harness.ROUNDS[device.kind]
    return harness.Rounds(n, harness.WARMUP_ROUNDS[device.kind])


@pytest.fixture
def step_rounds(request, device):
    n = request.config.getoption("tokenbench_rounds") or harness.STEP_ROUNDS[device.kind]
    return harness.Rounds(n, harness.WARMUP_ROUNDS[device.kind])


@pytest.fixture(autouse=True)
def _suite_budget(request):
    budget = request.config.getoption("tokenbench_budget_s")
    if budget and time.perf_counter() - _STARTED.get("t", time.perf_counter()) > budget:
        pytest.skip(f"--tokenbench-budget-s {budget:g} spent before this benchmark started")


def pytest_benchmark_update_machine_info(config, machine_info):
    from bench.records import environment
    device = local_device()
    machine_info["tokenbench"] = {
        "schema": SCHEMA,
        "device": device.to_dict(),
        "versions": environment.versions(),
        "git_commit": environment.git_commit(),
    }


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["tokenbench_schema"] = SCHEMA

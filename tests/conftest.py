import os

import pytest
import torch

# Triton kernels run on a CPU only under the interpreter, and the switch is read when a kernel is
# defined, so it must be set before any kernels.triton module is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def small_copy_buffer(request, monkeypatch):
    """The commands' measured copy bandwidth (bench/measure/bandwidth.py) copies 256 MiB on a CPU, at least
    ten times, twice a run: about a second a measurement on a 2-core CPU, some 30 times in the suite, for a
    figure no test asserts more of than that it is there and positive (as --budget-s 0.02 does for the
    cases). In the tests it copies twice the last-level cache instead (still well past the cache: source
    and destination together are four times it). tests/test_bandwidth.py measures at the default size."""
    if request.module.__name__.endswith("test_bandwidth"):
        return
    _small_copy_buffer(monkeypatch)


def _small_copy_buffer(monkeypatch):
    import bench.measure.bandwidth as bandwidth
    from bench.configs.device_catalog import last_level_cache_bytes

    measure = bandwidth.copy_bandwidth

    def copy_bandwidth(device, size_bytes=None, budget_s=2.0):
        if size_bytes is None and device.kind == "cpu":
            size_bytes = 2 * last_level_cache_bytes(device)
        return measure(device, size_bytes, budget_s)

    monkeypatch.setattr(bandwidth, "copy_bandwidth", copy_bandwidth)


def _no_native_bf16(monkeypatch):
    import bench.configs.cpu_dtype

    monkeypatch.setattr(bench.configs.cpu_dtype, "cpu_flags", lambda path="/proc/cpuinfo": set())


@pytest.fixture(autouse=True)
def fp32_cpu_default(request, monkeypatch):
    """The tests' recorded figures and tolerances assume a CPU run without --dtype is fp32; a machine with
    native bf16 (AMX, AVX-512 BF16) would otherwise pick bf16 and the same suite would test other things on
    other CI machines. tests/test_cpu_dtype.py tests the choice itself. (Session and module fixtures that
    run a command are set up before this one: they call _no_native_bf16 themselves.)"""
    if request.module.__name__.endswith("test_cpu_dtype"):
        return
    _no_native_bf16(monkeypatch)


@pytest.fixture(scope="session")
def gloo_pair(tmp_path_factory):
    """Two gloo ranks spawned once for the sharded-vs-one-process comparisons (tests/gloo_pair.py)."""
    import gloo_pair as pair

    return pair.run(tmp_path_factory.mktemp("gloo_pair"))


QUICK_RUN = ["run", "--model", "tiny", "--device", "cpu", "--budget-s", "0.02", "--context", "9", "--batch", "1",
             "--layer-only"]


def run_command(argv, out, with_stdout=False):
    """main(argv + --out out) as a session or module fixture runs a command, the fp32 CPU default pinned:
    (the one results file it added to out, its stderr[, its stdout])."""
    import contextlib
    import io

    from bench.cli import main

    before = set(out.glob("*.json"))
    err, printed = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:  # what the autouse fixtures do for a test
        _no_native_bf16(mp)
        _small_copy_buffer(mp)
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(printed):
            code = main([*argv, "--out", str(out)])
    assert code == 0, err.getvalue()[-2000:]
    (new,) = set(out.glob("*.json")) - before
    return (new, err.getvalue(), printed.getvalue()) if with_stdout else (new, err.getvalue())


@pytest.fixture(scope="session")
def command_runner():
    """run_command, for module fixtures of the test files."""
    return run_command


@pytest.fixture(scope="session")
def quick_runs(tmp_path_factory):
    """`tokenbench run` at its quickest (tiny, batch 1, context 9, layer only, no price, no peak file), twice
    into one folder, for the tests that read such a run's files or its progress lines (test_run, test_peak,
    test_newuser): (folder, [the two results files in run order], the first run's stderr)."""
    out = tmp_path_factory.mktemp("quick_runs")
    (first, err), (second, _) = run_command(QUICK_RUN, out), run_command(QUICK_RUN, out)
    return out, [first, second], err


@pytest.fixture(scope="session")
def fp8_cpu_run(tmp_path_factory):
    """`tokenbench fp8` on the CPU (tiny, batch 1), where every FP8 row is skipped: (record, stderr), for
    test_moe_fp8_cli (the record) and test_newuser (the skip reason said once)."""
    import json

    path, err = run_command(["fp8", "--device", "cpu", "--model", "tiny", "--batch", "1", "--budget-s", "0.01"],
                            tmp_path_factory.mktemp("fp8"))
    return json.loads(path.read_text()), err

"""`tokenbench peak` on the CPU: measured ceilings, skipped dtypes, bad input, and a run reading the result."""
import json

import pytest
import torch

from bench.configs import device_catalog

from bench.sweeps import peak_sweep
from bench.cli import main
from bench.errors import UserError
from bench.records.peak_files import latest_peak, load_peak

RUN_FAST = ["--model", "tiny", "--device", "cpu", "--budget-s", "0.02", "--context", "9", "--batch", "1"]


def only_peak(folder):
    files = [p for p in folder.glob("*.json") if json.loads(p.read_text()).get("kind") == "peak"]
    assert len(files) == 1
    return json.loads(files[0].read_text()), files[0]


@pytest.fixture(scope="module")
def cpu_peak(tmp_path_factory):
    """One real peak sweep on this CPU with a tiny budget, shared by the tests that read it."""
    out = tmp_path_factory.mktemp("peak")
    assert main(["peak", "--device", "cpu", "--budget-s", "2", "--out", str(out)]) == 0
    record, path = only_peak(out)
    return out, record, path


def test_cpu_peak_rows_have_measured_spec_ratio_and_best_shape(cpu_peak):
    _out, record, path = cpu_peak
    assert record["kind"] == "peak" and record["complete"] is True
    assert record["device"]["kind"] == "cpu" and record["device"]["name"] == device_catalog.cpu_model_name()
    assert record["env"]["versions"]["torch"] == torch.__version__
    assert path.with_suffix(".csv").exists()
    rows = {(r["metric"], r["dtype"]): r for r in record["rows"]}
    assert set(rows) == {("copy", "fp32"), ("read", "fp32"), ("matmul", "fp32"), ("matmul", "tf32"),
                         ("matmul", "bf16"), ("matmul", "fp16"), ("matmul", "fp8")}
    for key in (("matmul", "fp32"), ("matmul", "bf16")):
        r = rows[key]
        assert r["measured"] > 0 and r["unit"] == "TFLOP/s"
        assert r["spec"] is None and r["ratio"] is None  # a CPU has no spec-sheet entry
        assert set(r["best_shape"]) == {"m", "n", "k"}
        best = next(s for s in r["shapes"] if s["shape"] == r["best_shape"])
        assert best["valid"] is True and best["rel_error"] <= peak_sweep.TOLERANCE[key[1]]
        assert r["measured"] == pytest.approx(best["flops"] / best["seconds_p50"] / 1e12)
        assert best["seconds_p10"] <= best["seconds_p50"] <= best["seconds_p90"]
    for metric in ("copy", "read"):
        r = rows[(metric, "fp32")]
        assert r["measured"] > 0 and r["unit"] == "GB/s" and r["spec"] is None and r["ratio"] is None
        assert r["best_shape"]["bytes"] >= 4 * device_catalog.last_level_cache_bytes(device_catalog.detect("cpu"))
    copy = rows[("copy", "fp32")]
    best = next(s for s in copy["shapes"] if s["shape"] == copy["best_shape"])
    assert best["bytes_moved"] == 2 * copy["best_shape"]["bytes"]  # read + write, as datasheets count


def test_cpu_skips_tf32_fp16_fp8_with_reasons(cpu_peak):
    _, record, _ = cpu_peak
    rows = {r["dtype"]: r for r in record["rows"] if r["metric"] == "matmul"}
    assert "CUDA tensor-core" in rows["tf32"]["skipped"]
    assert "fp16" in rows["fp16"]["skipped"]
    assert "8.9" in rows["fp8"]["skipped"]
    for dtype in ("tf32", "fp16", "fp8"):
        assert rows[dtype]["measured"] is None and "shapes" not in rows[dtype]


def test_fp8_alone_on_cpu_is_a_skipped_row_not_a_crash(tmp_path):
    assert main(["peak", "--device", "cpu", "--dtype", "fp8", "--no-bandwidth", "--out", str(tmp_path)]) == 0
    record, _ = only_peak(tmp_path)
    assert len(record["rows"]) == 1
    assert record["rows"][0].get("measured") is None and "compute capability" in record["rows"][0]["skipped"]


@pytest.mark.parametrize("argv,expect", [
    (["peak", "--dtype", "int3"], "unknown dtype 'int3' for peak; choose one of: fp32, tf32, bf16, fp16, fp8"),
    (["peak", "--dtype", "bf16,fp4"], "unknown dtype 'fp4' for peak"),
    (["peak", "--dtype", ","], "--dtype is empty"),
    (["peak", "--budget-s", "-3"], "--budget-s must be a positive number"),
    (["peak", "--device", "tpu"], "unknown device 'tpu'"),
])
def test_peak_bad_input_is_one_line_exit_2(argv, expect, tmp_path, capsys):
    """In-process, as tests/test_cli.py runs bad input (its real-process test covers the exit status and the
    missing traceback of the installed script): each mistake is refused before anything is measured."""
    argv = argv if "--device" in argv else [*argv, "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tokenbench: error:") and expect in lines[0], err
    assert list(tmp_path.iterdir()) == []  # refused before a peak file is opened


def test_fp8_needs_compute_capability_8_9():
    spec = device_catalog.lookup("a100-sxm-80gb")
    a100 = device_catalog.LocalDevice("cuda", "NVIDIA A100-SXM4-80GB", "cuda:0", 80 << 30, spec,
                               {"compute_capability": "8.0"})
    assert "8.0" in peak_sweep.unavailable_reason("fp8", a100)
    assert peak_sweep.unavailable_reason("bf16", a100) is None and peak_sweep.unavailable_reason("tf32", a100) is None
    h200 = device_catalog.LocalDevice("cuda", "NVIDIA H200", "cuda:0", 141 << 30, device_catalog.lookup("h200"),
                               {"compute_capability": "9.0"})
    assert peak_sweep.unavailable_reason("fp8", h200) is None


@pytest.mark.parametrize("dtype", ["fp32", "tf32", "bf16", "fp8"])
def test_matmul_check_passes_real_products_and_catches_wrong_ones(dtype, monkeypatch):
    """The gate every shape passes before it is timed (fp8 runs through torch._scaled_mm on the CPU too)."""
    op = peak_sweep.Matmul(dtype, 96, 80, 64, "cpu")
    with peak_sweep.matmul_mode(dtype):
        ok = peak_sweep.check_matmul(op)
    assert ok["valid"] is True, ok
    assert ok["rel_error"] <= peak_sweep.TOLERANCE[dtype]
    monkeypatch.setattr(peak_sweep.Matmul, "run", lambda self, inp: torch.zeros(self.m, self.n))
    bad = peak_sweep.check_matmul(op)
    assert bad["valid"] is False and "above tolerance" in bad["check"]


def test_unwritten_output_fails_the_check(monkeypatch):
    monkeypatch.setattr(peak_sweep.Matmul, "run", lambda self, inp: inp["c"])  # returns the poisoned buffer
    bad = peak_sweep.check_matmul(peak_sweep.Matmul("fp32", 32, 32, 32, "cpu"))
    assert bad["valid"] is False and "NaN" in bad["check"]


def test_tf32_mode_is_restored():
    before = torch.backends.cuda.matmul.allow_tf32
    with peak_sweep.matmul_mode("tf32"):
        assert torch.backends.cuda.matmul.allow_tf32 is True
    with peak_sweep.matmul_mode("fp32"):
        assert torch.backends.cuda.matmul.allow_tf32 is False
    assert torch.backends.cuda.matmul.allow_tf32 == before


def test_sweep_stays_within_a_tiny_budget():
    cpu = device_catalog.detect("cpu")
    row = peak_sweep.sweep_matmul("fp32", cpu, budget_s=0.001)
    assert len(row["shapes"]) == 1 and row["measured"] > 0  # the first (smallest) shape always runs
    assert row["stopped"].startswith("budget:")


@pytest.fixture(scope="module")
def run_beside_peaks(cpu_peak, command_runner, tmp_path_factory):
    """One tiny run into a folder holding the CPU peak file, a newer peak file of another device and a file
    that is not JSON, shared by the tests of what `run`, `compare` and `report` make of the peak file:
    (folder, the run's results file)."""
    _, record, path = cpu_peak
    out = tmp_path_factory.mktemp("run_beside_peaks")
    (out / path.name).write_text(path.read_text())
    other = dict(record, created="2999-01-01T00:00:00+00:00", run_id="other-device")
    other["device"] = dict(record["device"], name="NVIDIA H200")  # newer, but another device: ignored
    other["rows"] = [dict(r, measured=1e6) if r.get("measured") else r for r in record["rows"]]
    (out / "29990101-000000-h200-peak_sweep.json").write_text(json.dumps(other))
    (out / "not-json.json").write_text("{")  # unreadable files in the folder are passed over
    run_path, _ = command_runner(["run", *RUN_FAST], out)
    assert [p for p in out.glob("*tiny*.json")] == [run_path]
    return out, run_path


def test_run_reads_the_newest_peak_of_the_same_device(cpu_peak, run_beside_peaks):
    _, record, path = cpu_peak
    out, run_path = run_beside_peaks
    run = json.loads(run_path.read_text())
    fp32 = next(r for r in record["rows"] if r["metric"] == "matmul" and r["dtype"] == "fp32")
    used = run["peak_file"]
    assert used["file"] == str(out / path.name) and used["dtype"] == "fp32"
    assert run["ceilings"]["measured_tflops"] == pytest.approx(fp32["measured"])  # its one name
    assert used["tflops"] == pytest.approx(fp32["measured"]) and used["best_shape"] == fp32["best_shape"]
    for row in run["rows"]:
        assert row["efficiency_measured"] is not None
        assert row["roofline_seconds_measured"] >= row["bytes"] / (run["ceilings"]["measured_gbps"] * 1e9) * (1 - 1e-9)
    gemm = next(r for r in run["rows"] if r["op"] == "lm_head")
    expect = max(gemm["flops"] / (fp32["measured"] * 1e12), gemm["bytes"] / (run["ceilings"]["measured_gbps"] * 1e9))
    assert gemm["roofline_seconds_measured"] == pytest.approx(expect)


def test_compare_and_report_read_the_measured_ceiling(cpu_peak, run_beside_peaks, tmp_path, capsys):
    _out, record, path = cpu_peak
    assert record["measured_tflops"].keys() == {"fp32", "bf16"}
    assert record["measured_gbps"] > 0 and record["measured_read_gbps"] > 0
    (tmp_path / path.name).write_text(path.read_text())
    run_path = tmp_path / run_beside_peaks[1].name  # a run that read the peak file, beside that file alone
    run_path.write_text(run_beside_peaks[1].read_text())
    capsys.readouterr()
    assert main(["compare", str(run_path), str(run_path), "--json"]) == 0
    compared = json.loads(capsys.readouterr().out)
    assert f'"measured_tflops": {record["measured_tflops"]["fp32"]}' in json.dumps(compared)

    from bench.report.load import read_runs

    runs, peaks = read_runs([str(tmp_path)])  # a folder holding the run and the peak file
    assert [p.name for p, _ in peaks] == [path.name]
    assert runs[0].measured_peak[0] == pytest.approx(record["measured_tflops"]["fp32"])


def test_run_without_a_peak_file_leaves_measured_efficiency_empty_for_compute(quick_runs):
    out, (path, _), _ = quick_runs  # RUN_FAST --layer-only into a folder with no peak file (tests/conftest.py)
    assert not [p for p in out.glob("*.json") if json.loads(p.read_text()).get("kind") == "peak"]
    run = json.loads(path.read_text())
    assert run.get("peak_file") is None  # None fields are left out of the file
    assert all(r.get("efficiency_measured") is None for r in run["rows"] if r["flops"] > 0)


def test_latest_peak_prefers_newest_and_load_peak_rejects_other_files(cpu_peak, tmp_path):
    _, record, _path = cpu_peak
    older = dict(record, created="2000-01-01T00:00:00+00:00")
    newer = dict(record, created="2100-01-01T00:00:00+00:00")
    (tmp_path / "a.json").write_text(json.dumps(newer))
    (tmp_path / "b.json").write_text(json.dumps(older))
    found_path, found = latest_peak(tmp_path, record["device"])
    assert found_path.name == "a.json" and found.created.startswith("2100")
    assert latest_peak(tmp_path, dict(record["device"], name="some other device")) is None
    (tmp_path / "run.json").write_text(json.dumps({"schema_version": 1, "rows": []}))
    with pytest.raises(UserError, match="not a tokenbench peak file"):
        load_peak(tmp_path / "run.json")

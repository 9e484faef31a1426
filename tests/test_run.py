"""`tokenbench run` end to end on the tiny model, on the CPU."""
import json

import pytest
import torch

import bench.commands.run as run_cmd
from bench.sweeps import decode_sweep  # the decode sweep, below the command, calls its measure step
from bench.cli import main

FAST = ["--model", "tiny", "--device", "cpu", "--budget-s", "0.02", "--context", "9"]


def load_only(out_dir):
    files = sorted(out_dir.glob("*.json"))
    assert len(files) == 1
    return json.loads(files[0].read_text()), files[0]


def test_short_run_writes_a_complete_record(tmp_path, capsys):
    assert main(["run", *FAST, "--batch", "1,2", "--out", str(tmp_path), "--json",
                 "--price-per-hour", "2.0", "--power-kw", "1.5"]) == 0
    printed = json.loads(capsys.readouterr().out)
    record, path = load_only(tmp_path)
    assert printed["run_id"] == record["run_id"] == path.stem
    assert path.with_suffix(".csv").exists()
    assert record["complete"] is True and record["device"]["kind"] == "cpu"
    assert record["ceilings"]["measured_gbps"] > 0 and record["schema_version"] == 2 and record["kind"] == "run"
    assert record["env"]["versions"]["torch"] == torch.__version__
    ops = {r["op"] for r in record["rows"]}
    assert ops == {"attn_norm", "qkv_proj", "rope", "kv_append", "attention", "o_proj", "ffn_norm",
                   "gate_up_proj", "swiglu", "down_proj", "final_norm", "lm_head", "layer"}
    for r in record["rows"]:
        for key in ("op", "batch", "context", "backend", "seconds_p50", "seconds_p10", "seconds_p90", "samples",
                    "noise", "flops", "bytes", "tflops", "gbps", "valid"):
            assert key in r, key
        assert r["valid"] is True
        assert r["seconds_p10"] <= r["seconds_p50"] <= r["seconds_p90"]
        assert r["gbps"] == pytest.approx(r["bytes"] / r["seconds_p50"] / 1e9)
    assert len(record["steps"]) == 2
    for s in record["steps"]:
        layer = next(r for r in record["rows"] if r["op"] == "layer" and r["batch"] == s["batch"])
        head = next(r for r in record["rows"] if r["op"] == "lm_head" and r["batch"] == s["batch"])
        norm = next(r for r in record["rows"] if r["op"] == "final_norm" and r["batch"] == s["batch"])
        assert s["step_seconds"] == pytest.approx(2 * layer["seconds_p50"] + head["seconds_p50"]
                                                  + norm["seconds_p50"])
        assert s["tokens_per_s"] == pytest.approx(s["batch"] / s["step_seconds"])
        assert s["tokens_per_s_per_user"] == pytest.approx(1 / s["step_seconds"])
        assert s["fits"] is True
        # $2/h at T tokens/s: 2 / (T * 3600 / 1e6); 1.5 kW: T * 1000 / 1.5
        assert s["cost_per_mtok"] == pytest.approx(2.0 / (s["tokens_per_s"] * 3600 / 1e6))
        assert s["tokens_per_s_per_mw"] == pytest.approx(s["tokens_per_s"] * 1000 / 1.5)


def test_runs_never_overwrite_each_other(quick_runs):
    out, paths, _ = quick_runs  # two runs of the same settings into one folder (tests/conftest.py)
    assert len(set(paths)) == 2 and sorted(out.glob("*.json")) == sorted(paths)
    assert len(list(out.glob("*.csv"))) == 2
    first, second = (json.loads(p.read_text()) for p in paths)
    assert first["run_id"] != second["run_id"] and first["complete"] and second["complete"]


def test_cpu_run_without_price_is_costed_at_the_labelled_cpu_estimate_or_left_empty(quick_runs):
    from costmodel.cpu_prices import cpu_price

    _, (path, _), _ = quick_runs  # `run` on a CPU without --price-per-hour
    record = json.loads(path.read_text())
    step = record["steps"][0]
    estimate = cpu_price(record["device"]["name"], record["device"]["cores"])
    assert "--price-per-hour" in record["price"]["hint"]  # how to give this machine's own price
    if estimate is None:  # a CPU of a vendor the catalog does not list: no cost, said
        assert step["cost_per_mtok"] is None
        return
    assert record["price"]["source"].startswith("CPU catalog estimate, not this machine's price")
    assert step["cost_per_mtok"] == pytest.approx(estimate.price_per_hour / (step["tokens_per_s"] * 3600 / 1e6))


def test_capacity_flags_a_combination_that_does_not_fit(tmp_path, monkeypatch):
    from bench.configs import device_catalog
    real = device_catalog.detect

    def small_memory(requested="auto"):
        d = real(requested)
        d.memory_bytes = 600_000  # the tiny model's fp32 weights alone are 632 kB
        return d

    monkeypatch.setattr(device_catalog, "detect", small_memory)
    assert main(["run", *FAST, "--batch", "1", "--dtype", "fp32", "--layer-only", "--out", str(tmp_path),
                 "--price-per-hour", "1"]) == 0
    record, _ = load_only(tmp_path)
    step = record["steps"][0]
    model = record["model"]
    assert step["fits"] is False
    assert step["bytes_needed"] == model["params"] * 4 + 9 * model["kv_bytes_per_token"] * 2
    assert step["cost_per_mtok"] is None


def test_interrupted_run_keeps_measured_rows(tmp_path, monkeypatch):
    real = decode_sweep.measure
    calls = {"n": 0}

    def measure_then_interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(decode_sweep, "measure", measure_then_interrupt)
    assert main(["run", *FAST, "--batch", "1", "--out", str(tmp_path)]) == 130
    record, _ = load_only(tmp_path)
    assert len(record["rows"]) == 3 and record["complete"] is False
    assert "Ctrl-C" in record["interrupted"]


def test_sigterm_stops_a_run_like_ctrl_c(tmp_path, monkeypatch, capsys):
    import os
    import signal

    real = decode_sweep.measure
    calls = {"n": 0}

    def measure_then_sigterm(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # as `kill` or a CI job's timeout sends it
        return real(*args, **kwargs)

    monkeypatch.setattr(decode_sweep, "measure", measure_then_sigterm)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["run", *FAST, "--batch", "1", "--out", str(tmp_path)]) == 143
    record, _ = load_only(tmp_path)
    assert len(record["rows"]) == 2 and record["complete"] is False and record["wall_s"] > 0
    assert record["interrupted"].startswith("stopped by SIGTERM;")
    err = capsys.readouterr().err
    assert err.count("interrupted: keeping the rows measured so far") == 1 and "Traceback" not in err
    assert signal.getsignal(signal.SIGTERM) == before  # the command put the handler back


def test_failure_midway_keeps_rows_and_out_of_memory_skips(tmp_path, monkeypatch):
    real = decode_sweep.measure
    calls = {"n": 0}

    def flaky(case, backend, device, plan, batch, context):
        calls["n"] += 1
        if calls["n"] == 2:  # one shape runs out of memory: recorded as skipped, the sweep goes on
            monkeypatch.setattr(decode_sweep, "check_case", _raise_oom)
            row = real(case, backend, device, plan, batch, context)
            monkeypatch.undo()
            monkeypatch.setattr(decode_sweep, "measure", flaky)
            return row
        if calls["n"] == 5:
            raise RuntimeError("a kernel crashed")
        return real(case, backend, device, plan, batch, context)

    monkeypatch.setattr(decode_sweep, "measure", flaky)
    with pytest.raises(RuntimeError):
        main(["run", *FAST, "--batch", "1", "--out", str(tmp_path)])
    record, _ = load_only(tmp_path)
    assert len(record["rows"]) == 4
    assert record["rows"][1]["valid"] is False and "out of memory" in record["rows"][1]["skipped"]
    assert "a kernel crashed" in record["failed"]


def _raise_oom(*_args, **_kwargs):
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_full_model_step_is_measured_beside_the_derived_one(tmp_path):
    assert main(["run", *FAST, "--batch", "2", "--layer-only", "--full-model", "--out", str(tmp_path)]) == 0
    record, _ = load_only(tmp_path)
    model_row = next(r for r in record["rows"] if r["op"] == "model")
    assert model_row["valid"] is True and model_row["rel_error"] < 1e-4
    step = record["steps"][0]
    assert step["measured_step_seconds"] == model_row["seconds_p50"]
    assert step["derived_over_measured"] == pytest.approx(step["step_seconds"] / model_row["seconds_p50"])


def test_impossible_size_is_skipped_before_allocating(tmp_path):
    # 10^8 tokens of context for one layer of an 8B model: terabytes, skipped from the shapes alone, while the
    # batch that fits beside it is measured
    assert main(["run", "--model", "tiny", "--device", "cpu", "--batch", "1", "--context", "8,1000000000000",
                 "--layer-only", "--budget-s", "0.05", "--out", str(tmp_path)]) == 0
    record, _ = load_only(tmp_path)
    big = [r for r in record["rows"] if r["context"] == 1000000000000]
    assert {r["op"] for r in big} == {"final_norm", "lm_head", "layer"}
    for row in big:
        assert row["valid"] is False and "GiB for one input set" in row["skipped"]
    step = [s for s in record["steps"] if s["context"] == 1000000000000][0]
    assert step["valid"] is False and step["fits"] is False


def test_nothing_fits_is_refused_before_anything_is_written(tmp_path, capsys):
    assert main(["run", "--model", "llama-3.1-8b", "--device", "cpu", "--batch", "1", "--context", "100000000",
                 "--layer-only", "--out", str(tmp_path)]) == 2
    assert "nothing to measure" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []

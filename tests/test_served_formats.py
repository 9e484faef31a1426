"""`tokenbench served` and the engine result formats (costmodel/served_engines.py): each parser's figures against
an independent computation from the file's own totals, on real files where one was found (tests/data/served/
README.md says which are real and which constructed), and every missing field asked for by name."""
import json
from pathlib import Path

import pytest

from bench.cli import main
from costmodel.input_errors import CostInputError
from costmodel.served_results import ServedGiven, read_served, read_served_file

DATA = Path(__file__).parent / "data" / "served"
VLLM = DATA / "vllm-gpt-oss-120b-conc4-inferencex.json"  # real
AIPERF = DATA / "aiperf-qwen3.6-nvfp4-rtx5090-c4.json"  # real
IX = DATA / "inferencex-kimik2.5-mi355x-conc4.json"  # real
SGLANG = DATA / "sglang-constructed.jsonl"  # constructed
BATCHED = DATA / "llama-batched-bench-constructed.jsonl"  # constructed
LLAMA_BENCH = DATA / "llama-bench-constructed.json"  # constructed


def test_vllm_result_per_gpu_from_its_totals():
    raw = json.loads(VLLM.read_text())
    g = ServedGiven(hardware="b200", gpus=16, precision="fp4")
    f = read_served_file(VLLM, g)
    assert f.format == "vllm"
    [p] = f.points
    total = (raw["total_input_tokens"] + raw["total_output_tokens"]) / raw["duration"]
    assert p.total_tokens_per_s == pytest.approx(total / 16, rel=1e-9)
    assert p.output_tokens_per_s == pytest.approx(raw["total_output_tokens"] / raw["duration"] / 16, rel=1e-9)
    assert p.input_tokens_per_s == pytest.approx(raw["total_input_tokens"] / raw["duration"] / 16, rel=1e-9)
    assert p.interactivity == pytest.approx(1000 / raw["median_tpot_ms"])
    assert p.ttft_s == pytest.approx(raw["median_ttft_ms"] / 1000)
    assert (p.isl, p.osl, p.concurrency) == (40960 // 40, 40960 // 40, raw["max_concurrency"])
    assert p.model == "gpt-oss-120b"  # from the Hugging Face cache path in model_id
    assert (p.device, p.tp, p.precision) == ("b200", 16, "fp4")


def test_aiperf_export_from_its_totals():
    raw = json.loads(AIPERF.read_text())
    f = read_served_file(AIPERF, ServedGiven(hardware="h100", gpus=1, model="qwen3-30b-a3b", precision="fp4"))
    assert f.format == "aiperf"
    [run] = f.runs
    dur = raw["benchmark_duration"]["avg"]
    tin, tout, n = raw["total_isl"]["avg"], raw["total_osl"]["avg"], raw["request_count"]["avg"]
    assert run.total_tokens_per_s == pytest.approx((tin + tout) / dur, rel=1e-6)
    assert run.output_tokens_per_s == pytest.approx(tout / dur, rel=1e-6)
    assert run.concurrency == 4  # the profiling phase of input_config (the warm-up phase is excluded)
    assert (run.isl, run.osl) == (round(tin / n), round(tout / n))
    assert run.interactivity == pytest.approx(1000 / raw["inter_token_latency"]["p50"])
    assert run.median_ttft_ms == raw["time_to_first_token"]["p50"]
    [p] = f.points
    assert p.model == "qwen3-30b-a3b" and "the file names qwen3.6-nvfp4" in p.note


def test_inferencex_result_is_read_as_published_per_gpu():
    raw = json.loads(IX.read_text())
    [p] = read_served(IX)
    assert (p.device, p.model, p.precision, p.tp, p.concurrency) == ("mi355x", "kimi-k2.5", "int4", 8, 4)
    assert p.total_tokens_per_s == raw["tput_per_gpu"]
    # the file's own per-GPU figures add up, and its interactivity is 1 / its median TPOT (seconds)
    assert raw["output_tput_per_gpu"] + raw["input_tput_per_gpu"] == pytest.approx(raw["tput_per_gpu"], rel=1e-9)
    assert p.interactivity == pytest.approx(1 / raw["median_tpot"], rel=1e-9)


def test_sglang_jsonl_one_point_per_line_total_from_input_plus_output_where_missing():
    lines = [json.loads(x) for x in SGLANG.read_text().splitlines()]
    f = read_served_file(SGLANG, ServedGiven(hardware="h200", gpus=8, model="deepseek-r1", precision="fp8"))
    assert f.format == "sglang" and len(f.points) == 2
    assert "total_throughput" not in lines[0] and "total_throughput" in lines[1]
    for p, raw in zip(f.points, lines):
        assert p.total_tokens_per_s == pytest.approx(
            (raw["total_input_tokens"] + raw["total_output_tokens"]) / raw["duration"] / 8, rel=1e-9)
        assert p.concurrency == raw["max_concurrency"] and p.interactivity == pytest.approx(1000 / raw["median_tpot_ms"])
    assert "input + output" in f.points[0].note


def test_llama_batched_bench_rows_as_cohorts():
    rows = [json.loads(x) for x in BATCHED.read_text().splitlines()]
    f = read_served_file(BATCHED, ServedGiven(hardware="h100", gpus=1, model="llama-3.2-1b", precision="fp32"))
    for p, r in zip(f.points, rows):
        assert p.concurrency == r["pl"] and (p.isl, p.osl) == (r["pp"], r["tg"])
        assert p.total_tokens_per_s == pytest.approx(r["speed"], rel=1e-9)  # the tool's own S = all tokens / T
        assert p.output_tokens_per_s == pytest.approx(r["pl"] * r["tg"] / r["t"], rel=1e-9)
        assert p.interactivity == pytest.approx(r["speed_tg"] / r["pl"], rel=1e-9)  # each sequence's share
        assert p.ttft_s == pytest.approx(r["t_pp"])


def test_llama_bench_tests_step_rates_apart_from_workloads():
    tests = json.loads(LLAMA_BENCH.read_text())
    f = read_served_file(LLAMA_BENCH, ServedGiven(hardware="h100", gpus=1, model="llama-3.2-1b", precision="fp32"))
    assert [r.total_tokens_per_s for r in f.step_rates] == [tests[0]["avg_ts"], tests[1]["avg_ts"]]
    [p] = f.points  # the prompt-then-generation test
    assert p.total_tokens_per_s == tests[2]["avg_ts"] and (p.isl, p.osl, p.concurrency) == (256, 64, 1)
    assert p.output_tokens_per_s == pytest.approx(64 / ((256 + 64) / tests[2]["avg_ts"]))
    assert f.step_rates[1].interactivity == pytest.approx(tests[1]["avg_ts"])  # generation alone: 1 / avg time
    with pytest.raises(CostInputError, match="step rates, not served workloads"):
        read_served(LLAMA_BENCH, ServedGiven(hardware="h100", gpus=1, model="llama-3.2-1b", precision="fp32"))


@pytest.mark.parametrize("path,flags,missing", [
    (VLLM, [], "does not say its hardware, gpus, precision: give --hardware H --gpus N --precision P"),
    (VLLM, ["--hardware", "b200", "--precision", "fp4"], "does not say its gpus: give --gpus N"),
    (SGLANG, ["--hardware", "h200", "--gpus", "8", "--precision", "fp8"], "does not say its model: give --model M"),
    (VLLM, ["--hardware", "rtx-5090", "--gpus", "1", "--precision", "fp4"], "unknown hardware 'rtx-5090'"),
    (VLLM, ["--hardware", "b200", "--gpus", "0", "--precision", "fp4"], "--gpus must be a positive whole number"),
    (IX, ["--hardware", "h200"], "names its hardware, GPUs, model and precision in every row: --hardware"),
])
def test_what_the_file_lacks_is_asked_for_by_name(capsys, path, flags, missing):
    assert main(["served", str(path), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tokenbench: error: ") and missing in err and err.count("\n") == 1


def test_served_command_table_fits_80_columns_and_json(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["served", str(VLLM), "--hardware", "b200", "--gpus", "16", "--precision", "fp4"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "57.40" in out and "119.2" in out  # 918.43 / 16 total; 1000 / 8.390 ms
    assert main(["served", str(IX), "--json"]) == 0
    [entry] = json.loads(capsys.readouterr().out)
    assert entry["format"] == "inferencex" and entry["points"][0]["device"] == "mi355x"


def test_unknown_json_and_bad_jsonl_are_one_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"pp": 1}\nnot json\n')
    with pytest.raises(CostInputError, match="line 2 is not valid JSON"):
        read_served(bad)
    units = tmp_path / "aiperf.json"
    raw = json.loads(AIPERF.read_text())
    raw["inter_token_latency"]["unit"] = "ns"
    units.write_text(json.dumps(raw))
    with pytest.raises(CostInputError, match="inter_token_latency is in 'ns'"):
        read_served(units, ServedGiven(hardware="h100", gpus=1, precision="fp4"))


def test_compare_takes_an_engine_file(tmp_path, capsys):
    """compare WORKLOAD --served with a vLLM file: the run's model, precision and lengths must match; here
    they do not (a CPU llama fixture against a gpt-oss run), and the refusal names what the file has."""
    run = Path(__file__).parent / "data" / "workload-cpu-llama-3.2-1b-bf16.json"
    assert main(["compare", str(run), "--served", str(VLLM), "--served-hardware", "b200", "--served-gpus", "16",
                 "--served-precision", "fp4"]) == 2
    err = capsys.readouterr().err
    assert "no row matches the run's model llama-3.2-1b" in err and "gpt-oss-120b fp4 1k/1k" in err
    assert main(["compare", str(run), "b200", "--served-gpus", "2"]) == 2
    assert "--served-gpus describe(s) a --served FILE" in capsys.readouterr().err


def test_compare_matches_an_engine_file_of_the_same_model_precision_and_lengths():
    """A llama-batched-bench file (constructed) described as llama-3.2-1b bf16 on an H100 matches the bf16
    256/64 workload fixture: one curve on h100-sxm, labelled as different hardware (the fixture records no
    bandwidth, so it is not projected), its points outside the CPU frontier listed, not extrapolated."""
    from bench.derive.served_comparison import DIFFERENT_HARDWARE, compare_served
    from bench.records.store import load_workload

    run = load_workload(Path(__file__).parent / "data" / "workload-cpu-llama-3.2-1b-bf16.json")
    served = read_served(BATCHED, ServedGiven(hardware="h100", gpus=1, model="llama-3.2-1b", precision="bf16"))
    c = compare_served(run, served, str(BATCHED))
    [curve] = c.curves
    assert curve.hardware == "h100-sxm" and not curve.same_hardware and DIFFERENT_HARDWARE in curve.header
    assert c.unmatched == [] and len(curve.skipped) == 2 and all("not extrapolated" in s for s in curve.skipped)

"""Served results (costmodel/served_results.py, costmodel/served_engines.py) and `tokenbench compare RUN --served FILE` (bench/derive/served_comparison.py):
the shipped published points, InferenceX's result JSON, every bad input as one line and exit 2, and the
comparison's figures against values worked out from the fixtures by hand."""
import json
import math
from pathlib import Path

import pytest

from bench.cli import main
from bench.derive.served_comparison import DIFFERENT_HARDWARE, compare_served
from costmodel.input_errors import CostInputError
from costmodel.served_results import hardware_key, model_key, read_served
from costmodel.workload_economics import WorkloadPoint
from bench.records.store import load_workload

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
SHIPPED = ROOT / "costmodel" / "data" / "served.csv"
SYNTH = DATA / "served-llama-3.2-1b-synthetic.csv"
RUN = DATA / "workload-cpu-llama-3.2-1b-bf16.json"
HEADER = ("hardware,model,precision,tp,isl,osl,concurrency,tokens_per_s_per_gpu_total,tokens_per_s_per_gpu_output,"
          "median_interactivity,source")
GOOD = "h200,llama-3.2-1b,bf16,1,256,64,4,9,1.8,0.5,test row"


# --- reading --------------------------------------------------------------------------------------------

def test_shipped_points_are_the_published_figures_with_sources():
    """Every row of costmodel/data/served.csv, against the figures its source (a URL, with a date) prints."""
    pts = read_served(SHIPPED)
    assert len(pts) == 8
    assert all(p.source == "served" and p.engine_model == "served" for p in pts)
    assert all(p.reference.startswith("https://github.com/SemiAnalysisAI/InferenceX/") and "(2026-" in p.reference
               for p in pts)
    h200 = [p for p in pts if p.device == "h200"]  # issue 870: DeepSeek-R1-0528 FP8 SGLang v0.5.7 TP8, 1k/1k
    assert [(p.concurrency, p.total_tokens_per_s, p.output_tokens_per_s, p.input_tokens_per_s) for p in h200] == [
        (8, 148.6, 74.6, 74.0), (16, 225.1, 111.9, 113.1), (32, 301.7, 151.1, 150.6), (64, 447.2, 223.6, 223.7)]
    assert all((p.model, p.precision, p.tp, p.isl, p.osl) == ("deepseek-r1", "fp8", 8, 1024, 1024) for p in h200)
    assert all(p.interactivity is None for p in h200)  # only mean TPOT published: left empty, never invented
    mi = [p for p in pts if p.device == "mi300x"]  # PR 1053: gpt-oss-120b TP1 vLLM 0.17.0, 1k/1k
    tpot_ms = (31.4, 36.6, 41.3, 58.3)
    assert [(p.concurrency, p.total_tokens_per_s, p.output_tokens_per_s) for p in mi] == [
        (64, 4016, 2008), (96, 5105, 2561), (128, 5981, 2990), (256, 8552, 4271)]
    for p, t in zip(mi, tpot_ms):
        assert p.interactivity == pytest.approx(1000 / t, abs=0.005)  # the derived column, checked
        assert (p.model, p.precision, p.tp) == ("gpt-oss-120b", "fp4", 1)
    assert all("derived here" in p.note or "not" in p.note for p in pts)


# the catalog names served rows must use (the model configs' names)
CATALOG_MODELS = {"deepseek-r1", "deepseek-v3", "gpt-oss-120b", "gpt-oss-20b", "qwen3-30b-a3b"}


def test_shipped_rows_name_catalog_models_and_catalog_hardware():
    from costmodel.catalog import devices

    pts = read_served(SHIPPED)
    assert {p.model for p in pts} <= CATALOG_MODELS
    assert {p.device for p in pts} <= set(devices())


def test_every_device_served_results_name_is_in_both_catalogs_with_a_source():
    import json as _json

    specs = {d["key"]: d for d in _json.loads((ROOT / "bench" / "data" / "devices.json").read_text())["devices"]}
    from costmodel.catalog import devices

    for key in ("h100-sxm", "h200", "b200", "gb200", "gb300", "mi300x", "mi325x", "mi355x"):
        assert key in specs and specs[key]["source"] and "GUIDE" not in specs[key]["source"]
        assert key in devices()
    assert "GUIDE" not in (ROOT / "costmodel" / "data" / "prices.json").read_text()
    assert "GUIDE" not in SHIPPED.read_text()


def test_a_row_without_a_source_is_refused(tmp_path):
    f = tmp_path / "nosource.csv"
    f.write_text(HEADER + "\n" + GOOD.replace(",test row", ",") + "\n")
    with pytest.raises(CostInputError, match=r"row 1 \(line 2\): no source"):
        read_served(f)
    g = tmp_path / "nocolumn.csv"
    g.write_text(HEADER.replace(",source", "") + "\n" + GOOD.replace(",test row", "") + "\n")
    with pytest.raises(CostInputError, match="no source"):
        read_served(g)


def test_moe_served_rows_match_a_workload_of_the_same_model_precision_and_lengths():
    """Parsing-level match (the MoE workload runs are built elsewhere): the rows compare_served would take for
    a gpt-oss-120b fp4 1k/1k run are the four MI300X points, one curve; a deepseek-r1 fp8 1k/1k run takes the
    four H200 points."""
    from costmodel.frontier import curves

    pts = read_served(SHIPPED)

    def matching(model, precision, isl, osl):
        return [p for p in pts if (p.model, p.precision, p.isl, p.osl) == (model, precision, isl, osl)]

    gpt = matching("gpt-oss-120b", "fp4", 1024, 1024)
    assert [p.concurrency for p in gpt] == [64, 96, 128, 256] and len(curves(gpt)) == 1
    assert [p.device for p in matching("deepseek-r1", "fp8", 1024, 1024)] == ["h200"] * 4
    assert matching("gpt-oss-120b", "bf16", 1024, 1024) == [] and matching("deepseek-r1", "fp8", 8192, 1024) == []


@pytest.mark.parametrize("name,key", [("H200", "h200"), ("h200-sxm", "h200"), ("NVIDIA H200", "h200"),
                                      ("h200-cw_0", "h200"), ("b200-trt", "b200"), ("B200", "b200"),
                                      ("b200-nvd_3", "b200"), ("H100", "h100-sxm"), ("h100_sxm5", "h100-sxm"),
                                      ("mi355x-amd_0", "mi355x"), ("AMD Instinct MI300X", "mi300x"),
                                      ("GB200 NVL72", "gb200"), ("h200-nvl", None), ("h100-pcie", None),
                                      ("a100", None), ("tpu-v5", None)])
def test_hardware_names(name, key):
    assert hardware_key(name) == key


def test_model_names_are_read_as_tokenbench_names_them():
    assert model_key("meta-llama/Llama-3.2-1B-Instruct") == "llama-3.2-1b"
    assert model_key("meta-llama/Meta-Llama-3.1-8B-Instruct") == "llama-3.1-8b"
    assert model_key("deepseek-ai/DeepSeek-R1-0528") == "deepseek-r1-0528"


def _ix(**over):
    entry = {"hw": "h200-cw_0", "conc": 8, "image": "lmsysorg/sglang:v0.5.7", "model": "deepseek-ai/DeepSeek-R1-0528",
             "infmax_model_prefix": "dsr1", "framework": "sglang", "precision": "fp8", "spec_decoding": "none",
             "disagg": False, "isl": 1024, "osl": 1024, "is_multinode": False, "tp": 8, "ep": 1,
             "dp_attention": "false", "tput_per_gpu": 148.6, "output_tput_per_gpu": 74.6, "input_tput_per_gpu": 74.0,
             "median_ttft": 0.21, "median_tpot": 0.0128, "median_intvty": 78.125, "median_e2el": 12.1}
    entry.update(over)
    return entry


def test_inferencex_result_json_one_object_or_a_list(tmp_path):
    one = tmp_path / "agg_one.json"
    one.write_text(json.dumps(_ix()))
    [p] = read_served(one)
    assert (p.device, p.model, p.precision, p.isl, p.osl, p.concurrency, p.tp) == (
        "h200", "deepseek-r1-0528", "fp8", 1024, 1024, 8, 8)
    assert (p.total_tokens_per_s, p.output_tokens_per_s, p.input_tokens_per_s) == (148.6, 74.6, 74.0)
    assert (p.interactivity, p.ttft_s, p.e2e_latency_s) == (78.125, 0.21, 12.1)
    assert "sglang" in p.label
    many = tmp_path / "agg_many.json"
    no_intvty = {k: v for k, v in _ix(conc=16).items() if k != "median_intvty"}
    many.write_text(json.dumps([_ix(), no_intvty]))
    pts = read_served(many)
    assert pts[1].interactivity == pytest.approx(1 / 0.0128)  # from median_tpot (seconds)


@pytest.mark.parametrize("entries,expect", [
    ([_ix(), {k: v for k, v in _ix().items() if k != "tput_per_gpu"}], "entry [1]: missing field(s) tput_per_gpu"),
    ([_ix(hw="tpu-v5")], "entry [0]: unknown hardware 'tpu-v5'"),
    ([_ix(tput_per_gpu=0)], "entry [0]: tput_per_gpu must be a positive number"),
    ([_ix(tput_per_gpu="fast")], "entry [0]: tput_per_gpu must be a number"),
    ([_ix(conc=2.5)], "entry [0]: concurrency must be a whole number"),
    ([_ix(), 3], "entry [1]: must be an object"),
    ({"hello": 1}, "missing field(s) hw, model"),
])
def test_bad_inferencex_entries_name_the_file_and_the_index(tmp_path, entries, expect):
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(entries))
    with pytest.raises(CostInputError) as e:
        read_served(f)
    assert expect in str(e.value) and str(f) in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text,expect", [
    ("hardware,model,precision,tp,isl,osl,concurrency\n" + "h200,m,bf16,1,256,64,4\n",
     "missing column(s) tokens_per_s_per_gpu_total, tokens_per_s_per_gpu_output, median_interactivity"),
    (HEADER + ",colour\n" + GOOD + ",red\n", "unknown column(s) colour"),
    (HEADER + "\n" + GOOD + "\n" + GOOD.replace(",9,", ",nine,") + "\n",
     "row 2 (line 3): tokens_per_s_per_gpu_total must be a number"),
    (HEADER + "\n" + GOOD.replace(",9,", ",-9,") + "\n",
     "row 1 (line 2): tokens_per_s_per_gpu_total must be a positive"),
    (HEADER + "\n" + GOOD.replace(",0.5", ",0") + "\n", "row 1 (line 2): median_interactivity must be a positive"),
    (HEADER + "\n" + GOOD.replace(",9,", ",,") + "\n", "row 1 (line 2): tokens_per_s_per_gpu_total is empty"),
    (HEADER + "\n" + GOOD + "\n" + GOOD.replace("h200", "h200-nvl") + "\n",
     "row 2 (line 3): unknown hardware 'h200-nvl'"),
    (HEADER + "\n" + GOOD + ",extra\n", "row 1 (line 2): more fields than the header"),
    (HEADER + "\n" + "h200,m,bf16\n", "row 1 (line 2): fewer fields than the header"),
    (HEADER + "\n" + GOOD.replace(",1,256", ",0,256") + "\n", "row 1 (line 2): tp must be a positive"),
    (HEADER + "\n", "has no rows"),
    ("", "is empty"),
])
def test_bad_csv_rows_name_the_file_and_the_row(tmp_path, text, expect):
    f = tmp_path / "bad.csv"
    f.write_text(text)
    with pytest.raises(CostInputError) as e:
        read_served(f)
    assert expect in str(e.value) and str(f) in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(CostInputError, match="not found"):
        read_served(tmp_path / "nope.csv")


# --- the comparison -------------------------------------------------------------------------------------

def _loglin(x, x0, y0, x1, y1):
    t = (x - x0) / (x1 - x0)
    return math.exp(math.log(y0) + t * (math.log(y1) - math.log(y0)))


# the fixture's chunked-prefill frontier (tests/data/workload-cpu-llama-3.2-1b-bf16.json), by hand:
# C=16 (0.217549, 17.4039, output 3.48078), C=4 (0.610998, 12.22, 2.44399), C=1 (1.11524, 5.57621, 1.11524)
def test_compare_at_served_points_by_hand():
    c = compare_served(load_workload(RUN), read_served(SYNTH), str(SYNTH))
    h200 = next(x for x in c.curves if x.hardware == "h200")
    assert not h200.same_hardware and DIFFERENT_HARDWARE in h200.header
    assert [r.served_concurrency for r in h200.rows] == [1, 4]
    r4 = h200.rows[1]
    tb = _loglin(0.5, 0.217549, 17.4039, 0.610998, 12.22)
    assert r4.tokenbench.total_tokens_per_s == pytest.approx(tb, rel=1e-9)
    assert r4.tokenbench.output_tokens_per_s == pytest.approx(_loglin(0.5, 0.217549, 3.48078, 0.610998, 2.44399))
    assert r4.ratio == pytest.approx(9.0 / tb)
    # served side at the H200's catalog price ($1.41/h, 1.73 kW); tokenbench's at the run's ($0.10/h, 0.25 kW)
    assert r4.served.economics.cost_per_mtok_total == pytest.approx(1.41 / (9 * 3600 / 1e6))
    assert r4.served.economics.cost_per_mtok_output == pytest.approx(1.41 / (1.8 * 3600 / 1e6))
    assert r4.served.economics.tokens_per_s_per_mw == pytest.approx(9 * 1000 / 1.73)
    assert r4.tokenbench.economics.cost_per_mtok_total == pytest.approx(0.10 / (tb * 3600 / 1e6))
    r1 = h200.rows[0]
    assert r1.tokenbench.total_tokens_per_s == pytest.approx(_loglin(0.9, 0.610998, 12.22, 1.11524, 5.57621))
    # C=16's interactivity 0.1 is below the frontier (0.2175): listed, not extrapolated
    assert any("concurrency 16" in s and "outside" in s for s in h200.skipped)
    b200 = next(x for x in c.curves if x.hardware == "b200")
    assert b200.rows == [] and len(b200.skipped) == 3
    assert any("no interactivity published" in s for s in b200.skipped)
    reasons = [why for _, why in c.unmatched]
    assert len(reasons) == 3
    assert any(w.startswith("model llama-3.1-8b") for w in reasons)
    assert any(w.startswith("precision fp8") for w in reasons)
    assert any(w.startswith("workload 1k/1k") for w in reasons)


def test_compare_at_chosen_interactivities():
    c = compare_served(load_workload(RUN), read_served(SYNTH), str(SYNTH), at=[0.3, 5.0])
    h200 = next(x for x in c.curves if x.hardware == "h200")
    r, out = h200.rows
    assert r.served.total_tokens_per_s == pytest.approx(_loglin(0.3, 0.1, 13.0, 0.5, 9.0))
    assert r.tokenbench.total_tokens_per_s == pytest.approx(_loglin(0.3, 0.217549, 17.4039, 0.610998, 12.22))
    assert out.served.total_tokens_per_s is None and out.tokenbench.total_tokens_per_s is None and out.ratio is None
    assert "outside the served range" in out.served.how and "outside the tokenbench range" in out.tokenbench.how


def test_projected_points_on_the_served_hardware_make_it_an_engine_efficiency():
    run = load_workload(RUN)
    proj = [WorkloadPoint(device="h200", model="llama-3.2-1b", precision="bf16", isl=256, osl=64, concurrency=c,
                          engine_model="chunked-prefill", source="projected", total_tokens_per_s=t,
                          output_tokens_per_s=t / 5, interactivity=u)
            for c, u, t in ((1, 1.0, 10.0), (4, 0.4, 40.0))]
    c = compare_served(run, read_served(SYNTH), str(SYNTH), extra_points=proj)
    h200 = next(x for x in c.curves if x.hardware == "h200")
    assert h200.same_hardware and h200.tokenbench_source == "projected"
    assert "same hardware" in h200.header and "not an engine efficiency" not in h200.header
    assert h200.tokenbench_pricing.price_per_hour == 1.41  # the projected device at its catalog price
    r = next(r for r in h200.rows if r.served_concurrency == 4)
    assert r.tokenbench.total_tokens_per_s == pytest.approx(_loglin(0.5, 0.4, 40.0, 1.0, 10.0))
    b200 = next(x for x in c.curves if x.hardware == "b200")
    assert not b200.same_hardware and b200.tokenbench_source == "measured"


def test_compare_served_cli_table_and_json(capsys):
    assert main(["compare", str(RUN), "--served", str(SYNTH)]) == 0
    out = capsys.readouterr().out
    assert DIFFERENT_HARDWARE in out
    assert "Unmatched served rows (3)" in out and "model llama-3.1-8b, not the run's llama-3.2-1b" in out
    assert "$43.52" in out  # served H200 at concurrency 4: $1.41/h / (9 tokens/s x 3600 / 1e6)
    assert main(["compare", str(RUN), "--served", str(SYNTH), "--json", "--at-interactivity", "0.5"]) == 0
    data = json.loads(capsys.readouterr().out)
    h200 = next(x for x in data["curves"] if x["hardware"] == "h200")
    assert h200["rows"][0]["ratio"] == pytest.approx(9.0 / _loglin(0.5, 0.217549, 17.4039, 0.610998, 12.22))
    assert len(data["unmatched"]) == 3 and data["unmatched"][0]["reason"]


@pytest.mark.parametrize("argv,expect", [
    (["compare", str(RUN), "--served", str(SHIPPED)], "no row matches the run's model llama-3.2-1b, precision bf16"),
    (["compare", str(RUN), "b200", "--served", str(SYNTH)], "give A only"),
    (["compare", str(RUN), "--at-interactivity", "5"], "--at-interactivity is for --served FILE"),
    (["compare", str(RUN), "--served", str(SYNTH), "--at-interactivity", "0"], "--at-interactivity must be a positive number"),
    (["compare", str(RUN), "--served", str(SYNTH), "--batch", "4"], "--batch does nothing with --served"),
    (["compare", str(RUN), "--served", str(SYNTH), "--tier", "cheap"], "unknown price tier"),
    (["compare", str(DATA / "cpu-tiny-fp32.json"), "--served", str(SYNTH)], "is a run record; this needs workload"),
    (["compare", str(RUN)], "compare needs two sides"),
])
def test_user_mistakes_are_one_line_and_exit_2(capsys, argv, expect):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("tokenbench: error: ") and expect in err and err.count("\n") == 1


def test_compare_of_two_runs_is_unchanged(capsys):
    a, b = DATA / "cpu-llama-3.2-1b-fp32-a.json", DATA / "cpu-llama-3.2-1b-fp32-b.json"
    assert main(["compare", str(a), str(b)]) == 0
    assert "tokenbench compare: A = " in capsys.readouterr().out


def test_compare_served_starts_without_torch():
    import subprocess
    import sys

    script = ("import contextlib, io, sys\nfrom bench.cli import main\n"
              "with contextlib.redirect_stdout(io.StringIO()):\n"
              f"    code = main(['compare', {str(RUN)!r}, '--served', {str(SYNTH)!r}])\n"
              "print(code, 'torch' in sys.modules)\n")
    p = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["0", "False"]


def test_a_run_measured_on_the_served_hardware_is_an_engine_efficiency(tmp_path):
    rec = json.loads(RUN.read_text())
    rec["device"] = {"key": "h200", "name": "NVIDIA H200", "kind": "cuda", "memory_bytes": 150_000_000_000}
    for p in rec["points"]:
        p["device"] = "h200"
    f = tmp_path / "workload-h200.json"
    f.write_text(json.dumps(rec))
    c = compare_served(load_workload(f), read_served(SYNTH), str(SYNTH))
    h200 = next(x for x in c.curves if x.hardware == "h200")
    assert h200.same_hardware and h200.tokenbench_source == "measured" and "same hardware (h200)" in h200.header
    assert h200.tokenbench_pricing.price_per_hour == 0.10  # the run's own recorded price
    b200 = next(x for x in c.curves if x.hardware == "b200")
    assert not b200.same_hardware and DIFFERENT_HARDWARE in b200.header


def test_compare_served_projects_the_run_onto_the_served_hardware(tmp_path, capsys):
    """A CPU workload run beside an H200 served row: tokenbench's side is the run projected onto the H200,
    labelled so (the synthetic served row is a fixture, not a published figure)."""
    from pathlib import Path

    from bench.cli import main

    run = Path(__file__).parent / "data" / "workload-cpu-tiny-fp32.json"
    served = tmp_path / "served.csv"
    served.write_text("hardware,model,precision,tp,isl,osl,concurrency,tokens_per_s_per_gpu_total,"
                      "tokens_per_s_per_gpu_output,median_interactivity,source,note\n"
                      "H200,tiny,fp32,1,16,8,1,60000,10000,20000,SYNTHETIC TEST FIXTURE,not published\n")
    assert main(["compare", str(run), "--served", str(served), "--json"]) == 0
    out = capsys.readouterr().out
    assert "h200 (projected from" in out and "projected" in out


# --- published readings (costmodel/data/served_readings.csv) -------------------------------------------

READINGS = ROOT / "costmodel" / "data" / "served_readings.csv"


def test_every_published_reading_is_parsed_with_its_source():
    from costmodel.served_results import read_served_file

    f = read_served_file(READINGS)
    rs = f.readings
    assert f.format == "readings" and f.points == [] and len(rs) == 8
    assert all(r.source.startswith("https://") and r.model in CATALOG_MODELS for r in rs)
    page = [r for r in rs if r.what == "frontier reading"]  # InferenceX compare page, DeepSeek-R1 1k/1k fp8
    assert [(r.hardware, r.interactivity, r.tokens_per_s_per_gpu) for r in page] == [
        ("h100-sxm", 42, 266.3), ("h100-sxm", 71, 73.4), ("h100-sxm", 100, 23.3),
        ("b200", 42, 4791.6), ("b200", 71, 1020.2), ("b200", 100, 497.5)]
    assert all((r.precision, r.isl, r.osl) == ("fp8", 1024, 1024) for r in page)
    # the page's $/M and throughput imply the catalog's hyperscaler prices ($1.30 H100, $1.95 B200) within 3%
    for r in page:
        assert r.implied_price_per_hour == pytest.approx(1.30 if r.hardware == "h100-sxm" else 1.95, rel=0.03)
    h200, gb300 = [r for r in rs if r.what == "vendor claim"]
    assert (h200.hardware, h200.tokens_per_s_per_gpu, h200.cost_per_mtok, h200.interactivity) == ("h200", 90, 4.20, None)
    assert h200.implied_price_per_hour == pytest.approx(90 * 4.20 * 3600 / 1e6)  # $1.36, not the claimed $1.41
    assert (gb300.hardware, gb300.tokens_per_s_per_gpu, gb300.precision) == ("gb300", 6000, "fp4")
    with pytest.raises(CostInputError, match="not runs at a concurrency"):
        read_served(READINGS)


def test_a_reading_without_a_source_is_refused(tmp_path):
    text = READINGS.read_text().splitlines()
    row = text[1].replace("https://inferencex.semianalysis.com/compare/deepseek-r1-b200-vs-h100", "")
    f = tmp_path / "readings.csv"
    f.write_text(text[0] + "\n" + row + "\n")
    from costmodel.served_results import read_served_file

    with pytest.raises(CostInputError, match="row 1: no source"):
        read_served_file(f)

"""`tokenbench cost`, `compare` and `project` through the CLI's main, on recorded runs in tests/data/."""
import json
from pathlib import Path

import pytest

from bench.cli import main

DATA = Path(__file__).parent / "data"
RUN_A = str(DATA / "cpu-llama-3.2-1b-fp32-a.json")
RUN_B = str(DATA / "cpu-llama-3.2-1b-fp32-b.json")
TINY = str(DATA / "cpu-tiny-fp32.json")
TCO_EXAMPLE = str(Path(__file__).parents[1] / "costmodel" / "data" / "tco_example.json")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv):
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def load(path):
    return json.loads(Path(path).read_text())


# ---- cost ------------------------------------------------------------------------------------------------

def test_cost_catalog_device(capsys):
    code, out, _ = run(capsys, "cost", "--device", "h200", "--tier", "hyperscaler-4y", "--tokens-per-s", "93.4")
    assert code == 0
    # 1.41 / (93.4 * 0.0036) = $4.19/M; 93.4 * 1000 / 1.73 = 54.0K tokens/s per MW; 989 / 1.41 = 701
    assert "$4.19" in out and "54.0K" in out and "701" in out
    assert "InferenceX" in out and "2026-11" in out  # the catalog figures carry source and date
    assert "no power reading" in out


def test_cost_json_user_price_and_input_tokens(capsys):
    d = run_json(capsys, "cost", "--price-per-hour", "3.6", "--power-kw", "2", "--tokens-per-s", "1000",
                 "--input-tokens-per-s", "3000", "--utilisation", "0.5")["economics"]
    # 4000 tokens/s total at $3.6/h -> $0.25/M; output only -> $1/M; half the hours serve -> effective $0.50/M
    assert d["cost_per_mtok"] == pytest.approx(0.25)
    assert d["cost_per_mtok_output"] == pytest.approx(1.0)
    assert d["effective_cost_per_mtok"] == pytest.approx(0.5)
    assert d["tokens_per_s_per_mw"] == pytest.approx(2e6)  # 4000 tokens/s per 2 kW
    assert d["price_source"].startswith("user")


def test_cost_tco(capsys):
    code, out, _ = run(capsys, "cost", "--tco", TCO_EXAMPLE, "--tokens-per-s", "900")
    assert code == 0 and "TCO: capital $1.62/h" in out and "= $1.87/device-hour" in out
    d = run_json(capsys, "cost", "--tco", TCO_EXAMPLE, "--tokens-per-s", "900")
    e = d["economics"]
    # $1.874725/h at 900 tokens/s: 1.874725 / 3.24 = $0.57862/M; at 70% utilisation $0.82660/M; 1.75 kW all-in
    assert e["cost_per_mtok"] == pytest.approx(0.578619, abs=1e-6)
    assert e["effective_cost_per_mtok"] == pytest.approx(0.826599, abs=1e-6)
    assert e["power_kw"] == pytest.approx(1.75)
    assert d["tco"]["price_per_hour"] == pytest.approx(1.874725, abs=1e-6)


def test_cost_check_catches_the_article_contradiction(capsys):
    code, out, _ = run(capsys, "cost", "check", "--price-per-hour", "1.41", "--tokens-per-s", "906,000",
                       "--cost-per-mtok", "4.20")
    assert code == 1
    assert "CONTRADICTION" in out and "$0.000432/M" in out and "$4.20" in out


def test_cost_check_passes_a_consistent_set(capsys):
    code, out, _ = run(capsys, "cost", "check", "--price-per-hour", "1.41", "--cost-per-mtok", "4.20",
                       "--power-kw", "1.73", "--tokens-per-s-per-mw", "54K")
    assert code == 0 and "consistent" in out and "93.3" in out  # tokens/s derived: 1.41 / (4.20 * 0.0036)
    d = run_json(capsys, "cost", "check", "--price-per-hour", "2.65", "--cost-per-mtok", "0.12",
                 "--power-kw", "2.10", "--tokens-per-s-per-mw", "2.8M")
    assert d["ok"] is True


def test_cost_from_run(capsys):
    rec = load(RUN_A)
    d = run_json(capsys, "cost", "--from", RUN_A)
    assert d["price"]["price_per_hour"] == 0.10 and "recorded in the run" in d["price"]["source"]
    for step, got in zip(rec["steps"], d["steps"]):
        # $0.10/h at the recorded tokens/s; 0.25 kW recorded
        assert got["economics"]["cost_per_mtok"] == pytest.approx(0.10 / (step["tokens_per_s"] * 3600 / 1e6))
        assert got["economics"]["joules_per_token"] == pytest.approx(250 / step["tokens_per_s"])
        assert got["economics"]["cost_per_mtok"] == pytest.approx(step["cost_per_mtok"])  # agrees with `run`
    code, out, _ = run(capsys, "cost", "--from", RUN_A)
    assert code == 0 and "no power reading: CPU run" in out


def test_cost_from_run_with_catalog_override(capsys):
    rec = load(TINY)
    # a CPU run's tokens/s is not an h200's: pricing it at the h200's catalog price is refused, with the way
    code, _, err = run(capsys, "cost", "--from", TINY, "--device", "h200", "--tier", "rental-3y")
    assert code == 2 and "not a h200; to cost it there, project it: tokenbench project --to h200" in err
    d = run_json(capsys, "cost", "--from", TINY, "--price-per-hour", "1.60")
    step = rec["steps"][0]
    assert d["price"]["price_per_hour"] == 1.60
    assert d["steps"][0]["economics"]["cost_per_mtok"] == pytest.approx(1.60 / (step["tokens_per_s"] * 0.0036))
    code, out, _ = run(capsys, "cost", "--from", TINY)  # no price recorded: said, not guessed
    assert code == 0 and "none recorded" in out


# ---- compare ---------------------------------------------------------------------------------------------

def test_compare_two_runs_at_a_matched_batch(capsys):
    a, b = load(RUN_A), load(RUN_B)
    d = run_json(capsys, "compare", RUN_A, RUN_B)
    assert d["operating_point"]["batch"] == 8 and d["operating_point"]["context"] == 256
    rows = {r["metric"]: r for r in d["rows"]}
    rate_a = next(s["tokens_per_s"] for s in a["steps"] if s["batch"] == 8)
    rate_b = next(s["tokens_per_s"] for s in b["steps"] if s["batch"] == 8)
    assert rows["total_tokens_per_s"]["a"] == pytest.approx(rate_a)
    assert rows["cost_per_mtok"]["b"] == pytest.approx(0.05 / (rate_b * 0.0036))
    code, out, _ = run(capsys, "compare", RUN_A, RUN_B, "--batch", "1")
    assert code == 0 and "batch as asked 1" in out and "B vs A" in out


def test_compare_run_against_a_catalog_device_is_a_labelled_projection(capsys):
    code, out, _ = run(capsys, "compare", RUN_A, "h200")
    assert code == 0
    assert "projected from" in out and "PROJECTION, not a measurement" in out
    assert "$1.41" in out and "tokens/s per MW" in out


def table_rows(text: str) -> list:
    """The cells of each body row of the boxed tables in `text`."""
    return [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines() if line.startswith("│")]


def test_compare_public_table(capsys):
    code, out, _ = run(capsys, "compare", "h200", "gb300", "--tokens-per-s", "93.4", "5880")
    assert code == 0
    rows = {r[0]: r for r in table_rows(out)}
    assert rows["tokens/s per MW"][-1] == "51.9x"  # 54.0K vs 2.80M
    assert rows["$/M tokens"][-1] == "33.5x lower"  # $4.19 vs $0.125


def test_compare_refuses_different_models(capsys):
    code, _, err = run(capsys, "compare", RUN_A, TINY)
    assert code == 2 and "not a matched comparison: model" in err


# ---- project ---------------------------------------------------------------------------------------------

def test_project_by_hand_from_the_recorded_run(capsys):
    rec = load(RUN_A)
    d = run_json(capsys, "project", "--to", "h200", "--from", RUN_A)
    assert d["projection"] is True and "same fraction of its roofline bound" in d["assumption"]
    # CPU run: no spec, no measured peak -> source bound = bytes / measured copy bandwidth (capped at 100%);
    # target bound on H200 in fp32 = max(flops / 67e12, bytes / 4.8e12)
    copy_bw = rec["measured_copy_gbps"] * 1e9

    def projected(op, batch):
        r = next(r for r in rec["rows"] if r["op"] == op and r["batch"] == batch)
        eff = min(1.0, r["bytes"] / copy_bw / r["seconds_p50"])
        return max(r["flops"] / 67e12, r["bytes"] / 4800e9) / eff

    for step in d["steps"]:
        b = step["batch"]
        want = 16 * projected("layer", b) + projected("final_norm", b) + projected("lm_head", b)
        assert step["step_seconds"] == pytest.approx(want, rel=1e-9)
        assert step["tokens_per_s"] == pytest.approx(b / want)
        assert step["economics"]["cost_per_mtok"] == pytest.approx(1.41 / (b / want * 0.0036))


def test_project_per_op_table_and_fit(capsys):
    code, out, _ = run(capsys, "project", "--to", "b200", "--from", TINY, "--ops", "--tier", "neocloud-4y")
    assert code == 0 and "PROJECTION" in out and "$2.34" in out
    ops = {r[0] for r in table_rows(out)}
    assert {"attn_norm", "qkv_proj", "attention", "gate_up_proj", "lm_head", "layer"} <= ops
    code, _, err = run(capsys, "project", "--to", "b200", "--from", TINY, "--batch", "3")
    assert code == 2 and "no projected step" in err


# ---- tables at 80 columns: fitted, never cut -------------------------------------------------------------

def cells_and_words(text: str) -> tuple[set, set]:
    cells = {c for r in table_rows(text) for c in r}
    return cells, {w for c in cells for w in c.split()}


@pytest.mark.parametrize("argv", [
    ["cost", "--device", "h200", "--tier", "hyperscaler-4y", "--tokens-per-s", "93.4", "--input-tokens-per-s", "300"],
    ["cost", "check", "--price-per-hour", "1.41", "--tokens-per-s", "906,000", "--cost-per-mtok", "4.20"],
    ["cost", "--from", RUN_A],
    ["compare", RUN_A, "h200"],
    ["compare", RUN_A, RUN_B],
    ["project", "--to", "b200", "--from", TINY, "--ops"],
], ids=["cost", "cost-check", "cost-from", "compare-projected", "compare-runs", "project-ops"])
def test_tables_at_80_columns_keep_every_cell(argv, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # a pipe lays tables out at COLUMNS: this wide, nothing is split
    _, wide, _ = run(capsys, *argv)
    monkeypatch.setenv("COLUMNS", "80")
    _, narrow, _ = run(capsys, *argv)
    want, _ = cells_and_words(wide)
    got, words = cells_and_words(narrow)
    assert want and "…" not in narrow
    assert max(len(line) for line in narrow.splitlines() if line[:1] in "┏┃┡│└") <= 80
    for cell in want:
        # a figure or key is one cell, whole; only free text (a source, a figure's name) may wrap, at spaces
        assert cell in got or (" " in cell and all(w in words for w in cell.split())), cell


# ---- bad input: one line, exit 2 -------------------------------------------------------------------------

@pytest.mark.parametrize("argv, needle", [
    (["cost", "--price-per-hour", "-1", "--tokens-per-s", "10"], "positive"),
    (["cost", "--price-per-hour", "0", "--tokens-per-s", "10"], "positive"),
    (["cost", "--price-per-hour", "1", "--tokens-per-s", "0"], "positive"),
    (["cost", "--price-per-hour", "1", "--tokens-per-s", "10", "--power-kw", "-2"], "positive"),
    (["cost", "--price-per-hour", "1", "--tokens-per-s", "10", "--utilisation", "1.5"], "utilisation"),
    (["cost", "--price-per-hour", "1", "--tokens-per-s", "10", "--utilisation", "0"], "utilisation"),
    (["cost", "--device", "h200", "--tier", "spot", "--tokens-per-s", "10"], "unknown price tier"),
    (["cost", "--device", "tpu9", "--tokens-per-s", "10"], "unknown device"),
    (["cost", "--device", "l40s", "--tokens-per-s", "10"], "no catalog price"),
    (["cost", "--tco", "/nonexistent/tco.json", "--tokens-per-s", "10"], "cannot read TCO file"),
    (["cost", "--from", "/nonexistent/run.json"], "results file not found: /nonexistent/run.json"),
    (["cost", "check"], "at least one figure"),
    (["project", "--to", "tpu9", "--from", TINY], "unknown device"),
    (["compare", "h200", "tpu9"], "unknown device"),
    (["compare", "h200", "b200", "--tier", "spot"], "unknown price tier"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, needle):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("tokenbench: error:") and needle in err


@pytest.mark.parametrize("change, needle", [
    ({"drop": "pue"}, "missing required field 'pue'"),
    ({"set": ("pue", "1.2")}, "'pue' must be a number"),
    ({"set": ("capex_per_devcie", 1)}, "unknown field"),
])
def test_bad_tco_file(capsys, tmp_path, change, needle):
    data = load(TCO_EXAMPLE)
    if "drop" in change:
        del data[change["drop"]]
    else:
        data[change["set"][0]] = change["set"][1]
    path = tmp_path / "tco.json"
    path.write_text(json.dumps(data))
    code, _, err = run(capsys, "cost", "--tco", str(path), "--tokens-per-s", "10")
    assert code == 2 and needle in err and err.count("\n") == 1

"""A cost on any machine: a CPU run without a price is costed at the CPU catalog's estimate (public on-demand
price per vCPU-hour, with its source and date), labelled as such; show and report take --price-per-hour and
--power-kw; every hint points at a flag that works."""
import contextlib
import io
import json
from pathlib import Path

import pytest

from bench.cli import main
from costmodel.cpu_prices import cpu_price, load_cpu_prices

DATA = Path(__file__).resolve().parent / "data"
UNPRICED_CPU_RUN = str(DATA / "cpu-tiny-fp32.json")  # AMD EPYC, 2 cores, no price recorded
WORKLOAD = str(DATA / "workload-cpu-llama-3.2-1b-bf16.json")


def _cli(argv):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_the_catalog_has_a_source_a_date_and_a_price_per_vcpu_for_each_vendor():
    data = load_cpu_prices()
    assert data["source"] and data["retrieved"]
    amd, intel = cpu_price("AMD EPYC 9R14", 2), cpu_price("Intel(R) Xeon(R) Processor", 8)
    assert amd.per_vcpu_hour == pytest.approx(0.23184 / 4) and amd.price_per_hour == pytest.approx(2 * 0.23184 / 4)
    assert intel.price_per_hour == pytest.approx(8 * 0.2016 / 4)
    assert "CPU catalog estimate, not this machine's price" in amd.source and data["retrieved"] in amd.source
    assert cpu_price("Apple M3", 8) is None and cpu_price("AMD EPYC", None) is None


def test_cost_from_an_unpriced_cpu_run_uses_the_estimate_and_says_so():
    code, out, err = _cli(["cost", "--from", UNPRICED_CPU_RUN])
    assert code == 0, err
    assert "price: $0.116/device-hour [CPU catalog estimate, not this machine's price: 2 vCPU" in out
    code, out, _ = _cli(["cost", "--from", UNPRICED_CPU_RUN, "--price-per-hour", "0.5"])
    assert "price: $0.500/device-hour [user (--price-per-hour)]" in out


def test_show_costs_a_cpu_run_at_the_estimate_or_the_given_price():
    record = json.loads(Path(UNPRICED_CPU_RUN).read_text())
    tok = record["steps"][0]["tokens_per_s"]
    code, out, err = _cli(["show", UNPRICED_CPU_RUN])
    assert code == 0, err
    assert "CPU catalog estimate, not this machine's price" in out.replace("\n", " ")
    code, out, err = _cli(["show", UNPRICED_CPU_RUN, "--price-per-hour", "1", "--power-kw", "0.3", "--json"])
    assert code == 0, err
    shown = json.loads(out)
    assert shown["price"]["price_per_hour"] == 1 and shown["price"]["power_kw"] == 0.3
    assert shown["steps"][0]["cost_per_mtok"] == pytest.approx(1 / (tok * 3600) * 1e6)


def test_show_reprices_a_workload_and_report_takes_the_flags(tmp_path):
    code, out, err = _cli(["show", WORKLOAD, "--price-per-hour", "1", "--power-kw", "0.3", "--json"])
    assert code == 0, err
    econ = json.loads(out)["economics"]
    assert all(e["price_per_hour"] == 1 and e["power_kw"] == 0.3 for e in econ)
    code, out, err = _cli(["report", UNPRICED_CPU_RUN, "--price-per-hour", "2", "--out", str(tmp_path / "r")])
    assert code == 0, err
    page = (tmp_path / "r" / "report.md").read_text()
    assert "priced at $2/device-hour [--price-per-hour (given when read)]" in page
    tok = json.loads(Path(UNPRICED_CPU_RUN).read_text())["steps"][0]["tokens_per_s"]
    assert f"| {2 / (tok * 3600) * 1e6:.4g} |" in page


def test_hints_point_at_flags_that_work():
    code, out, _ = _cli(["show", UNPRICED_CPU_RUN])
    assert "no power figure: pass --power-kw K here, or: tokenbench cost --from RUN --power-kw K" in out
    code, out, _ = _cli(["show", UNPRICED_CPU_RUN, "--power-kw", "0.2"])
    assert code == 0 and "no power figure" not in out

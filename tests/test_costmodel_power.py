"""Power sources: TDP x overhead, and NVML board energy (with a fake pynvml; none on this machine's CPU)."""
import sys
import types

import pytest

from costmodel import power
from costmodel.errors import CostInputError
from costmodel.power import EnergyMeter, tdp_power


def test_tdp_times_overhead():
    p = tdp_power(700, 2.5)  # 700 W * 2.5 = 1.75 kW
    assert p.kw == pytest.approx(1.75)
    assert p.kind == "tdp" and "700 W x overhead 2.5" in p.source
    with pytest.raises(CostInputError, match=">= 1"):
        tdp_power(700, 0.5)
    with pytest.raises(CostInputError):
        tdp_power(-1, 2)


def _fake_nvml(readings_mj, fail=None):
    it = iter(readings_mj)
    m = types.ModuleType("pynvml")

    def init():
        if fail == "init":
            raise RuntimeError("NVML Shared Library Not Found")

    def energy(handle):
        if fail == "energy":
            raise RuntimeError("Not Supported")
        return next(it)

    m.nvmlInit = init
    m.nvmlShutdown = lambda: None
    m.nvmlDeviceGetHandleByIndex = lambda i: ("handle", i)
    m.nvmlDeviceGetTotalEnergyConsumption = energy
    return m


def test_energy_meter_reads_the_counter_difference(monkeypatch):
    # counter 1,000,000 mJ -> 1,350,000 mJ: 350 J over 0.5 s (fake clock) = 700 W
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml([1_000_000, 1_350_000]))
    clock = iter([10.0, 10.5])
    with EnergyMeter(0, clock=lambda: next(clock)) as m:
        pass
    assert m.reading.joules == pytest.approx(350.0)
    assert m.reading.watts == pytest.approx(700.0)
    assert m.reading.joules_per_token(1000) == pytest.approx(0.35)
    assert m.reading.reason is None


@pytest.mark.parametrize("fail, needle", [("init", "NVML unavailable"), ("energy", "not readable")])
def test_energy_meter_without_nvml_says_why(monkeypatch, fail, needle):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml([0, 0], fail=fail))
    with EnergyMeter() as m:
        pass
    assert m.reading.joules is None and needle in m.reading.reason
    assert m.reading.joules_per_token(10) is None


def test_energy_meter_without_library(monkeypatch):
    monkeypatch.setattr(power, "_load_nvml", lambda: (None, "nvidia-ml-py (pynvml) is not installed"))
    with EnergyMeter() as m:
        pass
    assert m.reading.joules is None and "not installed" in m.reading.reason


def test_counter_that_did_not_advance_is_no_reading(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml([5000, 5000]))
    with EnergyMeter() as m:
        pass
    assert m.reading.joules is None and "did not advance" in m.reading.reason


def test_step_board_energy_composed_like_the_step():
    # 2 layers x 0.5 J + 0.01 J + 0.2 J = 1.21 J per step, over batch 4 -> 0.3025 J/token
    rows = [{"op": op, "batch": 4, "context": 64, "backend": "torch", "board_joules_per_call": j}
            for op, j in (("layer", 0.5), ("final_norm", 0.01), ("lm_head", 0.2))]
    assert power.step_board_joules_per_token(rows, 2, 4, 64, "torch") == pytest.approx(0.3025)
    assert power.step_board_joules_per_token(rows[:2], 2, 4, 64, "torch") is None  # lm_head unread
    assert power.step_board_joules_per_token(rows, 2, 8, 64, "torch") is None  # another batch


def test_cost_from_run_reports_board_energy_beside_all_in(tmp_path, capsys):
    # a recorded CPU run, given board readings as a GPU run would record them: the board J/token appears
    # in its own column, the all-in J/token is untouched
    import json
    from pathlib import Path

    from bench.cli import main

    rec = json.loads((Path(__file__).parent / "data" / "cpu-tiny-fp32.json").read_text())
    for r in rec["rows"]:
        r["board_joules_per_call"] = 0.1
    path = tmp_path / "run.json"
    path.write_text(json.dumps(rec))
    assert main(["cost", "--from", str(path), "--power-kw", "1", "--json"]) == 0
    steps = json.loads(capsys.readouterr().out)["steps"]
    first = rec["steps"][0]
    e = steps[0]["economics"]
    assert e["board_joules_per_token"] == pytest.approx((2 * 0.1 + 0.1 + 0.1) / first["batch"])
    assert e["joules_per_token"] == pytest.approx(1000 / first["tokens_per_s"])

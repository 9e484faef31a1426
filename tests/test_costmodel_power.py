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

"""The measured copy bandwidth at its default size on the CPU (the other tests measure a smaller buffer:
tests/conftest.py, small_copy_buffer), and the drift check after a sweep."""
import pytest

from bench.configs.device_catalog import detect
from bench.measure import bandwidth
from bench.measure.timing import MIN_SAMPLES


@pytest.fixture(scope="module")
def cpu():
    return detect("cpu")


def test_cpu_copy_at_the_default_size_counts_read_and_write(cpu):
    bw = bandwidth.copy_bandwidth(cpu, budget_s=bandwidth.copy_budget(0.02))
    assert bw["copy_bytes"] == 2 * (256 << 20)  # a 256 MiB copy moves 512 MiB
    timing = bw["copy_timing"]
    assert timing["samples"] >= MIN_SAMPLES and timing["cache_flushed"] is False
    assert bw["measured_copy_gbps"] == pytest.approx(bw["copy_bytes"] / timing["seconds_p50"] / 1e9)


def test_copy_budget_is_twice_the_case_budget_within_bounds():
    assert bandwidth.copy_budget(0.02) == 0.2 and bandwidth.copy_budget(0.5) == 1.0
    assert bandwidth.copy_budget(1.0) == bandwidth.copy_budget(60) == 2.0


def test_drift_past_the_threshold_is_flagged(cpu, monkeypatch):
    from bench.records.store import set_measured

    record, said = {}, []
    set_measured(record, measured_gbps=10.0)
    monkeypatch.setattr(bandwidth, "copy_bandwidth", lambda device, budget_s=2.0: {"measured_copy_gbps": 10.5})
    bandwidth.check_bandwidth_drift(cpu, record, said.append)
    assert record["bandwidth_drift"] == pytest.approx(0.05) and "bandwidth_warning" not in record and not said
    monkeypatch.setattr(bandwidth, "copy_bandwidth", lambda device, budget_s=2.0: {"measured_copy_gbps": 14.0})
    bandwidth.check_bandwidth_drift(cpu, record, said.append)
    assert record["measured_copy_gbps_after"] == 14.0 and record["bandwidth_drift"] == pytest.approx(0.4)
    assert said == [record["bandwidth_warning"]] and "moved from 10.0 to 14.0 GB/s" in said[0]

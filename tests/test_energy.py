"""Board energy windows against a fake NVML counter that, like real boards, advances only every 100 ms."""
from __future__ import annotations

import sys
import types

import pytest

from bench.configs import nvml_board
from bench.measure import energy
class FakeBoard:
    """A fake clock and an energy counter at `watts` that moves in 100 ms steps; each call takes `call_s`."""

    def __init__(self, watts=400.0, call_s=0.003, step_s=0.1, stall=False):
        self.t, self.watts, self.call_s, self.step_s, self.stall = 0.0137, watts, call_s, step_s, stall

    def call(self):
        self.t += self.call_s

    def clock(self):
        return self.t

    def read_mj(self):
        if self.stall:
            return 5000
        ticks = int(self.t / self.step_s)
        return int(ticks * self.step_s * self.watts * 1000)


@pytest.mark.parametrize("call_s", [0.0005, 0.003, 0.02])
def test_window_is_tick_aligned_and_close_to_the_true_power(call_s):
    board = FakeBoard(watts=400.0, call_s=call_s)
    r = energy.window(board.call, board.read_mj, board.clock, power_limit_w=700)
    assert r.reason is None and r.seconds >= 1.0 and r.ticks >= energy.MIN_TICKS
    assert r.watts == pytest.approx(400.0, rel=0.03)  # one call's duration of slack at each end
    assert r.joules_per_call == pytest.approx(400.0 * call_s, rel=0.03)


def test_one_short_region_would_be_noise_the_window_is_not():
    # what the old meter did: read around 5 ms of calls; the counter moves 0 or 1 step (40 J: 8000 W)
    board = FakeBoard(watts=400.0, call_s=0.005)
    seen = set()
    for _ in range(40):
        before = board.read_mj()
        board.call()
        seen.add((board.read_mj() - before) / 1000 / 0.005)
    assert seen == {0.0, 8000.0}
    r = energy.window(board.call, board.read_mj, board.clock, power_limit_w=700)
    assert r.watts == pytest.approx(400.0, rel=0.03)


def test_stalled_counter_and_absurd_watts_are_left_empty_with_the_reason():
    board = FakeBoard(stall=True)
    r = energy.window(board.call, board.read_mj, board.clock)
    assert r.joules is None and "did not advance" in r.reason
    board = FakeBoard(watts=2000.0)
    r = energy.window(board.call, board.read_mj, board.clock, power_limit_w=700)
    assert r.joules is None and "above the board's 700 W limit" in r.reason
    # a counter that advances too rarely for the window: too few ticks to trust
    board = FakeBoard(step_s=0.5)
    r = energy.window(board.call, board.read_mj, board.clock, min_s=1.0)
    assert r.joules is None and "need 5" in r.reason


def _fake_nvml(board, fail=None):
    m = types.ModuleType("pynvml")

    def init():
        if fail == "init":
            raise RuntimeError("NVML Shared Library Not Found")

    def by_uuid(uuid):
        if fail == "uuid":
            raise RuntimeError("Not Found")
        return ("uuid", uuid)

    m.nvmlInit = init
    m.nvmlShutdown = lambda: None
    m.nvmlDeviceGetHandleByUUID = by_uuid
    m.nvmlDeviceGetHandleByPciBusId = lambda bus: ("pci", bus)
    m.nvmlDeviceGetHandleByIndex = lambda i: pytest.fail("NVML handle taken by ordinal")
    m.nvmlDeviceGetEnforcedPowerLimit = lambda h: 700_000
    m.nvmlDeviceGetTotalEnergyConsumption = lambda h: board.read_mj()
    return m


class Props:
    uuid = "1b2c3d4e-0000-1111-2222-333344445555"
    pci_domain_id, pci_bus_id, pci_device_id = 0, 0x19, 0


def test_handle_by_uuid_then_pci_never_by_ordinal(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: Props())
    nvml = _fake_nvml(FakeBoard())
    assert nvml_board.nvml_handle(nvml, 0) == (("uuid", "GPU-" + Props.uuid), "uuid GPU-" + Props.uuid)
    nvml = _fake_nvml(FakeBoard(), fail="uuid")
    assert nvml_board.nvml_handle(nvml, 0) == (("pci", "00000000:19:00.0"), "pci 00000000:19:00.0")


@pytest.mark.parametrize("fail, needle", [("init", "NVML unavailable"), (None, None)])
def test_board_window_through_fake_nvml(monkeypatch, fail, needle):
    import torch

    board = FakeBoard(watts=300.0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: Props())
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml(board, fail))
    r = energy.board_window(board.call, 0, clock=board.clock)
    if needle:
        assert r.joules is None and needle in r.reason
    else:
        assert r.watts == pytest.approx(300.0, rel=0.03)


def test_without_the_library(monkeypatch):
    monkeypatch.setattr(energy, "load_nvml", lambda: (None, "nvidia-ml-py (pynvml) is not installed"))
    r = energy.board_window(lambda: None, 0)
    assert r.joules is None and "not installed" in r.reason


def test_step_joules_per_token_prefers_the_whole_step_window():
    from costmodel.power import step_board_joules_per_token

    joules = {"layer": 0.5, "final_norm": 0.01, "lm_head": 0.2}
    assert step_board_joules_per_token(joules, 2, 4) == (2 * 0.5 + 0.01 + 0.2) / 4
    assert step_board_joules_per_token({**joules, "model": 1.0}, 2, 4) == 1.0 / 4

"""The GPU board's own energy (NVML), measured over windows long enough for its counter.

NVML's total-energy counter (mJ) advances in steps of about 100 ms on current boards, while a timed region of
one op lasts 1-20 ms: the difference of two reads around it is zero or a whole step (watts above the board's
limit). So energy is read in its own window: the call is repeated for at least MIN_WINDOW_S, and both ends of
the window are aligned on a counter tick (the calls keep running until the counter moves), so the joules
counted are those of the calls between two ticks. A reading is kept only when the counter advanced several
times and the mean watts sit between zero and the board's power limit (plus a margin); otherwise it is empty
with the reason.
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass

from bench.configs.nvml_board import nvml_handle

MIN_WINDOW_S = 1.0
MAX_TICK_WAIT_S = 0.5  # a counter that does not move within this is not advancing
MIN_TICKS = 5  # counter steps inside a window: the reading is then within one step / 5 of the truth
POWER_LIMIT_MARGIN = 1.10  # boards briefly exceed their limit; beyond this the reading is not believed


@dataclass
class EnergyReading:
    """Board energy over a window; joules is None when it could not be trusted, and reason says why."""

    joules: float | None = None
    seconds: float | None = None
    calls: int = 0
    reason: str | None = None
    ticks: int = 0

    @property
    def watts(self) -> float | None:
        if self.joules is None or not self.seconds:
            return None
        return self.joules / self.seconds

    @property
    def joules_per_call(self) -> float | None:
        if self.joules is None or self.calls <= 0:
            return None
        return self.joules / self.calls


def load_nvml():
    """pynvml from nvidia-ml-py, or (None, reason). Imported lazily: nothing touches a device at import."""
    try:
        return importlib.import_module("pynvml"), None
    except ImportError:
        return None, "nvidia-ml-py (pynvml) is not installed"


def window(call, read_mj, clock=time.perf_counter, power_limit_w: float | None = None,
           min_s: float = MIN_WINDOW_S, max_s: float = 4 * MIN_WINDOW_S) -> EnergyReading:
    """Repeat `call` (which must end synchronized with the device) over a tick-aligned window.

    read_mj() is the counter. The calls start before the window opens and run until the counter moves (the
    window opens on that tick), then at least `min_s`, then until the counter moves again (it closes on that
    tick); calls in between are counted. Empty with a reason if the counter stalls or the watts are absurd.
    """
    reading = EnergyReading()
    try:
        start_mj, t_start = _next_tick(call, read_mj, clock, read_mj())
        if start_mj is None:
            reading.reason = f"NVML energy counter did not advance in {MAX_TICK_WAIT_S:g} s"
            return reading
        calls, last, ticks = 0, start_mj, 0
        while True:
            call()
            calls += 1
            now_mj, now = read_mj(), clock()
            if now_mj != last:
                ticks += 1
                last = now_mj
                if now - t_start >= min_s:
                    break
            if now - t_start > max_s:
                break
    except Exception as exc:  # noqa: BLE001 - NVML errors mid-window: no reading, never a failed run
        reading.reason = f"NVML energy counter not readable ({type(exc).__name__}: {exc})"
        return reading
    reading.seconds, reading.calls, reading.ticks = now - t_start, calls, ticks
    joules = (last - start_mj) / 1000.0
    if ticks < MIN_TICKS:
        reading.reason = f"counter advanced {ticks} times in {reading.seconds:.3g} s (need {MIN_TICKS})"
    elif joules <= 0:
        reading.reason = f"counter went from {start_mj} to {last} mJ"
    elif power_limit_w and joules / reading.seconds > power_limit_w * POWER_LIMIT_MARGIN:
        reading.reason = (f"{joules / reading.seconds:.0f} W over {reading.seconds:.3g} s is above the board's "
                          f"{power_limit_w:.0f} W limit: counter not trusted")
    else:
        reading.joules = joules
    return reading


def _next_tick(call, read_mj, clock, first):
    """Keep calling until the counter moves from `first`; returns (counter, time) at the move, or (None, None)."""
    t0 = clock()
    while clock() - t0 < MAX_TICK_WAIT_S:
        call()
        value = read_mj()
        if value != first:
            return value, clock()
    return None, None


def board_window(call, torch_index: int, min_s: float = MIN_WINDOW_S, clock=time.perf_counter) -> EnergyReading:
    """`window` on the real board behind CUDA device `torch_index`; an empty reading where NVML is absent."""
    nvml, reason = load_nvml()
    if nvml is None:
        return EnergyReading(reason=reason)
    try:
        nvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVML library or driver missing
        return EnergyReading(reason=f"NVML unavailable ({type(exc).__name__}: {exc})")
    try:
        handle, how = nvml_handle(nvml, torch_index)
        try:
            limit_w = nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0
        except Exception:  # noqa: BLE001 - not every board reports it; the upper check is then skipped
            limit_w = None
        reading = window(call, lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle), clock,
                         power_limit_w=limit_w, min_s=min_s)
        if reading.reason:
            reading.reason += f" [{how}]"
        return reading
    except Exception as exc:  # noqa: BLE001
        return EnergyReading(reason=f"NVML energy counter not readable ({type(exc).__name__}: {exc})")
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass

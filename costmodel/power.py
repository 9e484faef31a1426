"""Power per device: all-in kW (for the economics) and the board's own measured energy (beside it).

Three sources of all-in kW, in the order a user's figure overrides the next:
  user      --power-kw K, taken as given
  catalog   the InferenceX all-in kW per device (costmodel/data/prices.json), built from TDPs
  tdp       the spec sheet's TDP times a stated overhead factor for the device's share of host, network,
            cooling and distribution losses
The measured figure is different in kind: NVML's energy counter of the GPU board alone, sampled around a
timed region. It is reported next to the all-in figure, labelled "board", never substituted for it.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from costmodel.economics import require_positive
from costmodel.errors import CostInputError

# InferenceX's all-in kW over TDP for H100/H200 is 1.73 / 0.70 = 2.47, for B200 2.17 / 1.0 = 2.17: a
# default of 2.0 sits below both, so a TDP-derived figure never looks cheaper than the catalog's.
DEFAULT_TDP_OVERHEAD = 2.0


@dataclass(frozen=True)
class PowerFigure:
    kw: float
    kind: str  # "user" | "catalog" | "tdp" | "tco"
    source: str


def tdp_power(tdp_w: float, overhead: float = DEFAULT_TDP_OVERHEAD) -> PowerFigure:
    """All-in kW from a TDP in watts and an overhead factor (>= 1), stated in the source label."""
    tdp = require_positive("TDP (W)", tdp_w)
    factor = require_positive("power overhead factor", overhead)
    if factor < 1:
        raise CostInputError(f"power overhead factor must be >= 1 (all-in power exceeds TDP), got {overhead!r}")
    return PowerFigure(kw=tdp * factor / 1000.0, kind="tdp",
                       source=f"TDP {tdp:g} W x overhead {factor:g} (assumed all-in factor)")


@dataclass
class EnergyReading:
    """Board energy over a region; joules is None when nothing could be read, and reason says why."""

    joules: float | None = None
    seconds: float | None = None
    reason: str | None = None
    device_index: int = 0

    @property
    def watts(self) -> float | None:
        if self.joules is None or not self.seconds:
            return None
        return self.joules / self.seconds

    def joules_per_token(self, tokens: float) -> float | None:
        if self.joules is None or tokens <= 0:
            return None
        return self.joules / tokens


def _load_nvml():
    """pynvml from nvidia-ml-py, or (None, reason). Imported lazily: nothing touches a device at import."""
    try:
        return importlib.import_module("pynvml"), None
    except ImportError:
        return None, "nvidia-ml-py (pynvml) is not installed"


def step_board_joules_per_token(rows: list[dict], layers: int, batch: int, context: int,
                                backend: str) -> float | None:
    """Board J/token of a decode step from its rows' `board_joules_per_call`, composed like the step time:
    (layers x layer + final_norm + lm_head) / batch. None when any of the three has no reading.

    The run side records, for each timed row, the NVML energy over its timed region divided by the calls
    timed in it (EnergyMeter around the timing loop); this turns those into the per-token figure.
    """
    by_op = {r["op"]: r.get("board_joules_per_call") for r in rows
             if r.get("batch") == batch and r.get("context") == context and r.get("backend") == backend}
    parts = [by_op.get("layer"), by_op.get("final_norm"), by_op.get("lm_head")]
    if any(p is None or p <= 0 for p in parts):
        return None
    return (layers * parts[0] + parts[1] + parts[2]) / batch


class EnergyMeter:
    """Context manager: NVML total-energy counter (mJ since driver load, Volta+) before and after.

        with EnergyMeter(0) as meter:
            run_timed_region()
        meter.reading.joules, meter.reading.reason

    Never raises for a missing GPU, driver or library: the reading carries joules=None and a reason, so
    a CPU run says "no power reading" instead of failing. The counter advances in steps (boards differ), so
    meter regions of a second or more; GPU work is asynchronous, so synchronize before leaving the block.
    """

    def __init__(self, device_index: int = 0, clock=None):
        import time

        self.device_index = device_index
        self._clock = clock or time.perf_counter
        self.reading = EnergyReading(device_index=device_index)
        self._nvml = None
        self._handle = None
        self._start_mj = None
        self._t0 = None

    def __enter__(self) -> EnergyMeter:
        nvml, reason = _load_nvml()
        if nvml is None:
            self.reading.reason = reason
            return self
        try:
            nvml.nvmlInit()
        except Exception as e:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...: a CPU machine
            self.reading.reason = f"NVML unavailable ({type(e).__name__}: {e})"
            return self
        self._nvml = nvml
        try:
            self._handle = nvml.nvmlDeviceGetHandleByIndex(self.device_index)
            self._start_mj = nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        except Exception as e:  # NotSupported on pre-Volta boards or some virtualised GPUs
            self.reading.reason = f"NVML energy counter not readable ({type(e).__name__}: {e})"
            self._shutdown()
            return self
        self._t0 = self._clock()
        return self

    def __exit__(self, *exc) -> bool:
        if self._start_mj is not None and self._nvml is not None:
            try:
                end_mj = self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
                self.reading.seconds = self._clock() - self._t0
                if end_mj > self._start_mj:
                    self.reading.joules = (end_mj - self._start_mj) / 1000.0
                else:
                    # the counter advances in steps; a region shorter than one step reads nothing
                    self.reading.reason = f"NVML energy counter did not advance in {self.reading.seconds:.3g} s"
            except Exception as e:
                self.reading.reason = f"NVML energy counter not readable ({type(e).__name__}: {e})"
        self._shutdown()
        return False

    def _shutdown(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass
            self._nvml = None

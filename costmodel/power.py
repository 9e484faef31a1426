"""Power per device: all-in kW (for the economics) and the board's own measured energy (beside it).

Three sources of all-in kW, in the order a user's figure overrides the next:
  user      --power-kw K, taken as given
  catalog   the InferenceX all-in kW per device (costmodel/data/prices.json), built from TDPs
  tdp       the spec sheet's TDP times a stated overhead factor for the device's share of host, network,
            cooling and distribution losses
The measured figure is different in kind: NVML's energy counter of the GPU board alone, read by bench/measure/energy.py
(the reading stays in bench). It is reported next to the all-in figure, labelled "board", never substituted.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from costmodel.economics import require_positive
from costmodel.input_errors import CostInputError
from costmodel.step import MODEL_OPS, compose

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


def step_board_joules_per_token(joules_per_call: Mapping[str, float | None], layers: int,
                                batch: int) -> float | None:
    """Board J/token of a decode step from its rows' board joules per call (op -> J, the rows of this one
    step: batch, context, backend), composed like the step time: (layers x layer + final_norm + lm_head) /
    batch. None when any of the three has no reading. Where the whole model's step was timed
    (`run --full-model`), its own window over the whole step is used instead.

    The run side records, for each timed row, the NVML energy over its timed region divided by the calls
    timed in it (bench.measure.energy: a tick-aligned window of >= 1 s of repeated calls); this turns those
    into the per-token figure.
    """
    whole = joules_per_call.get("model")
    if whole is not None and whole > 0:  # --full-model: one window over the whole step, embedding to logits
        return whole / batch
    parts = [joules_per_call.get("layer"), *(joules_per_call.get(op) for op in MODEL_OPS)]
    if any(p is None or p <= 0 for p in parts):
        return None
    return compose(layers, *parts) / batch

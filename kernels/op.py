"""The unit the harness measures: one op at one shape, with its work, inputs, reference and implementations."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

Inputs = dict  # name -> tensor (or int); the op's implementations take it as keyword arguments


@dataclass(frozen=True)
class OpCase:
    """One op at one shape. `impls` maps backend name to a function of the inputs.

    `make_inputs(seed)` draws a fresh random input set on the device; `reference(inputs)` returns the
    float64 result(s); `outputs(inputs, result)` picks the tensors that implementation produced (for
    in-place ops, the slots it wrote) in the order `reference` returns them.
    """

    name: str
    kind: str
    flops: int
    bytes: int
    make_inputs: Callable[[int], Inputs]
    reference: Callable[[Inputs], tuple]
    impls: dict = field(default_factory=dict)
    outputs: Callable[[Inputs, object], tuple] = None
    shape: dict = field(default_factory=dict)
    poison: Callable[[Inputs], None] = None  # fills the slots an in-place op must write with NaN
    tolerance_scale: float = 1.0  # for compositions whose rounding errors add up (see kernels/model.py)
    # where the case's precision is not its dtype's (a layer with FP8 weights): its own tolerance, replacing
    # the dtype's table in bench/measure/gate.py (still times tolerance_scale)
    tolerance: float | None = None
    # (ok, why) for a device: where it says no, the case may be verified but must not be timed (FP8 on a CPU)
    timing_support: Callable[[object], tuple] | None = None

    def pick_outputs(self, inputs: Inputs, result) -> tuple:
        if self.outputs is not None:
            return self.outputs(inputs, result)
        return result if isinstance(result, tuple) else (result,)


def as_float64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float64)


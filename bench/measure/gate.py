"""The correctness gate: an implementation is timed only after it matches the float64 reference
on fresh random inputs (a seed the timed inputs never use)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from kernels.dtypes import SINGLE_OP_TOLERANCE, TOLERANCE
from kernels.op import OpCase

VERIFY_SEED = 1_000_003  # timed input sets use small seeds; verification never reuses them


@dataclass
class Check:
    ok: bool
    error: float  # worst ||out - ref|| / ||ref|| over the op's outputs
    tolerance: float
    reason: str = ""

    def to_dict(self) -> dict:
        return {"valid": self.ok, "rel_error": self.error, "tolerance": self.tolerance, "check": self.reason or "ok"}


def is_oom(exc: BaseException) -> bool:
    """Out of device (or host) memory: a shape to skip, not a wrong kernel."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    out64 = out.detach().to(device=ref.device, dtype=torch.float64)
    if out64.shape != ref.shape:
        raise ValueError(f"shape {tuple(out64.shape)} != reference {tuple(ref.shape)}")
    if not torch.isfinite(out64).all():
        return math.nan
    denom = ref.norm().item()
    diff = (out64 - ref).norm().item()
    return diff / denom if denom > 0 else diff


# The layer, the model and the MoE step chain several roundings: they keep the dtype's TOLERANCE; single
# ops take SINGLE_OP_TOLERANCE (kernels/dtypes.py says why).
COMPOSITE_KINDS = ("layer", "model", "moe")


def tolerance_for(case: OpCase, dtype: str) -> float:
    if case.tolerance is not None:  # the case's own precision says (FP8 weights: kernels/fp8_linear.py)
        return case.tolerance * case.tolerance_scale
    base = TOLERANCE[dtype] if case.kind in COMPOSITE_KINDS else SINGLE_OP_TOLERANCE.get(dtype, TOLERANCE[dtype])
    return base * case.tolerance_scale


def check_case(case: OpCase, backend: str, dtype: str, seed: int = VERIFY_SEED) -> Check:
    """Run `backend`'s implementation of `case` once on fresh inputs and compare with the reference."""
    tol = tolerance_for(case, dtype)
    try:
        inputs = case.make_inputs(seed)
        ref = case.reference(inputs)  # before the run: in-place ops must not change what it reads
        if case.poison is not None:
            case.poison(inputs)
        result = case.impls[backend](inputs)
        outs = case.pick_outputs(inputs, result)
    except Exception as exc:  # noqa: BLE001 - sorted below: out of memory is the caller's, not a failed check
        if is_oom(exc):
            raise
        return Check(False, math.nan, tol, f"raised {type(exc).__name__}: {exc}".splitlines()[0][:300])
    if len(outs) != len(ref):
        return Check(False, math.nan, tol, f"returned {len(outs)} outputs, reference has {len(ref)}")
    worst = 0.0
    for i, (o, r) in enumerate(zip(outs, ref)):
        try:
            err = relative_error(o, r)
        except ValueError as exc:
            return Check(False, math.nan, tol, f"output {i}: {exc}")
        if math.isnan(err):
            return Check(False, math.nan, tol, f"output {i} has NaN/inf (unwritten or overflowed elements)")
        worst = max(worst, err)
    if worst > tol:
        return Check(False, worst, tol, f"relative error {worst:.2e} above tolerance {tol:.0e}")
    return Check(True, worst, tol)

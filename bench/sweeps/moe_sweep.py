"""The MoE sweep (`tokenbench moe`), a plan for the measuring engine: a mixture-of-experts model's MoE MLP
(router + experts) for one decode step, timed per backend at each batch after its float64 check, with the
experts each timed input set actually activated beside the expected count for uniform routing; then per
backend the step of the MoE layers' MLPs (costmodel.step.moe_step)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from bench.records.schema import MoeRow, MoeStep
from bench.sweeps.engine import Case, Group
from bench.sweeps.op_sweep_setup import OpSweep
from costmodel.step import MOE_STEP_DERIVATION, decode_rates, moe_step
from kernels import moe
from kernels.dtypes import torch_dtype


class MoeSweep(OpSweep):
    """Every batch of `plan` and backend: one row each; then the batch's steps. `row_line(row)` is the line
    a measured row prints."""

    def __init__(self, plan, device, price: dict, out, settings: dict, console, row_line: Callable):
        super().__init__("moe", plan, device, price, out, settings, console)
        self.row_line = row_line

    def total(self) -> int:
        return len(self.plan.batches) * len(self.plan.backends)

    def groups(self):
        for batch in self.plan.batches:
            case = moe.moe_case(self.plan.model.moe_shape(batch), torch_dtype(self.plan.dtype),
                                self.device.torch_device, self.plan.backends)
            yield Group(f"moe b={batch}", [Case(f"moe b={batch} {b}", self._measure(case, b, batch),
                                                line=lambda rows: self.row_line(rows[0]), line_on_terminal=True)
                                           for b in self.plan.backends], key=batch)

    def _measure(self, case, backend: str, batch: int):
        def run(phase):
            from bench.sweeps.decode_sweep import measure

            plan, device = self.plan, self.device
            shape, dtype = plan.model.moe_shape(batch), torch_dtype(plan.dtype)
            # the loop baseline reads its per-expert token counts on the host: no CUDA graph can hold it
            row = measure(case, backend, device, replace(plan, cuda_graph=False) if backend == "torch" else plan,
                          batch, 0, MoeRow)
            # the routing of every input set the timer rotated through (seeds 0..n-1, as time_case draws them)
            per_set = [moe.active_experts(moe.routing_inputs(shape, dtype, device.torch_device, seed))
                       for seed in range(row.rotation_sets or 1)]
            active = sum(per_set) / len(per_set)
            row.set(expected_active_experts=moe.expected_active_experts(shape), active_experts_measured=active,
                    active_experts_per_set=per_set,
                    active_experts_note="distinct routed experts each timed input set activated; bytes_actual "
                                        "uses their mean",
                    bytes_actual=moe.min_bytes(shape, dtype.itemsize, active=active))
            if row.seconds_p50:
                row.set(gbps_actual=row.bytes_actual / row.seconds_p50 / 1e9,
                        moe_seconds_all_layers=moe_step(plan.model.moe_layers, row.seconds_p50))
            return [row]

        return run

    def derive(self, group: Group, rows: list) -> list:
        return moe_steps(self.plan.model, self.plan.dtype, group.key, rows, self.device)


def moe_steps(model, dtype: str, batch: int, rows: list, device) -> list[MoeStep]:
    """Per backend: the model's MoE MLPs over one decode step (moe_layers x moe). Attention and the dense
    layers are not in it (`tokenbench run` measures them), so no cost per token is derived from it."""
    needed = model.weight_bytes(dtype)  # every expert stays resident, active or not
    out = []
    for r in rows:
        step = MoeStep.build(batch=batch, context=0, backend=r.backend, dtype=dtype, derived=True,
                             derivation=MOE_STEP_DERIVATION, moe_layers=model.moe_layers,
                             expected_active_experts=r.expected_active_experts,
                             active_experts_measured=r.active_experts_measured,
                             decode_weight_bytes_expected=model.decode_weight_bytes(dtype, batch),
                             bytes_needed=needed, memory_bytes=device.memory_bytes,
                             fits=needed <= device.memory_bytes, cost_per_mtok=None, tokens_per_s_per_mw=None)
        if not r.seconds_p50:
            step.set(valid=False, reason=r.skipped or r.check)
        else:
            seconds = moe_step(model.moe_layers, r.seconds_p50)
            step.set(valid=True, step_seconds=seconds, **decode_rates(batch, seconds),
                     gbps=moe_step(model.moe_layers, r.bytes) / seconds / 1e9, pct_copy_bw=r.pct_copy_bw)
        out.append(step)
    return out

"""OpCases for every op of the attention blocks (kernels/mla_block.py, kernels/attention_block.py), so the
harness can verify each against its float64 reference and time it like the layer's ops: from a block's
{name: (kind, module, shape)}, one OpCase per op with an implementation per backend.
"""
from __future__ import annotations

import torch

from kernels import attention_block, mla_block, prefill_attention
from kernels.op import OpCase


def implementation(kind: str, module, backend: str):
    """The function of `backend` for an op of `kind` (its module tells decode from prefill attention)."""
    if module is prefill_attention:
        return prefill_attention.implementation(backend)
    if kind in mla_block._IMPLS:
        return mla_block.implementation(kind, backend)
    return attention_block._impl(kind, backend)


def _runner(kind: str, module, backend: str):
    def run(inputs):  # resolved at the first call, so listing cases never imports Triton
        return implementation(kind, module, backend)(**inputs)

    return run


def op_cases(shapes: dict, dtype: torch.dtype, device, backends=("torch",)) -> list[OpCase]:
    element_bytes = torch.empty((), dtype=dtype).element_size()
    cases = []
    for name, (kind, module, shape) in shapes.items():
        cases.append(OpCase(
            name=name, kind=kind,
            flops=module.flops(shape), bytes=module.min_bytes(shape, element_bytes),
            make_inputs=lambda seed, m=module, s=shape: m.make_inputs(s, dtype, device, seed),
            reference=lambda inp, m=module: m.reference(**inp),
            impls={b: _runner(kind, module, b) for b in backends},
            outputs=getattr(module, "written_slots", None),
            poison=getattr(module, "poison", None),
            shape=dict(shape.__dict__),
        ))
    return cases

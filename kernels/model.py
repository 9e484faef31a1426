"""The whole model's decode step: every layer with its own weights and KV cache, then the final norm
and the LM head. Used to check the layers x layer derivation against a measured step.

The embedding gather (B rows of the table) is left out, as in the derived step: it moves B x H elements.
"""
from __future__ import annotations

import math

import torch

from kernels import fp8_linear, gemm, norm
from kernels.backends import implementation
from kernels.dtypes import generator, randn
from kernels.layer import (
    LayerDims,
    layer_flops,
    layer_forward,
    layer_min_bytes,
    layer_reference,
    linear_module,
    make_layer_inputs,
)
from kernels.op import OpCase, as_float64


def make_model_inputs(d: LayerDims, layers: int, batch: int, context: int, dtype, device, seed: int) -> dict:
    per_layer = [make_layer_inputs(d, batch, context, dtype, device, seed * 1000 + i) for i in range(layers)]
    g = generator(seed + 31, device)
    lm_head = randn((d.vocab, d.hidden), dtype, device, g, scale=d.hidden**-0.5)
    return {
        "x": per_layer[0]["x"],
        "residual": per_layer[0]["residual"],
        "positions": per_layer[0]["positions"],
        "cos": per_layer[0]["cos"],
        "sin": per_layer[0]["sin"],
        "layers": [{k: p[k] for k in ("weights", "k_cache", "v_cache")} for p in per_layer],
        "final_norm": (1.0 + randn((d.hidden,), torch.float32, device, g, scale=0.1)).to(dtype),
        "lm_head": fp8_linear.quantize_weight(lm_head) if d.weights == "fp8" else lm_head,
    }


def model_forward(d: LayerDims, backends: dict, x, residual, positions, cos, sin, layers, final_norm, lm_head):
    """Logits [B, vocab] for one decode step."""
    for layer in layers:
        x, residual = layer_forward(d, backends, layer["weights"], x, residual, layer["k_cache"],
                                    layer["v_cache"], positions, cos, sin)
    h, _ = implementation("norm", backends["norm"])(x=x, residual=residual, w=final_norm, eps=d.norm_eps)
    return implementation("gemm", backends["gemm"])(x=h, w=lm_head, b=None)


def model_reference(d: LayerDims, x, residual, positions, cos, sin, layers, final_norm, lm_head) -> tuple:
    """Float64, one layer at a time so only one layer's weights are ever held in float64."""
    x, residual = as_float64(x), as_float64(residual)
    for layer in layers:
        x, residual = layer_reference(d, layer["weights"], x, residual, layer["k_cache"], layer["v_cache"],
                                      positions, cos, sin)
    h, _ = norm.reference(x=x, residual=residual, w=as_float64(final_norm), eps=d.norm_eps)
    return linear_module(d).reference(x=h, w=lm_head)


def model_bytes(d: LayerDims, layers: int, batch: int, context: int, element_bytes: int) -> int:
    final = (2 * batch * d.hidden + d.hidden) * element_bytes
    head = linear_module(d).min_bytes(gemm.GemmShape(batch, d.hidden, d.vocab), element_bytes)
    return layers * layer_min_bytes(d, batch, context, element_bytes) + final + head


def _model_runner(d: LayerDims, chosen: dict):
    return lambda inp: model_forward(d, chosen, **inp)


def model_case(d: LayerDims, layers: int, batch: int, context: int, dtype, device, backends) -> OpCase:
    from kernels.backends import parse_backend

    element_bytes = torch.empty((), dtype=dtype).element_size()
    flops = layers * layer_flops(d, batch, context) + norm.flops(norm.NormShape(batch, d.hidden)) \
        + gemm.flops(gemm.GemmShape(batch, d.hidden, d.vocab))
    impls = {spec: _model_runner(d, parse_backend(spec)) for spec in backends}
    return OpCase(
        name="model", kind="model", flops=flops, bytes=model_bytes(d, layers, batch, context, element_bytes),
        make_inputs=lambda seed: make_model_inputs(d, layers, batch, context, dtype, device, seed),
        reference=lambda inp: model_reference(d, **inp), impls=impls,
        shape={"batch": batch, "context": context, "layers": layers},
        # Each layer's rounding error is independent, so they add in quadrature: in bf16 the logits'
        # error measured 4.6e-3 after 1 layer, 8.1e-3 after 4, 1.5e-2 after 16, 2.2e-2 after 32.
        tolerance_scale=math.sqrt(layers),
        **fp8_linear.case_fields(d.weights),
    )

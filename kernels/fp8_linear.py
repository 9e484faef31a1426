"""FP8 weights inside the layer: the `gemm` op y = x @ W^T (+ b) with W held as float8_e4m3fn + float32 scales.

A layer built with `LayerDims(weights="fp8")` holds every projection (qkv, o, gate_up, down) and the LM head
as an `Fp8Weight`, quantized ONCE when the inputs are made (never in the timed call). The activations stay
in the layer's dtype (bf16) between ops; each GEMM quantizes its input per step, inside the timed call, as a
serving engine does (W8A8, dynamic activation scales):
  x_q, sx = quantize(x)            # per token [M, 1] (with per-channel weights) or per tensor []
  y       = (x_q @ W_q^T) * sx * sw (+ b)   in x's dtype, fp32 accumulation
Scaling: per output channel for W and per token for x ("rowwise" torch._scaled_mm) where the device
supports it (compute capability >= 9.0, and torch's CPU emulation), else one scale each.
The gemm implementations (kernels/gemm.py torch_linear, kernels/triton/gemm.py triton_linear) take W as a
tensor or an Fp8Weight and dispatch on its type, so the layer, prefill, mixed and model forwards run
unchanged: `torch` -> kernels/fp8.py linear_torch (torch._scaled_mm, cuBLASLt FP8 on a GPU), `triton` ->
linear_triton (the Triton FP8 GEMM, kernels/triton/fp8.py). Both are W8A8 with the same activation
quantization, so one reference serves both. Why a LayerDims field and not a backend (`torch/gemm=fp8`): the
weight format changes the case's inputs, reference and bytes, which an OpCase shares among its backends.
Per-step activation quantization is kernels/fp8.py quantize (about six small torch kernels per GEMM, not a
fused quantize kernel): at batch 1 on a GPU it adds launch-bound time a serving engine's fused kernel avoids.

This module has the interface of kernels/gemm.py (flops, min_bytes, make_inputs, reference, with a
GemmShape), so a layer's op table swaps it in for gemm (kernels/layer.py `linear_module`).
The reference is the float64 product of the dequantized weights and x quantized by the same function as
the implementation (kernels/fp8.py does the same for the lone GEMM): it isolates arithmetic from the
intended quantization error.
"""
from __future__ import annotations

import torch

from kernels import fp8, gemm
from kernels.fp8 import Fp8Weight
from kernels.gemm import GemmShape
from kernels.op import Inputs, as_float64

WEIGHT_FORMATS = ("activation", "fp8")  # LayerDims.weights: stored in the activation dtype, or FP8 e4m3

# ||out - ref|| / ||ref|| allowed for a LAYER (decode, prefill, mixed; the model case scales it by sqrt(layers))
# with FP8 weights, any activation dtype. Measured here (CPU, torch 2.13, bf16 activations): decode, prefill
# and mixed layers at hidden 256-1024 land at 4.1-5.3e-2 (median 4.6e-2) on y, ~5e-3 on r2; the smallest
# config (hidden 64, batch 1: 64 elements) spreads wider, median 3.9e-2, 9.3e-2 worst of 40 draws.
# That is not arithmetic: with fp32 activations the same layers agree to 0-2e-3. It is e4m3's coarse grid
# (3 mantissa bits, steps of 6-12%) amplifying bf16 rounding: the reference quantizes its own float64
# activations, which differ from the implementation's bf16 ones by ~2^-9; an element that straddles an e4m3
# rounding boundary lands one FP8 step away (rms sqrt(delta x step), ~1%), the next GEMM's input then
# differs by that much and straddles more, and the difference saturates near e4m3's own quantization error
# (~2.5% a quantization) within a layer. 0.12 is 1.3x the worst draw measured. It fails every weight scale
# 10% off (measured 0.34-0.39), missing or inverted scales, transposed weights, NaN; it cannot resolve a
# scale 1% off (0.046-0.072, overlapping): the per-op FP8 GEMM cases can (identical quantization on both
# sides, single-op tolerance 6e-3), and so can the layer with fp32 activations (tests/test_fp8_layer.py).
LAYER_TOLERANCE = 0.12


# (ok, why) for a device: an op module that defines it is timed only where it says ok (OpCase.timing_support);
# FP8 GEMMs need FP8 tensor cores, elsewhere they are verified (torch's CPU emulation) but not timed
timing_support = fp8.support


def per_channel_supported() -> bool:
    """Rowwise (per-channel W, per-token x) scales where torch._scaled_mm has them, else per tensor."""
    return fp8.scaling_support("channel")[0]


def quantize_weight(w: torch.Tensor, per_channel: bool | None = None) -> Fp8Weight:
    """Offline quantization of a [N, K] weight (run when inputs are made, never timed)."""
    per_channel = per_channel_supported() if per_channel is None else per_channel
    q, scale = fp8.quantize(w, per_row=per_channel)
    return Fp8Weight(q, scale)


def scale_bytes(n: int) -> int:
    return 4 * n if per_channel_supported() else 4


# --- the gemm interface (kernels/gemm.py), with W in FP8


def flops(s: GemmShape) -> int:
    return gemm.flops(s)


def min_bytes(s: GemmShape, element_bytes: int) -> int:
    # read W (NK bytes) and its scales, x (MK) and b (N); write y (MN). The activation's scales are made and
    # used inside the call (a fused quantize-GEMM never writes them), so they are not counted.
    act = s.m * s.k + s.m * s.n + (s.n if s.bias else 0)
    return s.n * s.k + scale_bytes(s.n) + act * element_bytes


def make_inputs(s: GemmShape, dtype: torch.dtype, device, seed: int) -> Inputs:
    inputs = gemm.make_inputs(s, dtype, device, seed)  # the same draws as the bf16 op, then W quantized
    inputs["w"] = quantize_weight(inputs["w"])
    return inputs


def reference(x, w: Fp8Weight, b=None, **_) -> tuple:
    """float64: x quantized as the implementation quantizes it, times the dequantized W (+ b)."""
    x_q, x_scale = fp8.quantize_activation(x, per_token=w.per_channel)
    y = fp8.dequantize64(x_q, x_scale) @ w.dequantize64().T
    return (y if b is None else y + as_float64(b),)


# --- what a layer (kernels/layer.py, kernels/prefill_layer.py, kernels/model.py) asks of this module


def weights64(weights: dict) -> dict:
    """float64 copies for a reference; FP8 weights stay as they are (reference() dequantizes them and
    quantizes its x the way the implementation does)."""
    return {k: v if v is None or isinstance(v, Fp8Weight) else as_float64(v) for k, v in weights.items()}


def case_fields(weights: str) -> dict:
    """A layer or model case's own tolerance and timing condition when its weights are FP8, else none."""
    if weights != "fp8":
        return {}
    return {"tolerance": LAYER_TOLERANCE, "timing_support": fp8.support}

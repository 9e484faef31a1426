"""FP8 (e4m3) decode GEMMs: y = (x_q * sx) @ (W_q * sw)^T, bf16 out, fp32 accumulation.

Weights are quantized once, offline (not timed): W_q = round_e4m3(W / sw) with sw = amax / 448 per tensor,
or per output channel (one scale per row of W [N, K]). Activations are quantized in the timed call, as a
serving engine does each step: per tensor (one amax of x) or per token (one scale per row of x, paired
with per-channel weights: "rowwise" scaling in torch._scaled_mm). Or not at all: `triton-w8a16` keeps x in
bf16 and widens the FP8 weight tiles in registers (weight-only FP8, no quantization kernel per step).
At decode the weight read dominates, so 1-byte weights halve the bytes of a bf16 GEMM at batch 1:
  # read W (NK bytes), x (2MK), scales; write y (2MN)
Hardware: FP8 tensor cores from Ada / Hopper (compute capability 8.9; rowwise scaling needs 9.0) and
Blackwell. Elsewhere `support()` says why the rows are skipped. FP4 (Blackwell's NVFP4/MXFP4) has no
stable torch entry point in the torch versions this suite targets, so it is reported as skipped.

The reference is the float64 product of the dequantized operands, x quantized by the same function the
implementation uses: the check isolates the GEMM's arithmetic from the (intended) quantization error,
which `quantization_error` reports on its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from kernels.dtypes import generator, randn
from kernels.op import Inputs, OpCase, as_float64

E4M3_MAX = 448.0  # largest finite float8_e4m3fn
SCALINGS = ("tensor", "channel")
# Smallest amax used for a scale: an all-zero row would otherwise divide by zero.
AMAX_FLOOR = 1e-12


@dataclass(frozen=True)
class Fp8GemmShape:
    m: int
    k: int
    n: int
    scaling: str = "tensor"  # "tensor": one scale each; "channel": per output channel W, per token x


def flops(s: Fp8GemmShape) -> int:
    return 2 * s.m * s.k * s.n


def min_bytes(s: Fp8GemmShape) -> int:
    scales = 4 * (s.n + s.m) if s.scaling == "channel" else 8
    return s.n * s.k * 1 + s.m * s.k * 2 + s.m * s.n * 2 + scales


def fp8_dtype():
    return getattr(torch, "float8_e4m3fn", None)


def support(device) -> tuple[bool, str]:
    """(True, "") where torch._scaled_mm runs on FP8 tensor cores, so FP8 rows can be TIMED; else (False, why).
    Where this says no, verify_support() may still say the results can be checked (a CPU)."""
    if fp8_dtype() is None:
        return False, f"torch {torch.__version__} has no float8_e4m3fn"
    if getattr(device, "kind", str(device)) != "cuda" or not torch.cuda.is_available():
        return False, ("no FP8 hardware: FP8 GEMMs need an NVIDIA GPU of compute capability >= 8.9 (Ada, "
                       "Hopper, Blackwell)")
    major, minor = torch.cuda.get_device_capability()
    if (major, minor) < (8, 9):
        return False, f"compute capability {major}.{minor} < 8.9: no FP8 tensor cores"
    return True, ""


def verify_support(device) -> tuple[bool, str]:
    """(True, "") where FP8 results can at least be CHECKED: torch._scaled_mm runs here, on FP8 hardware or
    through torch's CPU emulation (torch >= 2.5 or so), which computes but says nothing about speed. So a CPU
    can verify an FP8 layer (tests, `verify`) while support() still refuses to time it."""
    if fp8_dtype() is None:
        return False, f"torch {torch.__version__} has no float8_e4m3fn"
    if getattr(device, "kind", str(device)) == "cuda":
        return support(device)
    try:
        a = torch.ones(16, 16).to(fp8_dtype())
        one = torch.tensor(1.0)
        torch._scaled_mm(a, a.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
    except (RuntimeError, NotImplementedError, AttributeError) as exc:
        return False, f"torch {torch.__version__} cannot run FP8 GEMMs on this CPU ({str(exc).splitlines()[0][:80]})"
    return True, ""


def scaling_support(scaling: str) -> tuple[bool, str]:
    if scaling == "channel" and torch.cuda.is_available() and torch.cuda.get_device_capability() < (9, 0):
        return False, "rowwise (per-channel) scaled_mm needs compute capability >= 9.0"
    return True, ""


def fp4_support(device) -> tuple[bool, str]:
    return False, ("FP4 GEMMs are not measured: torch has no stable FP4 matmul entry point in the versions "
                   "tokenbench targets (torch 2.11-2.13)")


def quantize(t: torch.Tensor, per_row: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(t_q float8_e4m3fn, scale float32) with t ~ t_q * scale; scale [rows, 1] when per_row else []."""
    t32 = t.float()
    amax = t32.abs().amax(dim=-1, keepdim=True) if per_row else t32.abs().amax()
    scale = amax.clamp(min=AMAX_FLOOR) / E4M3_MAX
    q = (t32 / scale).clamp(-E4M3_MAX, E4M3_MAX).to(fp8_dtype())
    return q, scale


def dequantize64(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return as_float64(q) * as_float64(scale)


class Fp8Weight(NamedTuple):
    """A projection's weight as e4m3 values and float32 scales: W ~ q * scale.

    A NamedTuple so that everything that walks input sets (byte counts, rotation) sees its tensors."""

    q: torch.Tensor  # [N, K] float8_e4m3fn (nn.Linear layout)
    scale: torch.Tensor  # [N, 1] float32 per output channel, or [] per tensor

    @property
    def per_channel(self) -> bool:
        return self.scale.dim() > 0

    @property
    def shape(self) -> torch.Size:
        return self.q.shape

    def dequantize64(self) -> torch.Tensor:
        return dequantize64(self.q, self.scale)


def quantization_error(t: torch.Tensor, per_row: bool) -> float:
    """||deq(q(t)) - t|| / ||t||: e4m3 keeps 3 mantissa bits, so about 2-3% for Gaussian data."""
    q, s = quantize(t, per_row)
    ref = as_float64(t)
    return ((dequantize64(q, s) - ref).norm() / ref.norm()).item()


def make_inputs(s: Fp8GemmShape, device, seed: int, x_dtype=torch.bfloat16) -> Inputs:
    g = generator(seed, device)
    x = randn((s.m, s.k), x_dtype, device, g)
    w = randn((s.n, s.k), torch.float32, device, g, scale=s.k**-0.5)
    w_q, w_scale = quantize(w, per_row=s.scaling == "channel")  # offline: [N, K] fp8, [N, 1] or []
    return {"x": x, "w_q": w_q, "w_scale": w_scale, "per_token": s.scaling == "channel"}


def quantize_activation(x: torch.Tensor, per_token: bool):
    return quantize(x, per_row=per_token)


def reference(x, w_q, w_scale, per_token, **_) -> tuple:
    x_q, x_scale = quantize_activation(x, per_token)
    return (dequantize64(x_q, x_scale) @ dequantize64(w_q, w_scale).T,)


def reference_weight_only(x, w_q, w_scale, **_) -> tuple:
    """W8A16: x as it is, against the dequantized weights."""
    return (as_float64(x) @ dequantize64(w_q, w_scale).T,)


def torch_scaled_mm(x, w_q, w_scale, per_token, **_) -> torch.Tensor:
    """Quantize x, then torch._scaled_mm (cuBLASLt FP8 on GPU). W_q [N, K] row-major is the column-major
    [K, N] operand it wants; per-tensor scales are 0-d float32, rowwise ones [M, 1] and [1, N]."""
    x_q, x_scale = quantize_activation(x, per_token)
    b_scale = w_scale.view(1, -1) if per_token else w_scale
    out = torch._scaled_mm(x_q, w_q.t(), scale_a=x_scale, scale_b=b_scale, out_dtype=torch.bfloat16)
    return out[0] if isinstance(out, tuple) else out  # torch < 2.5 returned (out, amax)


def triton_fp8(x, w_q, w_scale, per_token, **_) -> torch.Tensor:
    from kernels.triton.fp8 import triton_fp8_linear

    x_q, x_scale = quantize_activation(x, per_token)
    return triton_fp8_linear(x_q, x_scale, w_q, w_scale)


def triton_w8a16(x, w_q, w_scale, **_) -> torch.Tensor:
    from kernels.triton.fp8 import triton_fp8_linear

    return triton_fp8_linear(x, None, w_q, w_scale)


# --- FP8 weights inside a layer (kernels/fp8_linear.py): the gemm op with W an Fp8Weight


def linear_torch(x, w: Fp8Weight, b=None) -> torch.Tensor:
    """Quantize x (per token with per-channel W, else per tensor), then torch._scaled_mm into x's dtype; the
    bias is added after, in x's dtype, so one call form serves both scalings on every torch version."""
    x_q, x_scale = quantize_activation(x, per_token=w.per_channel)
    rowwise_gpu = w.per_channel and x.is_cuda
    # CUDA's rowwise scaled_mm writes bf16 only: another activation dtype is converted after
    out_dtype = torch.bfloat16 if rowwise_gpu else x.dtype
    y = torch._scaled_mm(x_q, w.q.t(), scale_a=x_scale, scale_b=w.scale.view(1, -1) if w.per_channel else w.scale,
                         out_dtype=out_dtype)
    y = y[0] if isinstance(y, tuple) else y  # torch < 2.5 returned (out, amax)
    y = y if y.dtype == x.dtype else y.to(x.dtype)
    return y if b is None else y + b


def linear_triton(x, w: Fp8Weight, b=None) -> torch.Tensor:
    """Quantize x, then the Triton FP8 GEMM (FP8 tensor cores from sm_89) into x's dtype."""
    from kernels.triton.fp8 import triton_fp8_linear

    x_q, x_scale = quantize_activation(x, per_token=w.per_channel)
    y = triton_fp8_linear(x_q, x_scale, w.q, w.scale, out_dtype=x.dtype)
    return y if b is None else y + b


IMPLS = {"torch": torch_scaled_mm, "triton": triton_fp8, "triton-w8a16": triton_w8a16}
WEIGHT_ONLY = ("triton-w8a16",)  # FP8 weights, bf16 activations: no per-step quantization


def _bind(fn):
    def run(inputs):
        return fn(**inputs)

    return run


def fp8_case(s: Fp8GemmShape, device, backends=("torch",), name: str = "fp8_gemm",
             x_dtype=torch.bfloat16) -> OpCase:
    """W8A8 backends (x quantized per step) or W8A16 ones (x as it is): one kind per case, since the
    reference differs. `x_dtype` float16 lets the interpreter tests run (its bf16 dot is wrong)."""
    if s.scaling not in SCALINGS:
        raise ValueError(f"unknown scaling {s.scaling!r}; choose one of: {', '.join(SCALINGS)}")
    weight_only = {b in WEIGHT_ONLY for b in backends}
    if len(weight_only) != 1:
        raise ValueError("W8A16 and W8A8 backends check against different references: use separate cases")
    ref = reference_weight_only if weight_only.pop() else reference
    return OpCase(
        name=name, kind="fp8_gemm", flops=flops(s), bytes=min_bytes(s),
        make_inputs=lambda seed: make_inputs(s, device, seed, x_dtype),
        reference=lambda inp: ref(**inp),
        impls={b: _bind(IMPLS[b]) for b in backends},
        shape=dict(s.__dict__),
    )

"""The MoE MLP of kernels/moe.py with its experts stored at the precisions MoE models are served in
(kernels/expert_weights.py): FP8 with 128x128 block scales (DeepSeek-V3/R1) or MXFP4 (gpt-oss).

Same op as kernels/moe.py (router top-k with Mixtral's softmax over the selected logits, SwiGLU experts,
gate rows first, shared experts after the routed ones); the router stays in the activation dtype. Only the
expert weights change, quantized once when the inputs are made (never in the timed call):
  fp8-block (W8A8, as DeepSeek, vLLM and SGLang run it): x is quantized per token and 128-wide K group in the
    timed call; each 128-wide K step multiplies e4m3 x e4m3 and scales the partial sum by sx[t] * sw[block];
    the SwiGLU output is held in the activation dtype (the engines' intermediate buffer), then quantized the
    same way for the down projection.
  mxfp4 (weight-only, W4A16, as gpt-oss runs on Hopper): E2M1 codes and E8M0 scales widened to the
    activation dtype in registers (exact), activations as they are. gpt-oss's own experts interleave gate
    and up rows, add biases and clamp the SwiGLU; the format is what is measured here, so the op stays
    kernels/moe.py's.
Backends: `torch` (fp8-block only) calls torch._scaled_mm with blockwise scales (1x128 activations,
128x128 weights: cuBLASLt on sm_90 from CUDA 12.9) once per active expert and projection, the library
call that exists; torch has no grouped block-scaled or MXFP4 weight-only GEMM (torch._scaled_grouped_mm
takes rowwise or MX scales only, and its MXFP4 path quantizes the activations too, on sm_100), so
`torch-dequant` is the labelled baseline of dequantize-then-matmul: the active experts' weights are
dequantized in the timed call (fp8-block: to float32, with the quantized activations dequantized too;
mxfp4: to the activation dtype, exact) and multiplied by F.linear; `triton` is the grouped expert GEMM of
kernels/triton/moe_lowprec.py. A native FP4 path (sm_100's tcgen05 block-scaled MMA with MXFP4 operands)
is not written: it needs FP4 activations, which is not gpt-oss's served Hopper recipe (TODO for sm_100).

Work: FLOPs are kernels/moe.py's (the GEMM arithmetic; scaling and decoding are not counted). Bytes count
the weights as stored (1 byte or half a byte an element) plus their scales, for the active experts, and
the router, x and y in the activation dtype; per-step activation scales are made and used inside the call
(a fused kernel never writes them), so they are not counted.

The reference is float64 on the dequantized weights (exact): fp8-block quantizes x with the same function
as the implementations and quantizes the SwiGLU output after rounding it to the activation dtype, as every
implementation holds it; the check then isolates the arithmetic from the intended quantization error
(kernels/expert_weights.py quantization_error reports that on its own).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels import expert_weights as ew
from kernels import fp8, moe
from kernels.dtypes import TOLERANCE, TORCH_DTYPES, generator, randn
from kernels.moe import MoeShape
from kernels.op import Inputs, OpCase, as_float64

WEIGHT_FORMATS = ew.WEIGHT_FORMATS
# ||out - ref|| / ||ref|| floor for fp8-block, whatever the activation dtype. The SwiGLU output is quantized
# to e4m3 (steps of 6-12%) inside the op: where the implementation's float32 accumulation and the reference's
# float64 land on either side of an e4m3 rounding boundary (a fraction p ~ 1e-5 of elements: relative
# accumulation error ~1e-6 over a relative step of 1/8) that element is one step off, and the output's
# relative error approaches ~0.125 sqrt(p) ~ 4e-4 at real sizes: measured here (CPU, fp32 activations,
# hidden 2048, expert FFN 1024, 32 tokens) 1.1e-6 and 1.2e-4 on two seeds, over fp32's 1e-4 on the second.
# bf16/fp16 keep their own tolerance (1e-2, 3e-3); a weight scale 1% off is still 1e-2 off and fails fp32.
FP8_BLOCK_TOLERANCE = 2e-3
EXPERT_SEED_OFFSET = 7_919  # seeds the experts' generator, apart from the routing's (same seed)


def flops(s: MoeShape) -> int:
    return moe.flops(s)


def expert_bytes(s: MoeShape, fmt: str) -> int:
    """One expert's stored weights and scales: gate_up [2F, H] and down [H, F]."""
    return ew.stored_bytes(2 * s.ffn, s.hidden, fmt) + ew.stored_bytes(s.hidden, s.ffn, fmt)


def min_bytes(s: MoeShape, fmt: str, element_bytes: int, active: float | None = None) -> int:
    """Each active expert's stored weights and scales once, the router weights, x in and y out (activation
    dtype). `active` routed experts (default: the expected count for uniform routing)."""
    active = moe.expected_active_experts(s) if active is None else active
    act = s.experts * s.hidden + 2 * s.tokens * s.hidden
    return round((active + s.shared) * expert_bytes(s, fmt) + act * element_bytes)


def _draw_experts(count: int, rows: int, cols: int, scale: float, fmt: str, device, g):
    """`count` [rows, cols] experts drawn in float32 one at a time and quantized into preallocated stacks
    (a DeepSeek-V3 layer's 256 experts would take 45 GB as one float32 draw)."""
    def one():
        return ew.quantize(randn((rows, cols), torch.float32, device, g, scale=scale), fmt)

    first = one()
    stacks = [torch.empty((count, *t.shape), dtype=t.dtype, device=t.device) for t in first]
    for e in range(count):
        for stack, part in zip(stacks, first if e == 0 else one()):
            stack[e] = part
    return type(first)(*stacks)


def make_inputs(s: MoeShape, fmt: str, dtype: torch.dtype, device, seed: int) -> Inputs:
    """x and the router as kernels/moe.py draws them for this seed (so moe.routing_inputs repeats the
    routing without the experts), then the experts from a generator of their own, quantized as drawn."""
    inputs = moe.routing_inputs(s, dtype, device, seed)
    g = generator(EXPERT_SEED_OFFSET + seed, device)
    e = s.total_experts
    inputs["w_gate_up"] = _draw_experts(e, 2 * s.ffn, s.hidden, s.hidden**-0.5, fmt, device, g)
    inputs["w_down"] = _draw_experts(e, s.hidden, s.ffn, s.ffn**-0.5, fmt, device, g)
    return inputs


def _shared_count(router_w, w_gate_up) -> int:
    return w_gate_up.shape[0] - router_w.shape[0]


def _is_fp8(w) -> bool:
    return isinstance(w, ew.Fp8BlockWeight)


def requantize_act(act64: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The reference's down-projection input for fp8-block: the float64 SwiGLU output rounded to the
    activation dtype (where every implementation holds it), quantized per token group, dequantized."""
    q, s = ew.quantize_groups(act64.to(dtype))
    return ew.dequantize_groups(q, s)


def reference(x, router_w, w_gate_up, w_down, top_k, **_) -> tuple:
    """float64 on the dequantized experts; the routing as kernels/moe.py's reference makes it."""
    fp8_w = _is_fp8(w_gate_up)
    x64 = as_float64(x)
    if fp8_w:
        x_in = ew.dequantize_groups(*ew.quantize_groups(x))
    else:
        x_in = x64
    logits = x64 @ as_float64(router_w).T
    top, ids = torch.topk(logits, top_k, dim=-1)
    p = torch.softmax(top, dim=-1)
    f = w_gate_up.shape[1] // 2
    e_routed, shared = router_w.shape[0], _shared_count(router_w, w_gate_up)
    y = torch.zeros_like(x64)
    for e in torch.unique(ids).tolist() + list(range(e_routed, e_routed + shared)):
        if e < e_routed:
            tok, slot = torch.nonzero(ids == e, as_tuple=True)
            weight = p[tok, slot]
        else:
            tok = torch.arange(x64.shape[0], device=x.device)
            weight = torch.ones(x64.shape[0], dtype=torch.float64, device=x.device)
        gu = x_in[tok] @ w_gate_up.dequantize64(e).T
        m = gu[:, :f] * torch.sigmoid(gu[:, :f]) * gu[:, f:]
        if fp8_w:
            m = requantize_act(m, x.dtype)
        y.index_add_(0, tok, weight[:, None] * (m @ w_down.dequantize64(e).T))
    return (y,)


def _expert_loop(x, router_w, w_gate_up, top_k, expert_fn) -> torch.Tensor:
    """Route, then `expert_fn(e, rows of x it gets)` -> [n, H] float32 per active expert, combined by the
    routing weights (kernels/moe.py torch_moe_loop's order; the token lists cost a host sync)."""
    ids, p = moe.route(x, router_w, top_k, _shared_count(router_w, w_gate_up))
    y = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    flat = ids.flatten()
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=w_gate_up.shape[0]).tolist()  # host sync
    start = 0
    for e, n in enumerate(counts):
        if n == 0:
            continue
        pairs = order[start:start + n]
        start += n
        tok = pairs // ids.shape[1]
        y.index_add_(0, tok, expert_fn(e, tok) * p.flatten()[pairs, None])
    return y.to(x.dtype)


def _k_blocks_aligned(scale: torch.Tensor) -> torch.Tensor:
    """A [rows, kb] scale tensor whose rows start 16 bytes apart (kb padded to a multiple of 4 in storage,
    sliced back), as cuBLASLt's 128x128 scale operand asks ("near-inner-dim-major with 16-byte aligned
    strides"); a no-op for DeepSeek-V3's and Mixtral's widths (kb a multiple of 4)."""
    rows, kb = scale.shape
    if kb % 4 == 0 and scale.is_contiguous() and scale.data_ptr() % 16 == 0:
        return scale
    storage = torch.zeros((rows, -(-kb // 4) * 4), dtype=scale.dtype, device=scale.device)
    storage[:, :kb] = scale
    return storage[:, :kb]


def _scaled_mm_blockwise(a_q, a_s, w_q, w_s) -> torch.Tensor:
    """a_q [M, K] e4m3 with 1x128 scales [M, K/128], w_q [N, K] e4m3 with 128x128 scales [N/128, K/128]:
    torch._scaled_mm's blockwise form, in float32. Its layouts (torch's test_matmul_cuda.py): the 1x128
    scales outer-dim-major (stride (1, M)); the weight operand column-major [K, N] with scales [K/128, N/128]
    (the stored ones transposed)."""
    out = torch._scaled_mm(a_q, w_q.t(), scale_a=a_s.t().contiguous().t(), scale_b=_k_blocks_aligned(w_s).t(),
                           out_dtype=torch.float32)
    return out[0] if isinstance(out, tuple) else out


def torch_fp8_scaled_mm(x, router_w, w_gate_up: ew.Fp8BlockWeight, w_down: ew.Fp8BlockWeight, top_k, **_):
    """Quantize x per token group, then per active expert: blockwise _scaled_mm gate_up, SwiGLU into x's
    dtype, quantize, blockwise _scaled_mm down."""
    x_q, x_s = ew.quantize_groups(x)
    f = w_gate_up.shape[1] // 2

    def expert(e, tok):
        gu = _scaled_mm_blockwise(x_q[tok], x_s[tok], w_gate_up.q[e], w_gate_up.scale_inv[e])
        m = (F.silu(gu[:, :f]) * gu[:, f:]).to(x.dtype)
        m_q, m_s = ew.quantize_groups(m)
        return _scaled_mm_blockwise(m_q, m_s, w_down.q[e], w_down.scale_inv[e])

    return _expert_loop(x, router_w, w_gate_up, top_k, expert)


def torch_dequant(x, router_w, w_gate_up, w_down, top_k, **_):
    """Dequantize-then-matmul, the baseline where torch has no grouped kernel for the format: each active
    expert's weights dequantized in the call. fp8-block: to float32, activations quantized per token group
    and dequantized likewise (W8A8 emulated in float32); mxfp4: to x's dtype (exact), x as it is."""
    f = w_gate_up.shape[1] // 2
    if _is_fp8(w_gate_up):
        x_q, x_s = ew.quantize_groups(x)
        x32 = ew.dequantize_groups(x_q, x_s, torch.float32)

        def expert(e, tok):
            gu = x32[tok] @ w_gate_up.dequantize(torch.float32, e).T
            m = (F.silu(gu[:, :f]) * gu[:, f:]).to(x.dtype)
            m32 = ew.dequantize_groups(*ew.quantize_groups(m), torch.float32)
            return m32 @ w_down.dequantize(torch.float32, e).T
    else:
        def expert(e, tok):
            gu = F.linear(x[tok], w_gate_up.dequantize(x.dtype, e))
            m = F.silu(gu[:, :f]) * gu[:, f:]
            return F.linear(m, w_down.dequantize(x.dtype, e)).float()

    return _expert_loop(x, router_w, w_gate_up, top_k, expert)


def triton_moe_lowprec(x, router_w, w_gate_up, w_down, top_k, **_) -> torch.Tensor:
    from kernels.triton.moe_lowprec import triton_moe_fp8_block, triton_moe_mxfp4  # only when this runs

    ids, p = moe.route(x, router_w, top_k, _shared_count(router_w, w_gate_up))
    run = triton_moe_fp8_block if _is_fp8(w_gate_up) else triton_moe_mxfp4
    return run(x, ids, p, w_gate_up, w_down)


IMPLS = {
    "fp8-block": {"torch": torch_fp8_scaled_mm, "torch-dequant": torch_dequant, "triton": triton_moe_lowprec},
    "mxfp4": {"torch-dequant": torch_dequant, "triton": triton_moe_lowprec},
}
NO_LIBRARY_CALL = {"mxfp4": "torch has no weight-only MXFP4 GEMM (its MXFP4 _scaled_mm quantizes the "
                            "activations too, on sm_100): use torch-dequant (dequantize-then-matmul) or "
                            "triton"}


def blockwise_scaled_mm_support(device) -> tuple[bool, str]:
    """(True, "") where torch._scaled_mm takes 1x128 x 128x128 block scales on `device` (tried once on a
    small product: cuBLASLt has them on sm_90 from CUDA 12.9; no CPU build of torch 2.13 has them)."""
    ok, why = fp8.support(device)
    if not ok:
        return False, why
    dev = getattr(device, "torch_device", device)
    try:
        a = torch.ones(16, 512, device=dev).to(fp8.fp8_dtype())
        w = torch.ones(256, 512, device=dev).to(fp8.fp8_dtype())
        _scaled_mm_blockwise(a, torch.ones(16, 4, device=dev), w, torch.ones(2, 4, device=dev))
    except (RuntimeError, ValueError, NotImplementedError) as exc:
        return False, (f"torch {torch.__version__} has no blockwise torch._scaled_mm here "
                       f"({str(exc).splitlines()[0][:100]})")
    return True, ""


def timing_support(fmt: str):
    """fp8-block is timed only on FP8 hardware (elsewhere it is verified in emulation, its speed meaningless);
    mxfp4 weight-only runs on anything that multiplies in the activation dtype."""
    return fp8.support if fmt == "fp8-block" else None


def _bind(fn):
    def run(inputs):
        return fn(**inputs)

    return run


def moe_case(s: MoeShape, fmt: str, dtype: torch.dtype, device, backends=("torch-dequant",)) -> OpCase:
    if fmt not in IMPLS:
        raise ValueError(f"unknown expert weight format {fmt!r}; choose from {', '.join(IMPLS)}")
    unknown = [b for b in backends if b not in IMPLS[fmt]]
    if unknown:
        raise ValueError(f"unknown {fmt} MoE backend {unknown[0]!r}; choose from {', '.join(IMPLS[fmt])}")
    element_bytes = torch.empty((), dtype=dtype).element_size()
    dtype_name = {v: k for k, v in TORCH_DTYPES.items()}[dtype]
    return OpCase(
        name="moe", kind="moe", flops=flops(s), bytes=min_bytes(s, fmt, element_bytes),
        make_inputs=lambda seed: make_inputs(s, fmt, dtype, device, seed),
        reference=lambda inp: reference(**inp),
        impls={b: _bind(IMPLS[fmt][b]) for b in backends},
        shape={**s.__dict__, "expert_weights": fmt,
               "expected_active_experts": moe.expected_active_experts(s)},
        timing_support=timing_support(fmt),
        tolerance=max(TOLERANCE[dtype_name], FP8_BLOCK_TOLERANCE) if fmt == "fp8-block" else None,
    )

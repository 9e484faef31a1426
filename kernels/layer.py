"""One pre-norm Llama-style decoder layer for a single decode step, composed from the op files.

Data flow for batch B, hidden H, one new token per sequence, KV cache of `context` entries:
  h, r   = rmsnorm(x + residual)                      # attn_norm     [B, H]
  qkv    = h @ Wqkv^T (+ b)                            # qkv_proj      [B, (Hq + 2 Hkv) D]
  q, k   = rope(q, k)                                  # rope
  cache[:, :, pos] = k, v                              # kv_append
  a      = attention(q, Kcache, Vcache)                # attention     [B, Hq D]
  o      = a @ Wo^T                                    # o_proj        [B, H]
  h2, r2 = rmsnorm(o + r)                              # ffn_norm
  gu     = h2 @ Wgate_up^T                             # gate_up_proj  [B, 2F]
  m      = silu(gate) * up                             # swiglu        [B, F]
  y      = m @ Wdown^T                                 # down_proj     [B, H]
returns (y, r2): the next layer adds them, exactly as Hugging Face's layer returns r2 + y.
The model step adds final_norm (on y + r2) and lm_head; the embedding gather (B rows) is negligible.
LayerDims(weights="fp8") holds the four projections (and the model's LM head) as kernels.fp8.Fp8Weight,
quantized once when the inputs are made; each GEMM quantizes its input per step (kernels/fp8_linear.py).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from kernels import activation, attention, fp8_linear, gemm, kv_cache, norm, rope
from kernels.backends import implementation, parse_backend
from kernels.dtypes import generator, randn
from kernels.head_sizes import HeadSizes
from kernels.op import OpCase, as_float64


@dataclass(frozen=True)
class LayerDims(HeadSizes):
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    qkv_bias: bool = False
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    # how the projection weights (and the LM head) are held: "activation" (the activation dtype) or "fp8"
    # (float8_e4m3fn + float32 scales, kernels/fp8_linear.py); norms and the qkv bias stay in the dtype
    weights: str = "activation"

    def __post_init__(self):
        if self.weights not in fp8_linear.WEIGHT_FORMATS:
            raise ValueError(f"unknown weights {self.weights!r}; choose one of: "
                             f"{', '.join(fp8_linear.WEIGHT_FORMATS)}")


def linear_module(d: LayerDims):
    """The module with the projections' formulas, inputs and reference: kernels.gemm, or kernels.fp8_linear
    for FP8 weights (same interface, same FLOPs, 1-byte weights)."""
    return fp8_linear if d.weights == "fp8" else gemm


def op_shapes(d: LayerDims, batch: int, context: int) -> dict:
    """Every op of a layer (and the model's final norm and LM head) as (kind, module, shape)."""
    lin = linear_module(d)
    return {
        "attn_norm": ("norm", norm, norm.NormShape(batch, d.hidden, d.norm_eps)),
        "qkv_proj": ("gemm", lin, gemm.GemmShape(batch, d.hidden, d.qkv_size, d.qkv_bias)),
        "rope": ("rope", rope, rope.RopeShape(batch, d.heads, d.kv_heads, d.head_dim, d.rope_theta)),
        "kv_append": ("kv_append", kv_cache, kv_cache.AppendShape(batch, d.kv_heads, d.head_dim, context)),
        "attention": ("attention", attention,
                      attention.AttentionShape(batch, d.heads, d.kv_heads, d.head_dim, context)),
        "o_proj": ("gemm", lin, gemm.GemmShape(batch, d.q_size, d.hidden)),
        "ffn_norm": ("norm", norm, norm.NormShape(batch, d.hidden, d.norm_eps)),
        "gate_up_proj": ("gemm", lin, gemm.GemmShape(batch, d.hidden, 2 * d.ffn)),
        "swiglu": ("activation", activation, activation.SwigluShape(batch, d.ffn)),
        "down_proj": ("gemm", lin, gemm.GemmShape(batch, d.ffn, d.hidden)),
    }


@functools.cache
def layer_ops() -> tuple:
    """The layer's op names in order, read from op_shapes (on a toy layer, the first time it is asked)."""
    return tuple(op_shapes(LayerDims(8, 2, 1, 4, 8, 8), 1, 1))

MODEL_OPS = ("final_norm", "lm_head")


def model_op_shapes(d: LayerDims, batch: int) -> dict:
    lin = linear_module(d)
    return {
        "final_norm": ("norm", norm, norm.NormShape(batch, d.hidden, d.norm_eps)),
        "lm_head": ("gemm", lin, gemm.GemmShape(batch, d.hidden, d.vocab)),
    }


def layer_flops(d: LayerDims, batch: int, context: int) -> int:
    return sum(module.flops(shape) for _, module, shape in op_shapes(d, batch, context).values())


def layer_weight_bytes(d: LayerDims, element_bytes: int) -> int:
    """The layer's weights: the projections [N, K] in d.weights' format (FP8: 1 byte an element + float32
    scales), the two norms and the qkv bias in the activation dtype."""
    proj = ((d.qkv_size, d.hidden), (d.hidden, d.q_size), (2 * d.ffn, d.hidden), (d.hidden, d.ffn))
    rest = 2 * d.hidden + (d.qkv_size if d.qkv_bias else 0)
    if d.weights == "fp8":
        return sum(n * k + fp8_linear.scale_bytes(n) for n, k in proj) + rest * element_bytes
    return (sum(n * k for n, k in proj) + rest) * element_bytes


def layer_min_bytes(d: LayerDims, batch: int, context: int, element_bytes: int) -> int:
    """Fewest bytes a fused layer must move: weights once, the KV cache once, the new k/v written,
    the layer's input and output activations. Intermediates between ops are not counted."""
    kv_read = 2 * batch * d.kv_size * context
    kv_write = 2 * batch * d.kv_size
    activations = 4 * batch * d.hidden  # x, residual in; y, r2 out
    cos_sin = 2 * batch * (d.head_dim // 2) * 4  # float32
    return layer_weight_bytes(d, element_bytes) + (kv_read + kv_write + activations) * element_bytes + cos_sin \
        + 8 * batch


def op_cases(d: LayerDims, batch: int, context: int, dtype: torch.dtype, device, backends=("torch",),
             include_model_ops: bool = True) -> list[OpCase]:
    """An OpCase per op of the layer (then final_norm and lm_head), with an implementation per backend."""
    element_bytes = torch.empty((), dtype=dtype).element_size()
    shapes = dict(op_shapes(d, batch, context))
    if include_model_ops:
        shapes.update(model_op_shapes(d, batch))
    cases = []
    for name, (kind, module, shape) in shapes.items():
        impls = {b: _lazy_impl(kind, b) for b in backends}
        cases.append(OpCase(
            name=name, kind=kind,
            flops=module.flops(shape), bytes=module.min_bytes(shape, element_bytes),
            make_inputs=lambda seed, m=module, s=shape: m.make_inputs(s, dtype, device, seed),
            reference=lambda inp, m=module: m.reference(**inp),
            impls=impls,
            outputs=kv_cache.written_slots if kind == "kv_append" else None,
            poison=kv_cache.poison if kind == "kv_append" else None,
            shape=dict(shape.__dict__),
            timing_support=getattr(module, "timing_support", None),
        ))
    return cases


def _lazy_impl(kind: str, backend_spec: str):
    """Resolve the implementation at first call, so listing cases never imports Triton."""
    backend = parse_backend(backend_spec)[kind]

    def run(inputs):
        return implementation(kind, backend)(**inputs)

    return run


# ---------------------------------------------------------------------------------------------------
# The whole layer


def make_layer_weights(d: LayerDims, dtype: torch.dtype, device, seed: int) -> dict:
    g = generator(seed, device)
    w = {
        "attn_norm": (1.0 + randn((d.hidden,), torch.float32, device, g, scale=0.1)).to(dtype),
        "qkv": randn((d.qkv_size, d.hidden), dtype, device, g, scale=d.hidden**-0.5),
        "o": randn((d.hidden, d.q_size), dtype, device, g, scale=d.q_size**-0.5),
        "ffn_norm": (1.0 + randn((d.hidden,), torch.float32, device, g, scale=0.1)).to(dtype),
        "gate_up": randn((2 * d.ffn, d.hidden), dtype, device, g, scale=d.hidden**-0.5),
        "down": randn((d.hidden, d.ffn), dtype, device, g, scale=d.ffn**-0.5),
    }
    w["qkv_bias"] = randn((d.qkv_size,), dtype, device, g, scale=0.1) if d.qkv_bias else None
    if d.weights == "fp8":  # the same draws, quantized once here (offline, never in a timed call)
        w.update({name: fp8_linear.quantize_weight(w[name]) for name in ("qkv", "o", "gate_up", "down")})
    return w


def make_layer_inputs(d: LayerDims, batch: int, context: int, dtype: torch.dtype, device, seed: int) -> dict:
    """Weights, activations and a filled KV cache; every sequence's new token sits at position context-1."""
    g = generator(seed + 7919, device)
    positions = torch.full((batch,), context - 1, dtype=torch.int64, device=device)
    cos, sin = rope.cos_sin(positions, d.head_dim, d.rope_theta)
    cache_shape = (batch, d.kv_heads, context, d.head_dim)
    return {
        "weights": make_layer_weights(d, dtype, device, seed),
        "x": randn((batch, d.hidden), dtype, device, g),
        "residual": randn((batch, d.hidden), dtype, device, g),
        "k_cache": randn(cache_shape, dtype, device, g),
        "v_cache": randn(cache_shape, dtype, device, g),
        "positions": positions,
        "cos": cos,
        "sin": sin,
    }


def layer_forward(d: LayerDims, backends: dict, weights, x, residual, k_cache, v_cache, positions, cos, sin,
                  reduce=None):
    """One decode step of one layer with the implementation chosen per op kind in `backends`.

    `reduce`, when given, is applied to the outputs of the two row-parallel GEMMs (o_proj, down_proj):
    a tensor-parallel rank passes its all-reduce there and `d` holds its shard's head and FFN sizes.
    """
    reduce = reduce or (lambda t: t)
    impl = {kind: implementation(kind, backend) for kind, backend in backends.items()}
    b = x.shape[0]
    h, r = impl["norm"](x=x, residual=residual, w=weights["attn_norm"], eps=d.norm_eps)
    qkv = impl["gemm"](x=h, w=weights["qkv"], b=weights["qkv_bias"])
    q = qkv[:, : d.q_size].view(b, d.heads, d.head_dim)
    k = qkv[:, d.q_size: d.q_size + d.kv_size].view(b, d.kv_heads, d.head_dim)
    v = qkv[:, d.q_size + d.kv_size:].view(b, d.kv_heads, d.head_dim)
    if backends["rope"] == backends["kv_append"] == "triton":
        # one launch instead of two: k is rotated on its way into the cache and never written back
        from kernels.triton.rope import triton_rope_append

        q = triton_rope_append(q=q, k=k, v=v, cos=cos, sin=sin, k_cache=k_cache, v_cache=v_cache,
                               positions=positions)
    else:
        q, k = impl["rope"](q=q, k=k, cos=cos, sin=sin)
        impl["kv_append"](k=k, v=v, k_cache=k_cache, v_cache=v_cache, positions=positions)
    a = impl["attention"](q=q, k_cache=k_cache, v_cache=v_cache, lengths=None)
    o = reduce(impl["gemm"](x=a.reshape(b, d.q_size), w=weights["o"], b=None))
    h2, r2 = impl["norm"](x=o, residual=r, w=weights["ffn_norm"], eps=d.norm_eps)
    gu = impl["gemm"](x=h2, w=weights["gate_up"], b=None)
    m = impl["activation"](gate_up=gu)
    y = reduce(impl["gemm"](x=m, w=weights["down"], b=None))
    return y, r2


def layer_reference(d: LayerDims, weights, x, residual, k_cache, v_cache, positions, cos, sin) -> tuple:
    """The same layer in float64 from the op references (inputs are not modified)."""
    b = x.shape[0]
    w64, lin = fp8_linear.weights64(weights), linear_module(d)
    h, r = norm.reference(x=as_float64(x), residual=as_float64(residual), w=w64["attn_norm"], eps=d.norm_eps)
    (qkv,) = lin.reference(x=h, w=w64["qkv"], b=w64["qkv_bias"])
    q = qkv[:, : d.q_size].view(b, d.heads, d.head_dim)
    k = qkv[:, d.q_size: d.q_size + d.kv_size].view(b, d.kv_heads, d.head_dim)
    v = qkv[:, d.q_size + d.kv_size:].view(b, d.kv_heads, d.head_dim)
    q, k = rope.reference(q=q, k=k, cos=cos, sin=sin)
    kc, vc = as_float64(k_cache).clone(), as_float64(v_cache).clone()
    rows = torch.arange(b, device=x.device)
    kc[rows, :, positions] = k
    vc[rows, :, positions] = v
    (a,) = attention.reference(q=q, k_cache=kc, v_cache=vc)
    (o,) = lin.reference(x=a.reshape(b, d.q_size), w=w64["o"])
    h2, r2 = norm.reference(x=o, residual=r, w=w64["ffn_norm"], eps=d.norm_eps)
    (gu,) = lin.reference(x=h2, w=w64["gate_up"])
    (m,) = activation.reference(gate_up=gu)
    (y,) = lin.reference(x=m, w=w64["down"])
    return (y, r2)


def _layer_runner(d: LayerDims, chosen: dict):
    return lambda inp: layer_forward(d, chosen, **inp)


def layer_case(d: LayerDims, batch: int, context: int, dtype: torch.dtype, device, backends=("torch",)) -> OpCase:
    element_bytes = torch.empty((), dtype=dtype).element_size()
    impls = {spec: _layer_runner(d, parse_backend(spec)) for spec in backends}
    return OpCase(
        name="layer", kind="layer",
        flops=layer_flops(d, batch, context),
        bytes=layer_min_bytes(d, batch, context, element_bytes),
        make_inputs=lambda seed: make_layer_inputs(d, batch, context, dtype, device, seed),
        reference=lambda inp: layer_reference(d, **inp),
        impls=impls,
        shape={"batch": batch, "context": context, **d.__dict__},
        **fp8_linear.case_fields(d.weights),
    )

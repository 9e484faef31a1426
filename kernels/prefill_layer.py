"""The decoder layer over a prompt chunk (prefill), and the mixed layer a chunked-prefill engine runs.

Prefill: `batch` sequences each bring a chunk of T prompt tokens continuing a cached prefix of P tokens;
every row-wise op runs at M = batch x T rows (the projections become compute-bound GEMMs):
  h, r   = rmsnorm(x + residual)                      # attn_norm      [M, H]
  qkv    = h @ Wqkv^T (+ b)                            # qkv_proj       [M, (Hq + 2 Hkv) D]
  q, k   = rope(q, k) at positions P .. P + T - 1      # rope
  cache[:, :, P:P+T] = k, v                            # kv_write       (kernels/kv_chunk.py)
  a      = causal attention(q, cache[: P + T])         # attention      (kernels/prefill_attention.py)
  ... o_proj, ffn_norm, gate_up_proj, swiglu, down_proj as in the decode layer (kernels/layer.py)
Mixed: B decode sequences (one token each at context C) and one chunk of T tokens continuing a prefix of
P share every row-wise op at M = B + T rows; attention runs in two parts, decode attention for the B
rows over their caches and prefill attention for the chunk over its own cache.
The model's prefill step adds final_norm and the LM head on each sequence's last token only.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels import activation, attention, fp8_linear, gemm, kv_cache, kv_chunk, norm, prefill_attention, rope
from kernels.backends import implementation, parse_backend
from kernels.dtypes import generator, randn
from kernels.layer import LayerDims, layer_weight_bytes, linear_module, make_layer_weights
from kernels.op import OpCase, as_float64


@dataclass(frozen=True)
class Chunk:
    """`batch` sequences x `tokens` prompt tokens each, continuing `prefix` cached tokens."""

    batch: int
    tokens: int
    prefix: int = 0

    @property
    def rows(self) -> int:
        return self.batch * self.tokens


def prefill_op_shapes(d: LayerDims, c: Chunk) -> dict:
    """Every op of the prefill layer as (kind, module, shape), at M = batch x tokens rows."""
    m, lin = c.rows, linear_module(d)
    return {
        "attn_norm": ("norm", norm, norm.NormShape(m, d.hidden, d.norm_eps)),
        "qkv_proj": ("gemm", lin, gemm.GemmShape(m, d.hidden, d.qkv_size, d.qkv_bias)),
        "rope": ("rope", rope, rope.RopeShape(m, d.heads, d.kv_heads, d.head_dim, d.rope_theta)),
        "kv_write": ("kv_append", kv_chunk, kv_chunk.ChunkWriteShape(c.batch, d.kv_heads, d.head_dim, c.tokens,
                                                                      c.prefix)),
        "attention": ("attention", prefill_attention,
                      prefill_attention.PrefillAttentionShape(c.batch, d.heads, d.kv_heads, d.head_dim, c.tokens,
                                                              c.prefix)),
        "o_proj": ("gemm", lin, gemm.GemmShape(m, d.q_size, d.hidden)),
        "ffn_norm": ("norm", norm, norm.NormShape(m, d.hidden, d.norm_eps)),
        "gate_up_proj": ("gemm", lin, gemm.GemmShape(m, d.hidden, 2 * d.ffn)),
        "swiglu": ("activation", activation, activation.SwigluShape(m, d.ffn)),
        "down_proj": ("gemm", lin, gemm.GemmShape(m, d.ffn, d.hidden)),
    }


def mixed_op_shapes(d: LayerDims, decode_batch: int, context: int, c: Chunk) -> dict:
    """The mixed layer's ops: row-wise ops at M = decode_batch + chunk rows, attention in two parts."""
    m, lin = decode_batch + c.rows, linear_module(d)
    shapes = prefill_op_shapes(d, c)
    for name in ("attn_norm", "ffn_norm"):
        shapes[name] = ("norm", norm, norm.NormShape(m, d.hidden, d.norm_eps))
    shapes["qkv_proj"] = ("gemm", lin, gemm.GemmShape(m, d.hidden, d.qkv_size, d.qkv_bias))
    shapes["rope"] = ("rope", rope, rope.RopeShape(m, d.heads, d.kv_heads, d.head_dim, d.rope_theta))
    shapes["o_proj"] = ("gemm", lin, gemm.GemmShape(m, d.q_size, d.hidden))
    shapes["gate_up_proj"] = ("gemm", lin, gemm.GemmShape(m, d.hidden, 2 * d.ffn))
    shapes["swiglu"] = ("activation", activation, activation.SwigluShape(m, d.ffn))
    shapes["down_proj"] = ("gemm", lin, gemm.GemmShape(m, d.ffn, d.hidden))
    if decode_batch:
        shapes["kv_append"] = ("kv_append", kv_cache, kv_cache.AppendShape(decode_batch, d.kv_heads, d.head_dim,
                                                                            context))
        shapes["decode_attention"] = ("attention", attention, attention.AttentionShape(
            decode_batch, d.heads, d.kv_heads, d.head_dim, context))
    return shapes


def prefill_layer_flops(d: LayerDims, c: Chunk) -> int:
    return sum(module.flops(shape) for _, module, shape in prefill_op_shapes(d, c).values())


def mixed_layer_flops(d: LayerDims, decode_batch: int, context: int, c: Chunk) -> int:
    return sum(module.flops(shape) for _, module, shape in mixed_op_shapes(d, decode_batch, context, c).values())


def prefill_layer_min_bytes(d: LayerDims, c: Chunk, element_bytes: int, decode_batch: int = 0,
                            context: int = 0) -> int:
    """Fewest bytes a fused layer must move: weights once, the cached prefix read once, the chunk's K/V
    written once (a fused kernel never re-reads them), decode caches read once and their new entries
    written, the layer's input and output activations; intermediates are not counted."""
    m = decode_batch + c.rows
    kv = 2 * d.kv_size * (c.batch * c.prefix + c.rows) + 2 * decode_batch * d.kv_size * (context + 1)
    activations = 4 * m * d.hidden  # x, residual in; y, r2 out
    cos_sin = 2 * m * (d.head_dim // 2) * 4  # float32
    return layer_weight_bytes(d, element_bytes) + (kv + activations) * element_bytes + cos_sin + 8 * decode_batch


# ---------------------------------------------------------------------------------------------------
# Per-op cases at prefill shapes


def _impl(kind: str, backend: str):
    """A prefill op's implementation: attention is the prefill kernel, the KV write a strided copy."""
    if kind == "attention":
        return prefill_attention.implementation(backend)
    if kind == "kv_append":
        return kv_chunk.torch_write_chunk
    return implementation(kind, backend)


def _op_runner(kind: str, spec: str, module):
    def run(inputs):
        backend = parse_backend(spec)[kind]
        fn = _impl(kind, backend) if module in (prefill_attention, kv_chunk) else implementation(kind, backend)
        return fn(**inputs)

    return run


def op_cases(d: LayerDims, shapes: dict, dtype: torch.dtype, device, backends=("torch",)) -> list[OpCase]:
    """An OpCase per op in `shapes` (from prefill_op_shapes or mixed_op_shapes)."""
    element_bytes = torch.empty((), dtype=dtype).element_size()
    cases = []
    for name, (kind, module, shape) in shapes.items():
        in_place = module in (kv_chunk, kv_cache)
        cases.append(OpCase(
            name=name, kind=kind,
            flops=module.flops(shape), bytes=module.min_bytes(shape, element_bytes),
            make_inputs=lambda seed, m=module, s=shape: m.make_inputs(s, dtype, device, seed),
            reference=lambda inp, m=module: m.reference(**inp),
            impls={b: _op_runner(kind, b, module) for b in backends},
            outputs=module.written_slots if in_place else None,
            poison=module.poison if in_place else None,
            shape=dict(shape.__dict__),
            timing_support=getattr(module, "timing_support", None),
        ))
    return cases


# ---------------------------------------------------------------------------------------------------
# The whole layer


def _positions(c: Chunk, device) -> torch.Tensor:
    return (c.prefix + torch.arange(c.tokens, device=device)).repeat(c.batch)  # [M], sequence-major


def make_prefill_inputs(d: LayerDims, c: Chunk, dtype: torch.dtype, device, seed: int,
                        decode_batch: int = 0, context: int = 0) -> dict:
    """Weights, the chunk's activations and a cache holding a random prefix (chunk slots filled with
    noise the layer must overwrite); with decode_batch > 0, the decode rows and their caches as well."""
    g = generator(seed + 7919, device)
    m = decode_batch + c.rows
    positions = _positions(c, device)
    if decode_batch:
        positions = torch.cat([torch.full((decode_batch,), context - 1, dtype=torch.int64, device=device),
                               positions])
    cos, sin = rope.cos_sin(positions, d.head_dim, d.rope_theta)
    cache_shape = (c.batch, d.kv_heads, c.prefix + c.tokens, d.head_dim)
    inputs = {
        "weights": make_layer_weights(d, dtype, device, seed),
        "x": randn((m, d.hidden), dtype, device, g),
        "residual": randn((m, d.hidden), dtype, device, g),
        "k_cache": randn(cache_shape, dtype, device, g),
        "v_cache": randn(cache_shape, dtype, device, g),
        "prefix": c.prefix,
        "cos": cos,
        "sin": sin,
    }
    if decode_batch:
        dec_shape = (decode_batch, d.kv_heads, context, d.head_dim)
        inputs["decode_k_cache"] = randn(dec_shape, dtype, device, g)
        inputs["decode_v_cache"] = randn(dec_shape, dtype, device, g)
        inputs["decode_positions"] = positions[:decode_batch]
    return inputs


def _split_qkv(d: LayerDims, qkv: torch.Tensor) -> tuple:
    m = qkv.shape[0]
    q = qkv[:, : d.q_size].view(m, d.heads, d.head_dim)
    k = qkv[:, d.q_size: d.q_size + d.kv_size].view(m, d.kv_heads, d.head_dim)
    v = qkv[:, d.q_size + d.kv_size:].view(m, d.kv_heads, d.head_dim)
    return q, k, v


def prefill_forward(d: LayerDims, backends: dict, weights, x, residual, k_cache, v_cache, prefix, cos, sin,
                    decode_k_cache=None, decode_v_cache=None, decode_positions=None, reduce=None):
    """One layer over the chunk (and, when decode caches are given, the decode rows first: the mixed
    layer), with the implementation chosen per op kind in `backends`. Returns (y, r2) for all rows.

    `reduce`, when given, is applied to the outputs of the two row-parallel GEMMs (o_proj, down_proj), as
    in kernels.layer.layer_forward: a tensor-parallel rank passes its all-reduce there and `d` holds its
    shard's head and FFN sizes (the caches hold its KV heads).
    """
    reduce = reduce or (lambda t: t)
    impl = {kind: implementation(kind, backends[kind]) for kind in ("gemm", "norm", "rope", "activation")}
    nb = 0 if decode_k_cache is None else decode_k_cache.shape[0]
    batch, t = k_cache.shape[0], (x.shape[0] - nb) // k_cache.shape[0]
    h, r = impl["norm"](x=x, residual=residual, w=weights["attn_norm"], eps=d.norm_eps)
    q, k, v = _split_qkv(d, impl["gemm"](x=h, w=weights["qkv"], b=weights["qkv_bias"]))
    q, k = impl["rope"](q=q, k=k, cos=cos, sin=sin)
    parts = []
    if nb:
        implementation("kv_append", backends["kv_append"])(k=k[:nb], v=v[:nb], k_cache=decode_k_cache,
                                                            v_cache=decode_v_cache, positions=decode_positions)
        a_dec = implementation("attention", backends["attention"])(q=q[:nb], k_cache=decode_k_cache,
                                                                    v_cache=decode_v_cache, lengths=None)
        parts.append(a_dec.reshape(nb, d.q_size))
    kv_chunk.torch_write_chunk(k[nb:].view(batch, t, d.kv_heads, d.head_dim),
                               v[nb:].view(batch, t, d.kv_heads, d.head_dim), k_cache, v_cache, prefix)
    qc = q[nb:].view(batch, t, d.heads, d.head_dim).transpose(1, 2).contiguous()  # [B, Hq, T, D]
    a_pre = prefill_attention.implementation(backends["attention"])(q=qc, k=k_cache, v=v_cache, prefix=prefix)
    parts.append(a_pre.transpose(1, 2).reshape(batch * t, d.q_size))
    a = parts[0] if len(parts) == 1 else torch.cat(parts)
    o = reduce(impl["gemm"](x=a, w=weights["o"], b=None))  # [M, H]: partial sums on a TP rank
    h2, r2 = impl["norm"](x=o, residual=r, w=weights["ffn_norm"], eps=d.norm_eps)
    y = reduce(impl["gemm"](x=impl["activation"](gate_up=impl["gemm"](x=h2, w=weights["gate_up"], b=None)),
                            w=weights["down"], b=None))
    return y, r2


def prefill_reference(d: LayerDims, weights, x, residual, k_cache, v_cache, prefix, cos, sin,
                      decode_k_cache=None, decode_v_cache=None, decode_positions=None) -> tuple:
    """The same layer in float64 from the op references (inputs are not modified)."""
    w64, lin = fp8_linear.weights64(weights), linear_module(d)
    nb = 0 if decode_k_cache is None else decode_k_cache.shape[0]
    batch, t = k_cache.shape[0], (x.shape[0] - nb) // k_cache.shape[0]
    h, r = norm.reference(x=as_float64(x), residual=as_float64(residual), w=w64["attn_norm"], eps=d.norm_eps)
    (qkv,) = lin.reference(x=h, w=w64["qkv"], b=w64["qkv_bias"])
    q, k, v = _split_qkv(d, qkv)
    q, k = rope.reference(q=q, k=k, cos=cos, sin=sin)
    parts = []
    if nb:
        kc, vc = as_float64(decode_k_cache).clone(), as_float64(decode_v_cache).clone()
        rows = torch.arange(nb, device=x.device)
        kc[rows, :, decode_positions] = k[:nb]
        vc[rows, :, decode_positions] = v[:nb]
        (a_dec,) = attention.reference(q=q[:nb], k_cache=kc, v_cache=vc)
        parts.append(a_dec.reshape(nb, d.q_size))
    kc, vc = as_float64(k_cache).clone(), as_float64(v_cache).clone()
    kc[:, :, prefix: prefix + t] = k[nb:].view(batch, t, d.kv_heads, d.head_dim).transpose(1, 2)
    vc[:, :, prefix: prefix + t] = v[nb:].view(batch, t, d.kv_heads, d.head_dim).transpose(1, 2)
    qc = q[nb:].view(batch, t, d.heads, d.head_dim).transpose(1, 2)
    (a_pre,) = prefill_attention.reference(q=qc, k=kc, v=vc, prefix=prefix)
    parts.append(a_pre.transpose(1, 2).reshape(batch * t, d.q_size))
    a = torch.cat(parts)
    (o,) = lin.reference(x=a, w=w64["o"])
    h2, r2 = norm.reference(x=o, residual=r, w=w64["ffn_norm"], eps=d.norm_eps)
    (gu,) = lin.reference(x=h2, w=w64["gate_up"])
    (m,) = activation.reference(gate_up=gu)
    (y,) = lin.reference(x=m, w=w64["down"])
    return (y, r2)


def poison_new_slots(inputs: dict) -> None:
    """NaN in every cache slot the layer must write before it reads it (the chunk's, the decode tokens')."""
    t = (inputs["x"].shape[0] - inputs.get("decode_k_cache", inputs["x"][:0]).shape[0]) // inputs["k_cache"].shape[0]
    p = inputs["prefix"]
    for name in ("k_cache", "v_cache"):
        inputs[name][:, :, p: p + t] = float("nan")
    if "decode_k_cache" in inputs:
        rows = torch.arange(inputs["decode_positions"].shape[0], device=inputs["x"].device)
        for name in ("decode_k_cache", "decode_v_cache"):
            inputs[name][rows, :, inputs["decode_positions"]] = float("nan")


def _runner(d: LayerDims, chosen: dict):
    return lambda inp: prefill_forward(d, chosen, **inp)


def prefill_layer_case(d: LayerDims, c: Chunk, dtype: torch.dtype, device, backends=("torch",)) -> OpCase:
    element_bytes = torch.empty((), dtype=dtype).element_size()
    return OpCase(
        name="prefill_layer", kind="layer",
        flops=prefill_layer_flops(d, c), bytes=prefill_layer_min_bytes(d, c, element_bytes),
        make_inputs=lambda seed: make_prefill_inputs(d, c, dtype, device, seed),
        reference=lambda inp: prefill_reference(d, **inp),
        impls={spec: _runner(d, parse_backend(spec)) for spec in backends},
        poison=poison_new_slots,
        shape={"batch": c.batch, "chunk": c.tokens, "prefix": c.prefix, **d.__dict__},
        **fp8_linear.case_fields(d.weights),
    )


def mixed_layer_case(d: LayerDims, decode_batch: int, context: int, c: Chunk, dtype: torch.dtype, device,
                     backends=("torch",)) -> OpCase:
    element_bytes = torch.empty((), dtype=dtype).element_size()
    return OpCase(
        name="mixed_layer", kind="layer",
        flops=mixed_layer_flops(d, decode_batch, context, c),
        bytes=prefill_layer_min_bytes(d, c, element_bytes, decode_batch, context),
        make_inputs=lambda seed: make_prefill_inputs(d, c, dtype, device, seed, decode_batch, context),
        reference=lambda inp: prefill_reference(d, **inp),
        impls={spec: _runner(d, parse_backend(spec)) for spec in backends},
        poison=poison_new_slots,
        shape={"decode_batch": decode_batch, "context": context, "batch": c.batch, "chunk": c.tokens,
               "prefix": c.prefix, **d.__dict__},
        **fp8_linear.case_fields(d.weights),
    )

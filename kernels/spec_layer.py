"""A decoder layer built from its LayerSpec (kernels/layer_spec.py), for every architecture the configs
describe: pre-norm attention (GQA with qkv/o biases, q/k norm, sliding window and sinks:
kernels/attention_block.py; or DeepSeek's MLA: kernels/mla_block.py), then a dense SwiGLU MLP or the model's
MoE block (its own router, shared experts, expert biases and activation: kernels/moe_block.py). Decode,
prefill and mixed are one layer over `Rows`: `decode_batch` sequences with one new token each at `context`,
and/or one prompt `chunk` (kernels.prefill_layer.Chunk: batch x tokens continuing a cached prefix).

  h, r   = rmsnorm(x + residual)                       attn_norm   [M, H], M = decode_batch + chunk rows
  a      = attention block: the decode rows over their caches, the chunk over its cache (two calls of the
           block in a mixed step: each with its own projections, so a mixed step's attention projections
           run at M = B and M = T rather than once at B + T)
  h2, r2 = rmsnorm(a + r)                              ffn_norm
  y      = dense MLP(h2) or MoE block(h2) at M tokens
returns (y, r2), as kernels/layer.py. Sliding-window layers hold min(context, W) cache slots at decode (the
new token in the last) and the last min(prefix, W - 1) prefix tokens at prefill: cache and work bounded by
the window.
RoPE tables: YaRN as the config gives it (kernels/rope_scaling.py); linear and llama3 scaling change only the
table, not the work, and both the implementation and the reference read the same table, so the default one
stands in for them.

The MoE layer is measured in two parts as well as whole: `attention_part` (everything before the MLP) and the
MoE block at the layer's token count with steered routing (kernels/moe_routing.py), so a step can be composed
per routing distribution; the whole layer (its router reading the layer's own hidden states) checks the
composition against one float64 reference.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from kernels import activation, attention_block, attention_cases, gemm, mla_block, moe_block, moe_router, norm
from kernels.backends import implementation
from kernels.dtypes import generator, randn
from kernels.layer_spec import AttentionSpec, LayerSpec, MlpSpec
from kernels.moe_router import RouterSpec
from kernels.moe_routing import Routing, RoutingStats, routing_stats
from kernels.op import OpCase, as_float64
from kernels.prefill_layer import Chunk
from kernels.rmsnorm import norm_weight
from kernels.rope_scaling import RopeScaling, cos_sin

BACKENDS = ("torch", "triton")
MOE_BACKEND = {"torch": "torch", "triton": "triton"}  # the MoE block's implementation per layer backend


@dataclass(frozen=True)
class Rows:
    """What a layer call processes: decode rows (one new token each at `context`) and/or one prompt chunk."""

    decode_batch: int = 0
    context: int = 0
    chunk: Chunk | None = None

    def __post_init__(self):
        if not self.decode_batch and self.chunk is None:
            raise ValueError("a layer call needs decode rows or a chunk")

    @property
    def tokens(self) -> int:
        return self.decode_batch + (self.chunk.rows if self.chunk else 0)


# ---------------------------------------------------------------------------------------------------
# the blocks' dims from the spec


def rope_scaling(a: AttentionSpec) -> RopeScaling | None:
    r = a.rope
    if r.kind != "yarn":
        return None
    return RopeScaling("yarn", r.factor, r.original_max_positions or 4096, r.beta_fast or 32.0,
                       r.beta_slow or 1.0, r.mscale or None, r.mscale_all_dim or None,
                       r.attention_factor or None, r.truncate)


def attention_dims(a: AttentionSpec):
    """attention_block.AttentionDims (GQA) or mla_block.MlaDims (MLA) of the spec."""
    if a.kind == "mla":
        if a.qkv_bias != a.o_bias:
            raise ValueError("MLA with a q/kv bias but no output bias (or the reverse) is not modelled")
        return mla_block.MlaDims(a.hidden, a.heads, a.q_lora_rank, a.kv_lora_rank, a.qk_nope_head_dim,
                                 a.qk_rope_head_dim, a.v_head_dim, o_bias=a.o_bias, norm_eps=a.norm_eps,
                                 rope_theta=a.rope.theta, rope_scaling=rope_scaling(a))
    return attention_block.AttentionDims(a.hidden, a.heads, a.kv_heads, a.head_dim, qkv_bias=a.qkv_bias,
                                         o_bias=a.o_bias, qk_norm=a.qk_norm, window=a.window, sinks=a.sinks,
                                         norm_eps=a.norm_eps, rope_theta=a.rope.theta,
                                         rope_scaling=rope_scaling(a))


def router_spec(mlp: MlpSpec) -> RouterSpec:
    if mlp.router == "deepseek_group_sigmoid":
        return RouterSpec(mlp.router, mlp.norm_topk_prob, mlp.n_group, mlp.topk_group,
                          mlp.routed_scaling_factor)
    if mlp.router == "gptoss":
        return RouterSpec("gptoss")
    return RouterSpec(mlp.router, mlp.norm_topk_prob)


def moe_shape(spec: LayerSpec, tokens: int) -> moe_block.MoeBlockShape:
    """The layer's MoE block at `tokens` tokens."""
    mlp = spec.mlp
    if mlp.activation == "gptoss_swiglu" and mlp.swiglu_alpha not in (0.0, moe_block.GPTOSS_ALPHA):
        raise ValueError(f"swiglu_alpha {mlp.swiglu_alpha} is not modelled (the block's is "
                         f"{moe_block.GPTOSS_ALPHA})")
    shared_ffn = mlp.shared_ffn // mlp.shared_experts if mlp.shared_experts else 0
    return moe_block.MoeBlockShape(tokens, spec.hidden, mlp.ffn, mlp.experts, mlp.top_k, router_spec(mlp),
                                   shared=mlp.shared_experts, shared_ffn=shared_ffn,
                                   expert_bias=mlp.expert_bias,
                                   activation=mlp.activation,
                                   limit=mlp.swiglu_limit if mlp.activation == "gptoss_swiglu" else 0.0)


def rope_dim(a: AttentionSpec) -> int:
    return a.qk_rope_head_dim if a.kind == "mla" else a.head_dim


def decode_slots(a: AttentionSpec, context: int) -> int:
    """Cache slots a decode row holds: the context, bounded by a sliding window."""
    return a.cached_tokens(context)


def prefix_cached(a: AttentionSpec, prefix: int) -> int:
    """Prefix tokens a chunk's cache holds: all, or the last W - 1 under a window
    (kernels/prefill_attention.py)."""
    return min(prefix, a.window - 1) if a.window else prefix


# ---------------------------------------------------------------------------------------------------
# the ops, FLOPs and bytes


def attention_op_shapes(spec: LayerSpec, rows: Rows) -> dict:
    """name -> (kind, module, shape) of everything before the MLP; a mixed step's decode-row attention ops
    carry the prefix `decode_`."""
    a, m = spec.attention, rows.tokens
    dims, block = attention_dims(a), (mla_block if a.kind == "mla" else attention_block)
    shapes = {"attn_norm": ("norm", norm, norm.NormShape(m, spec.hidden, spec.norm_eps))}
    if rows.decode_batch:
        dec = block.decode_op_shapes(dims, rows.decode_batch, rows.context)
        shapes.update({(f"decode_{n}" if rows.chunk else n): v for n, v in dec.items()})
    if rows.chunk:
        c = rows.chunk
        shapes.update(block.prefill_op_shapes(dims, c.batch, c.tokens, c.prefix))
    shapes["ffn_norm"] = ("norm", norm, norm.NormShape(m, spec.hidden, spec.norm_eps))
    return shapes


def dense_mlp_op_shapes(spec: LayerSpec, tokens: int) -> dict:
    f, h = spec.mlp.ffn, spec.hidden
    return {"gate_up_proj": ("gemm", gemm, gemm.GemmShape(tokens, h, 2 * f)),
            "swiglu": ("activation", activation, activation.SwigluShape(tokens, f)),
            "down_proj": ("gemm", gemm, gemm.GemmShape(tokens, f, h))}


def op_shapes(spec: LayerSpec, rows: Rows) -> dict:
    """Every op of the layer that is one op file's (the MoE block is its own case: moe_case)."""
    shapes = attention_op_shapes(spec, rows)
    if spec.mlp.kind == "dense":
        shapes.update(dense_mlp_op_shapes(spec, rows.tokens))
    return shapes


def _flops(shapes: dict) -> int:
    return sum(module.flops(shape) for _, module, shape in shapes.values())


def attention_part_flops(spec: LayerSpec, rows: Rows) -> int:
    return _flops(attention_op_shapes(spec, rows))


def layer_flops(spec: LayerSpec, rows: Rows) -> int:
    if spec.mlp.kind == "dense":
        return _flops(op_shapes(spec, rows))
    return attention_part_flops(spec, rows) + moe_block.flops(moe_shape(spec, rows.tokens))


def _cache_bytes(a: AttentionSpec, rows: Rows) -> int:
    """Cache elements read once and written once: decode rows read their slots and write one token; a chunk
    reads its cached prefix and writes its tokens."""
    per_token = a.cache_elements_per_token
    n = 0
    if rows.decode_batch:
        n += rows.decode_batch * (decode_slots(a, rows.context) + 1) * per_token
    if rows.chunk:
        c = rows.chunk
        n += c.batch * (prefix_cached(a, c.prefix) + c.tokens) * per_token
    return n


def attention_part_min_bytes(spec: LayerSpec, rows: Rows, element_bytes: int) -> int:
    """Fewest bytes of the part before the MLP: its weights once (sinks float32), the caches once, x and
    residual in, h2 and r2 out, the rope tables (float32)."""
    a, m = spec.attention, rows.tokens
    weights = (a.params() - (a.heads if a.sinks else 0) + 2 * spec.hidden) * element_bytes
    weights += 4 * a.heads if a.sinks else 0
    cos_sin = 2 * m * (rope_dim(a) // 2) * 4
    return weights + (_cache_bytes(a, rows) + 4 * m * spec.hidden) * element_bytes + cos_sin


def layer_min_bytes(spec: LayerSpec, rows: Rows, element_bytes: int, active_experts: float = 0.0) -> int:
    """The attention part, then the MLP's weights once (MoE: the `active_experts` routed experts the tokens
    activated, the shared experts and the router; kernels.moe_block.min_bytes less its x in and y out, which
    are the part's h2 out and the layer's y)."""
    base = attention_part_min_bytes(spec, rows, element_bytes)
    if spec.mlp.kind == "dense":
        return base + 3 * spec.hidden * spec.mlp.ffn * element_bytes
    s = moe_shape(spec, rows.tokens)
    block = moe_block.min_bytes(s, element_bytes, active_experts)
    return base + block - 2 * rows.tokens * spec.hidden * element_bytes


# ---------------------------------------------------------------------------------------------------
# inputs, forward and reference


def make_weights(spec: LayerSpec, dtype: torch.dtype, device, seed: int) -> dict:
    g = generator(seed, device)
    a = spec.attention
    block = mla_block if a.kind == "mla" else attention_block
    w = {"attn_norm": norm_weight(spec.hidden, dtype, device, g),
         "ffn_norm": norm_weight(spec.hidden, dtype, device, g),
         "attn": block.make_weights(attention_dims(a), dtype, device, seed + 1)}
    if spec.mlp.kind == "dense":
        f, h = spec.mlp.ffn, spec.hidden
        w["mlp"] = {"gate_up": randn((2 * f, h), dtype, device, g, scale=h ** -0.5),
                    "down": randn((h, f), dtype, device, g, scale=f ** -0.5)}
    else:
        s = moe_shape(spec, 1)
        mlp = moe_router.draw_router_weights(s.experts, s.hidden, s.router, dtype, device, g)
        mlp.update(moe_block._draw_experts(s, dtype, device, generator(seed + 7_919, device)))
        w["mlp"] = mlp
    return w


def _decode_state(a: AttentionSpec, rows: Rows, dtype, device, g) -> dict:
    b, slots = rows.decode_batch, decode_slots(a, rows.context)
    positions = torch.full((b,), rows.context - 1, dtype=torch.int64, device=device)
    cos, sin = cos_sin(positions, rope_dim(a), a.rope.theta, rope_scaling(a))
    last = torch.full((b,), slots - 1, dtype=torch.int64, device=device)  # the new token's slot
    if a.kind == "mla":
        cache = randn((b, slots, a.kv_lora_rank + a.qk_rope_head_dim), dtype, device, g)
        return {"cache": cache, "positions": last, "cos": cos, "sin": sin}
    shape = (b, a.kv_heads, slots, a.head_dim)
    return {"k_cache": randn(shape, dtype, device, g), "v_cache": randn(shape, dtype, device, g),
            "slots": last, "cos": cos, "sin": sin}


def _chunk_state(a: AttentionSpec, c: Chunk, dtype, device, g) -> dict:
    cached = prefix_cached(a, c.prefix)
    positions = (c.prefix + torch.arange(c.tokens, device=device)).repeat(c.batch)
    cos, sin = cos_sin(positions, rope_dim(a), a.rope.theta, rope_scaling(a))
    if a.kind == "mla":
        cache = randn((c.batch, cached + c.tokens, a.kv_lora_rank + a.qk_rope_head_dim), dtype, device, g)
        return {"cache": cache, "prefix": cached, "cos": cos, "sin": sin}
    shape = (c.batch, a.kv_heads, cached + c.tokens, a.head_dim)
    return {"k_cache": randn(shape, dtype, device, g), "v_cache": randn(shape, dtype, device, g),
            "prefix": cached, "cos": cos, "sin": sin}


def make_inputs(spec: LayerSpec, rows: Rows, dtype: torch.dtype, device, seed: int) -> dict:
    """Weights, x and residual [M, H] (decode rows first), and each part's cache (random: the cached
    context)."""
    g = generator(seed + 7_919, device)
    a = spec.attention
    return {"weights": make_weights(spec, dtype, device, seed),
            "x": randn((rows.tokens, spec.hidden), dtype, device, g),
            "residual": randn((rows.tokens, spec.hidden), dtype, device, g),
            "dec": _decode_state(a, rows, dtype, device, g) if rows.decode_batch else None,
            "pre": _chunk_state(a, rows.chunk, dtype, device, g) if rows.chunk else None}


def _attention(spec: LayerSpec, backend: str, w, h, nb: int, dec, pre) -> torch.Tensor:
    a = spec.attention
    dims = attention_dims(a)
    parts = []
    if a.kind == "mla":
        if dec is not None:
            parts.append(mla_block.decode_forward(dims, backend, w, h[:nb], **dec))
        if pre is not None:
            parts.append(mla_block.prefill_forward(dims, backend, w, h[nb:], **pre))
    else:
        if dec is not None:
            parts.append(attention_block.decode_forward(dims, backend, w, h[:nb], **dec))
        if pre is not None:
            parts.append(attention_block.prefill_forward(dims, backend, w, h[nb:], **pre))
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def forward(spec: LayerSpec, backend: str, weights, x, residual, dec, pre, mlp: bool = True):
    """The layer with every op in `backend` (torch or triton); mlp=False stops after ffn_norm (h2, r2)."""
    impl = lambda kind: implementation(kind, backend)  # noqa: E731
    nb = 0 if dec is None else next(iter(dec.values())).shape[0]
    h, r = impl("norm")(x=x, residual=residual, w=weights["attn_norm"], eps=spec.norm_eps)
    a = _attention(spec, backend, weights["attn"], h, nb, dec, pre)
    h2, r2 = impl("norm")(x=a, residual=r, w=weights["ffn_norm"], eps=spec.norm_eps)
    if not mlp:
        return h2, r2
    w = weights["mlp"]
    if spec.mlp.kind == "dense":
        m = impl("activation")(gate_up=impl("gemm")(x=h2, w=w["gate_up"], b=None))
        return impl("gemm")(x=m, w=w["down"], b=None), r2
    return moe_block.IMPLS[MOE_BACKEND[backend]](moe_shape(spec, h2.shape[0]), {**w, "x": h2}), r2


def _attention_reference(spec: LayerSpec, w, h, nb: int, dec, pre) -> torch.Tensor:
    a = spec.attention
    dims = attention_dims(a)
    parts = []
    for state, rows in ((dec, h[:nb]), (pre, h[nb:])):
        if state is None:
            continue
        if a.kind == "mla":
            prefix = state["prefix"] if "prefix" in state else state["cache"].shape[1] - 1
            y, _ = mla_block.reference(dims, w, rows, state["cache"], prefix, state["cos"], state["sin"])
        else:
            past = state["prefix"] if "prefix" in state else state["k_cache"].shape[2] - 1
            y, _, _ = attention_block.reference(dims, w, rows, state["k_cache"][:, :, :past],
                                                state["v_cache"][:, :, :past], state["cos"], state["sin"])
        parts.append(y)
    return torch.cat(parts)


def reference(spec: LayerSpec, weights, x, residual, dec, pre, mlp: bool = True) -> tuple:
    """The same layer in float64 from the blocks' references (inputs are not modified)."""
    nb = 0 if dec is None else next(iter(dec.values())).shape[0]
    h, r = norm.reference(x=as_float64(x), residual=as_float64(residual), w=as_float64(weights["attn_norm"]),
                          eps=spec.norm_eps)
    a = _attention_reference(spec, weights["attn"], h, nb, dec, pre)
    h2, r2 = norm.reference(x=a, residual=r, w=as_float64(weights["ffn_norm"]), eps=spec.norm_eps)
    if not mlp:
        return h2, r2
    w = weights["mlp"]
    if spec.mlp.kind == "dense":
        (gu,) = gemm.reference(h2, as_float64(w["gate_up"]), None)
        (m,) = activation.reference(gate_up=gu)
        (y,) = gemm.reference(m, as_float64(w["down"]), None)
        return y, r2
    (y,) = moe_block.reference(moe_shape(spec, h2.shape[0]), {**w, "x": h2})
    return y, r2


def layer_routing(spec: LayerSpec, rows: Rows, dtype: torch.dtype, device, seed: int = 0) -> RoutingStats:
    """What the whole MoE layer's router picks on input set `seed` (from the float64 attention part)."""
    inp = make_inputs(spec, rows, dtype, device, seed)
    h2, _ = reference(spec, **inp, mlp=False)
    w, s = inp["weights"]["mlp"], moe_shape(spec, rows.tokens)
    ids, _ = moe_router.route_reference(h2, w["router_w"], s.router, s.top_k, w["router_bias"],
                                        w["correction_bias"])
    return routing_stats(ids, s.experts)


# ---------------------------------------------------------------------------------------------------
# cases


def _check_backends(backends) -> None:
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise ValueError(f"backend {unknown[0]!r}: a layer built from its config runs one backend for every "
                         f"op ({', '.join(BACKENDS)})")


def op_cases(spec: LayerSpec, rows: Rows, dtype: torch.dtype, device, backends=("torch",)) -> list[OpCase]:
    """An OpCase per op of the layer (op_shapes), each with its reference and an implementation per
    backend."""
    _check_backends(backends)
    return attention_cases.op_cases(op_shapes(spec, rows), dtype, device, backends)


def _shape(spec: LayerSpec, rows: Rows) -> dict:
    c = rows.chunk
    return {"layer": spec.label, "decode_batch": rows.decode_batch, "context": rows.context,
            "chunk_batch": c.batch if c else 0, "chunk_tokens": c.tokens if c else 0,
            "prefix": c.prefix if c else 0}


def layer_case(spec: LayerSpec, rows: Rows, dtype: torch.dtype, device, backends=("torch",),
               name: str = "layer", mlp: bool = True) -> OpCase:
    """The whole layer (mlp=False: the attention part, before the MLP) as one case. An MoE layer's bytes count
    the experts its router picks on input set 0, recorded in the shape."""
    _check_backends(backends)
    eb = torch.empty((), dtype=dtype).element_size()
    shape = _shape(spec, rows)
    if not mlp:
        flops, nbytes = attention_part_flops(spec, rows), attention_part_min_bytes(spec, rows, eb)
    elif spec.mlp.kind == "moe":
        stats = layer_routing(spec, rows, dtype, device)
        flops, nbytes = layer_flops(spec, rows), layer_min_bytes(spec, rows, eb, stats.active_experts)
        shape.update(routing="the layer's own hidden states", active_experts=stats.active_experts,
                     max_tokens_per_expert=stats.max_tokens_per_expert)
    else:
        flops, nbytes = layer_flops(spec, rows), layer_min_bytes(spec, rows, eb)
    return OpCase(
        name=name, kind="layer", flops=flops, bytes=nbytes,
        make_inputs=lambda seed: make_inputs(spec, rows, dtype, device, seed),
        reference=lambda inp: reference(spec, **inp, mlp=mlp),
        impls={b: (lambda be: lambda inp: forward(spec, be, **inp, mlp=mlp))(b) for b in backends},
        shape=shape,
    )


def moe_case(spec: LayerSpec, tokens: int, routing: Routing, dtype: torch.dtype, device, backends=("torch",),
             name: str = "moe_block") -> OpCase:
    """The layer's MoE block at `tokens` tokens under `routing` (bytes: the experts it activates)."""
    _check_backends(backends)
    moe_backends = [MOE_BACKEND[b] for b in backends]
    return moe_block.moe_block_case(moe_shape(spec, tokens), dtype, device, moe_backends, routing)


@dataclass(frozen=True)
class LayerType:
    """One distinct layer of a model, `count` times in it; `tag` names its rows when the model has several."""

    spec: LayerSpec
    count: int
    tag: str
    mlp_tag: str = field(default="")

"""DeepSeek-V3's attention block (MLA) composed from the op files, in decode and in chunked prefill, as the
serving engines run it; the shapes of its ops with their FLOPs and bytes, and a float64 reference.

x is the input-normed hidden state [M, hidden] (M = batch at decode, batch x chunk at prefill). Ops:
  q_a_proj   cq = x W_qa^T (+ b)                         [M, q_lora_rank]   (q_lora_rank > 0)
  q_a_norm   cq = rmsnorm(cq) w_qa                                           (q_lora_rank > 0)
  q_b_proj   q = cq W_qb^T  (q_proj: x W_q^T without q lora)  [M, H (Dn + Dr)]
  kv_a_proj  ckv = x W_kva^T (+ b)                       [M, R + Dr]        (kv_a_proj_with_mqa)
  kv_a_norm  c = rmsnorm(ckv[:, :R]) w_kva                [M, R]
  rope       q_pe, k_pe = rope(q[..., Dn:], ckv[:, R:])  (Dr columns; YaRN tables, kernels/rope_scaling.py)
  latent_append / latent_chunk_write: [c, k_pe] into the latent cache [B, S, R + Dr]
decode:
  q_absorb   q_lat = q_nope W_UK                          [B, H, R]          (kernels/head_gemm.py)
  mla_attention  o_lat over the latent cache              [B, H, R]          (kernels/mla_attention.py)
  out_absorb o = o_lat W_UV^T                             [B, H, Dv]
prefill:
  kv_b_proj  kv = c_cache W_kvb^T over the S = prefix + T cached latents  [B S, H (Dn + Dv)]
  mla_prefill_attention                                   [B, H, T, Dv]      (kernels/mla_prefill_attention.py)
both:
  o_proj     y = o W_o^T (+ b)                            [M, hidden]
W_UK[h] = kv_b_proj.weight rows h (Dn + Dv) .. + Dn, W_UV[h] the next Dv rows: views, no copies.
DeepSeek's rope_interleave (pairs (2i, 2i + 1) rotated together) is folded offline into the rows of q_b_proj
and kv_a_proj_with_mqa (kernels/hf_mla_mapping.py), so the runtime rope is the half-split one and the cached
k_pe equals transformers' (whose interleaved rope returns the [evens, odds] layout).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

import torch

from kernels import gemm, head_gemm, latent_cache, mla_attention, mla_prefill_attention, rmsnorm, rope
from kernels.dtypes import generator, randn
from kernels.op import as_float64
from kernels.rope_scaling import RopeScaling, softmax_scale


@dataclass(frozen=True)
class MlaDims:
    hidden: int
    heads: int
    q_lora_rank: int  # 0: no q down-projection (q_proj straight from x, DeepSeek-V2-Lite)
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    o_bias: bool = False  # attention_bias: q_a_proj, kv_a_proj_with_mqa and o_proj biases
    norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def scale(self) -> float:
        """transformers' DeepseekV3Attention.scaling: 1/sqrt(qk_head_dim), times YaRN mscale^2."""
        return softmax_scale(self.qk_head_dim, self.rope_scaling, deepseek_mscale=True)

    @property
    def latent_width(self) -> int:
        """Cache elements per token per layer."""
        return self.kv_lora_rank + self.qk_rope_head_dim


def _projection_shapes(d: MlaDims, m: int) -> dict:
    h, r, dr = d.heads, d.kv_lora_rank, d.qk_rope_head_dim
    shapes = {}
    if d.q_lora_rank:
        shapes["q_a_proj"] = ("gemm", gemm, gemm.GemmShape(m, d.hidden, d.q_lora_rank, d.o_bias))
        shapes["q_a_norm"] = ("rmsnorm", rmsnorm, rmsnorm.RmsNormShape(m, d.q_lora_rank, d.norm_eps))
        shapes["q_b_proj"] = ("gemm", gemm, gemm.GemmShape(m, d.q_lora_rank, h * d.qk_head_dim))
    else:
        shapes["q_proj"] = ("gemm", gemm, gemm.GemmShape(m, d.hidden, h * d.qk_head_dim))
    shapes["kv_a_proj"] = ("gemm", gemm, gemm.GemmShape(m, d.hidden, r + dr, d.o_bias))
    shapes["kv_a_norm"] = ("rmsnorm", rmsnorm, rmsnorm.RmsNormShape(m, r, d.norm_eps))
    shapes["rope"] = ("rope", rope, rope.RopeShape(m, h, 1, dr, d.rope_theta))
    return shapes


def decode_op_shapes(d: MlaDims, batch: int, context: int) -> dict:
    """Every op of the MLA block at decode, name -> (kind, module, shape), in execution order."""
    h, r = d.heads, d.kv_lora_rank
    shapes = _projection_shapes(d, batch)
    shapes["latent_append"] = ("latent_append", latent_cache,
                               latent_cache.LatentAppendShape(batch, context, r, d.qk_rope_head_dim))
    shapes["q_absorb"] = ("head_gemm", head_gemm, head_gemm.HeadGemmShape(batch, h, d.qk_nope_head_dim, r))
    shapes["mla_attention"] = ("mla_attention", mla_attention, mla_attention.MlaDecodeShape(
        batch, h, context, r, d.qk_rope_head_dim, d.qk_nope_head_dim, d.scale))
    shapes["out_absorb"] = ("head_gemm", head_gemm, head_gemm.HeadGemmShape(batch, h, r, d.v_head_dim))
    shapes["o_proj"] = ("gemm", gemm, gemm.GemmShape(batch, h * d.v_head_dim, d.hidden, d.o_bias))
    return shapes


def prefill_op_shapes(d: MlaDims, batch: int, chunk: int, prefix: int) -> dict:
    """Every op of the MLA block for one prefill chunk (the chunk's latents written, all S = prefix + chunk
    latents decompressed), name -> (kind, module, shape). The chunk write is a strided copy (as
    kernels/kv_chunk.py): B T (R + Dr) elements read and written, no FLOPs, not a separate op here."""
    h, m, s = d.heads, batch * chunk, prefix + chunk
    shapes = _projection_shapes(d, m)
    shapes["kv_b_proj"] = ("gemm", gemm, gemm.GemmShape(batch * s, d.kv_lora_rank,
                                                        h * (d.qk_nope_head_dim + d.v_head_dim)))
    shapes["mla_prefill_attention"] = ("mla_prefill_attention", mla_prefill_attention,
                                       mla_prefill_attention.MlaPrefillShape(
                                           batch, h, chunk, prefix, d.qk_nope_head_dim, d.qk_rope_head_dim,
                                           d.v_head_dim, d.scale))
    shapes["o_proj"] = ("gemm", gemm, gemm.GemmShape(m, h * d.v_head_dim, d.hidden, d.o_bias))
    return shapes


def block_flops(shapes: dict) -> int:
    return sum(module.flops(shape) for _, module, shape in shapes.values())


# ---------------------------------------------------------------------------------------------------
# implementations per backend

_IMPLS = {  # kind -> (torch, triton) as "module:function"
    "gemm": ("kernels.gemm:torch_linear", "kernels.triton.gemm:triton_linear"),
    "rmsnorm": ("kernels.rmsnorm:torch_rmsnorm", "kernels.triton.rmsnorm:triton_rmsnorm"),
    "rope": ("kernels.rope:torch_rope", "kernels.triton.rope:triton_rope"),
    "latent_append": ("kernels.latent_cache:torch_latent_append", "kernels.triton.latent_cache:triton_latent_append"),
    "head_gemm": ("kernels.head_gemm:torch_head_gemm", "kernels.triton.head_gemm:triton_head_gemm"),
    "mla_attention": ("kernels.mla_attention:torch_mla_decode", "kernels.triton.mla_attention:triton_mla_decode"),
    "mla_prefill_attention": ("kernels.mla_prefill_attention:torch_mla_prefill",
                              "kernels.triton.mla_prefill_attention:triton_mla_prefill"),
}


def implementation(kind: str, backend: str):
    """The function implementing an MLA op kind in `backend` ("torch" or "triton"); Triton imported lazily."""
    if backend not in ("torch", "triton"):
        raise ValueError(f"unknown backend {backend!r}; choose torch or triton")
    module, name = _IMPLS[kind][backend == "triton"].split(":")
    return getattr(importlib.import_module(module), name)


# ---------------------------------------------------------------------------------------------------
# weights (nn.Linear layouts, the rope rows already de-interleaved) and the forward passes


def make_weights(d: MlaDims, dtype: torch.dtype, device, seed: int) -> dict:
    g = generator(seed, device)
    h = d.heads

    def lin(n, k):
        return randn((n, k), dtype, device, g, scale=k ** -0.5)

    def bias(n):
        return randn((n,), dtype, device, g, scale=0.1) if d.o_bias else None

    w = {"kv_a": lin(d.latent_width, d.hidden), "kv_a_bias": bias(d.latent_width),
         "kv_a_norm": rmsnorm.norm_weight(d.kv_lora_rank, dtype, device, g),
         "kv_b": lin(h * (d.qk_nope_head_dim + d.v_head_dim), d.kv_lora_rank),
         "o": lin(d.hidden, h * d.v_head_dim), "o_bias": bias(d.hidden)}
    if d.q_lora_rank:
        w.update({"q_a": lin(d.q_lora_rank, d.hidden), "q_a_bias": bias(d.q_lora_rank),
                  "q_a_norm": rmsnorm.norm_weight(d.q_lora_rank, dtype, device, g),
                  "q_b": lin(h * d.qk_head_dim, d.q_lora_rank)})
    else:
        w["q"] = lin(h * d.qk_head_dim, d.hidden)
    return w


def absorbed(d: MlaDims, kv_b: torch.Tensor) -> tuple:
    """(W_UK as [H, R, Dn] for q_lat = q_nope W_UK, W_UV [H, Dv, R]) as head_gemm weights: views of kv_b."""
    per_head = kv_b.view(d.heads, d.qk_nope_head_dim + d.v_head_dim, d.kv_lora_rank)
    return per_head[:, : d.qk_nope_head_dim].transpose(1, 2), per_head[:, d.qk_nope_head_dim:]


def _queries_and_latents(d: MlaDims, impl, w, x, cos, sin):
    """q [M, H, Dn + Dr] (q_pe rotated in place), c [M, R] normalised latents, k_pe [M, 1, Dr] rotated."""
    m, r, dn = x.shape[0], d.kv_lora_rank, d.qk_nope_head_dim
    if d.q_lora_rank:
        cq = impl("gemm")(x=x, w=w["q_a"], b=w["q_a_bias"])
        q = impl("gemm")(x=impl("rmsnorm")(x=cq, w=w["q_a_norm"], eps=d.norm_eps), w=w["q_b"], b=None)
    else:
        q = impl("gemm")(x=x, w=w["q"], b=None)
    q = q.view(m, d.heads, d.qk_head_dim)
    ckv = impl("gemm")(x=x, w=w["kv_a"], b=w["kv_a_bias"])
    c = impl("rmsnorm")(x=ckv[:, :r], w=w["kv_a_norm"], eps=d.norm_eps)
    q_pe, k_pe = impl("rope")(q=q[..., dn:], k=ckv[:, None, r:], cos=cos, sin=sin)
    q[..., dn:].copy_(q_pe)
    return q, c, k_pe


def decode_forward(d: MlaDims, backend: str, weights, x, cache, positions, cos, sin):
    """One decode step: writes the new latents into cache [B, S, R + Dr] at `positions` (every sequence
    attends the whole cache: positions[b] = S - 1), returns the block output [B, hidden]."""
    impl = lambda kind: implementation(kind, backend)  # noqa: E731
    b, dn = x.shape[0], d.qk_nope_head_dim
    q, c, k_pe = _queries_and_latents(d, impl, weights, x, cos, sin)
    impl("latent_append")(c_kv=c, k_pe=k_pe, cache=cache, positions=positions)
    w_uk, w_uv = absorbed(d, weights["kv_b"])
    q_lat = impl("head_gemm")(x=q[..., :dn], w=w_uk)
    o_lat = impl("mla_attention")(q_lat=q_lat, q_pe=q[..., dn:], cache=cache, scale=d.scale)
    o = impl("head_gemm")(x=o_lat, w=w_uv)
    return impl("gemm")(x=o.reshape(b, d.heads * d.v_head_dim), w=weights["o"], b=weights["o_bias"])


def prefill_forward(d: MlaDims, backend: str, weights, x, cache, prefix: int, cos, sin):
    """One prefill chunk: x [B T, hidden] (sequence-major), cache [B, prefix + T, R + Dr] holding the prefix;
    writes the chunk's latents, decompresses all of them, returns [B T, hidden]."""
    impl = lambda kind: implementation(kind, backend)  # noqa: E731
    b, s = cache.shape[0], cache.shape[1]
    t, r = s - prefix, d.kv_lora_rank
    q, c, k_pe = _queries_and_latents(d, impl, weights, x, cos, sin)
    cache[:, prefix:, :r] = c.view(b, t, r)  # the chunk write: strided copies (see prefill_op_shapes)
    cache[:, prefix:, r:] = k_pe.view(b, t, -1)
    kv = impl("gemm")(x=cache[..., :r].reshape(b * s, r), w=weights["kv_b"], b=None)
    kv = kv.view(b, s, d.heads, d.qk_nope_head_dim + d.v_head_dim)
    o = impl("mla_prefill_attention")(q=q.view(b, t, d.heads, d.qk_head_dim).transpose(1, 2), kv=kv,
                                      k_pe=cache[..., r:], prefix=prefix, scale=d.scale)
    o = o.transpose(1, 2).reshape(b * t, d.heads * d.v_head_dim)
    return impl("gemm")(x=o, w=weights["o"], b=weights["o_bias"])


def reference(d: MlaDims, weights, x, cache_before, prefix: int, cos, sin) -> tuple:
    """The block in float64 without absorption (K and V decompressed, as the model is written): for
    a chunk of T = M / B tokens after `prefix` cached ones (decode: T = 1). Returns (y [M, hidden], cache
    [B, prefix + T, R + Dr] with the chunk's latents)."""
    w = {k: None if v is None else as_float64(v) for k, v in weights.items()}
    b = cache_before.shape[0]
    m, r, dn, h = x.shape[0], d.kv_lora_rank, d.qk_nope_head_dim, d.heads
    t = m // b
    x = as_float64(x)

    def lin(a, name, bias=None):
        (y,) = gemm.reference(a, w[name], w.get(bias) if bias else None)
        return y

    if d.q_lora_rank:
        (cq,) = rmsnorm.reference(lin(x, "q_a", "q_a_bias"), w["q_a_norm"], d.norm_eps)
        q = lin(cq, "q_b")
    else:
        q = lin(x, "q")
    q = q.view(m, h, d.qk_head_dim)
    ckv = lin(x, "kv_a", "kv_a_bias")
    (c,) = rmsnorm.reference(ckv[:, :r], w["kv_a_norm"], d.norm_eps)
    q_pe, k_pe = rope.reference(q[..., dn:], ckv[:, None, r:], cos, sin)
    cache = torch.cat([as_float64(cache_before[:, :prefix]),
                       torch.cat([c, k_pe[:, 0]], dim=-1).view(b, t, -1)], dim=1)
    kv = lin(cache[..., :r].reshape(-1, r), "kv_b").view(b, prefix + t, h, dn + d.v_head_dim)
    q_full = torch.cat([q[..., :dn], q_pe], dim=-1).view(b, t, h, -1).transpose(1, 2)
    (o,) = mla_prefill_attention.reference(q_full, kv, cache[..., r:], prefix, d.scale)
    y = lin(o.transpose(1, 2).reshape(m, h * d.v_head_dim), "o", "o_bias")
    return y, cache

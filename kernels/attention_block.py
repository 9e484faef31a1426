"""The grouped-query attention block of Llama, Qwen2/3, Mistral and gpt-oss composed from the op files, in
decode and in chunked prefill, with every option those models use: qkv bias (Qwen2, gpt-oss), q/k norm
(Qwen3), sliding window and attention sinks (gpt-oss), o_proj bias (gpt-oss). Their op shapes (FLOPs,
bytes) and a float64 reference.

x is the input-normed hidden state [M, hidden]. Ops, in order:
  qkv_proj   qkv = x W_qkv^T (+ b_qkv)              [M, (Hq + 2 Hkv) D]   (kernels/gemm.py, bias=qkv_bias)
  qk_norm    q, k = rmsnorm per head (w_q, w_k)                           (kernels/qk_norm.py, Qwen3)
  rope       q, k rotated (default or YaRN tables, kernels/rope_scaling.py)
  kv_append  k, v into the cache (decode) / the chunk's rows (prefill: a strided copy, kernels/kv_chunk.py)
  attention  decode (kernels/attention.py) or prefill (kernels/prefill_attention.py), window and sinks
  o_proj     y = a W_o^T (+ b_o)                    [M, hidden]           (kernels/gemm.py, bias=o_bias)
Decode caches: with a window, the cache may hold every past token (the kernels read the last W) or only the
last W (a ring buffer: the decode softmax does not depend on slot order).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels import attention, gemm, kv_cache, prefill_attention, qk_norm, rope
from kernels.dtypes import generator, randn
from kernels.head_sizes import HeadSizes
from kernels.op import as_float64
from kernels.rmsnorm import norm_weight, rms64
from kernels.rope_scaling import RopeScaling


@dataclass(frozen=True)
class AttentionDims(HeadSizes):
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    qkv_bias: bool = False
    o_bias: bool = False
    qk_norm: bool = False
    window: int = 0
    sinks: bool = False
    norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None


def decode_op_shapes(d: AttentionDims, batch: int, context: int) -> dict:
    """name -> (kind, module, shape) of the block at decode; the cache bounded by the window."""
    shapes = {"qkv_proj": ("gemm", gemm, gemm.GemmShape(batch, d.hidden, d.qkv_size, d.qkv_bias))}
    if d.qk_norm:
        shapes["qk_norm"] = ("qk_norm", qk_norm, qk_norm.QkNormShape(batch, d.heads, d.kv_heads, d.head_dim,
                                                                     d.norm_eps))
    cached = min(context, d.window) if d.window else context
    shapes["rope"] = ("rope", rope, rope.RopeShape(batch, d.heads, d.kv_heads, d.head_dim, d.rope_theta))
    shapes["kv_append"] = ("kv_append", kv_cache, kv_cache.AppendShape(batch, d.kv_heads, d.head_dim, cached))
    shapes["attention"] = ("attention", attention, attention.AttentionShape(
        batch, d.heads, d.kv_heads, d.head_dim, context, d.window, d.sinks))
    shapes["o_proj"] = ("gemm", gemm, gemm.GemmShape(batch, d.q_size, d.hidden, d.o_bias))
    return shapes


def prefill_op_shapes(d: AttentionDims, batch: int, chunk: int, prefix: int) -> dict:
    """name -> (kind, module, shape) of the block for one prefill chunk (the chunk's KV write is a strided
    copy, kernels/kv_chunk.py, not listed)."""
    m = batch * chunk
    shapes = {"qkv_proj": ("gemm", gemm, gemm.GemmShape(m, d.hidden, d.qkv_size, d.qkv_bias))}
    if d.qk_norm:
        shapes["qk_norm"] = ("qk_norm", qk_norm, qk_norm.QkNormShape(m, d.heads, d.kv_heads, d.head_dim,
                                                                     d.norm_eps))
    shapes["rope"] = ("rope", rope, rope.RopeShape(m, d.heads, d.kv_heads, d.head_dim, d.rope_theta))
    shapes["attention"] = ("attention", prefill_attention, prefill_attention.PrefillAttentionShape(
        batch, d.heads, d.kv_heads, d.head_dim, chunk, prefix, d.window, d.sinks))
    shapes["o_proj"] = ("gemm", gemm, gemm.GemmShape(m, d.q_size, d.hidden, d.o_bias))
    return shapes


def make_weights(d: AttentionDims, dtype: torch.dtype, device, seed: int) -> dict:
    g = generator(seed, device)
    w = {"qkv": randn((d.qkv_size, d.hidden), dtype, device, g, scale=d.hidden ** -0.5),
         "o": randn((d.hidden, d.q_size), dtype, device, g, scale=d.q_size ** -0.5)}
    w["qkv_bias"] = randn((d.qkv_size,), dtype, device, g, scale=0.1) if d.qkv_bias else None
    w["o_bias"] = randn((d.hidden,), dtype, device, g, scale=0.1) if d.o_bias else None
    w["q_norm"] = norm_weight(d.head_dim, dtype, device, g) if d.qk_norm else None
    w["k_norm"] = norm_weight(d.head_dim, dtype, device, g) if d.qk_norm else None
    w["sinks"] = randn((d.heads,), torch.float32, device, g) if d.sinks else None
    return w


def _impl(kind: str, backend: str):
    if kind == "qk_norm":
        if backend == "triton":
            from kernels.triton.qk_norm import triton_qk_norm

            return triton_qk_norm
        return qk_norm.torch_qk_norm
    if kind == "prefill_attention":
        return prefill_attention.implementation(backend)
    from kernels.backends import implementation

    return implementation(kind, backend)


def _qkv(d: AttentionDims, backend: str, w, x, cos, sin):
    m = x.shape[0]
    qkv = _impl("gemm", backend)(x=x, w=w["qkv"], b=w["qkv_bias"])
    q = qkv[:, : d.q_size].view(m, d.heads, d.head_dim)
    k = qkv[:, d.q_size: d.q_size + d.kv_size].view(m, d.kv_heads, d.head_dim)
    v = qkv[:, d.q_size + d.kv_size:].view(m, d.kv_heads, d.head_dim)
    if d.qk_norm:
        q, k = _impl("qk_norm", backend)(q=q, k=k, w_q=w["q_norm"], w_k=w["k_norm"], eps=d.norm_eps)
    q, k = _impl("rope", backend)(q=q, k=k, cos=cos, sin=sin)
    return q, k, v


def decode_forward(d: AttentionDims, backend: str, weights, x, k_cache, v_cache, slots, cos, sin):
    """One decode step: k, v written at cache slot `slots` [B] (the position, or position % W in a
    window-sized ring buffer); every slot of the cache is then attended (lengths None), the kernels
    bounding the read by the window. Returns [B, hidden]."""
    b = x.shape[0]
    q, k, v = _qkv(d, backend, weights, x, cos, sin)
    _impl("kv_append", backend)(k=k, v=v, k_cache=k_cache, v_cache=v_cache, positions=slots)
    a = _impl("attention", backend)(q=q, k_cache=k_cache, v_cache=v_cache, lengths=None, window=d.window,
                                    sinks=weights["sinks"])
    return _impl("gemm", backend)(x=a.reshape(b, d.q_size), w=weights["o"], b=weights["o_bias"])


def prefill_forward(d: AttentionDims, backend: str, weights, x, k_cache, v_cache, prefix: int, cos, sin):
    """One prefill chunk: x [B T, hidden]; k_cache, v_cache [B, Hkv, prefix + T, D] holding the cached
    prefix (under a window, its last min(P, W - 1) tokens: `prefix` counts the cached ones). Returns
    [B T, hidden]."""
    b, s = k_cache.shape[0], k_cache.shape[2]
    t = s - prefix
    q, k, v = _qkv(d, backend, weights, x, cos, sin)
    k_cache[:, :, prefix:] = k.view(b, t, d.kv_heads, d.head_dim).transpose(1, 2)
    v_cache[:, :, prefix:] = v.view(b, t, d.kv_heads, d.head_dim).transpose(1, 2)
    q = q.view(b, t, d.heads, d.head_dim).transpose(1, 2)
    a = _impl("prefill_attention", backend)(q=q, k=k_cache, v=v_cache, prefix=prefix, window=d.window,
                                            sinks=weights["sinks"])
    a = a.transpose(1, 2).reshape(b * t, d.q_size)
    return _impl("gemm", backend)(x=a, w=weights["o"], b=weights["o_bias"])


def reference(d: AttentionDims, weights, x, k_past, v_past, cos, sin) -> tuple:
    """The block in float64 for a chunk of T = M / B tokens after the cached k_past, v_past
    [B, Hkv, P', D] (decode: T = 1); the window masks by relative position. Returns (y [M, hidden],
    k, v [B, Hkv, P' + T, D])."""
    w = {k: None if v is None else as_float64(v) for k, v in weights.items()}
    b, p = k_past.shape[0], k_past.shape[2]
    m = x.shape[0]
    t = m // b
    (qkv,) = gemm.reference(as_float64(x), w["qkv"], w["qkv_bias"])
    q = qkv[:, : d.q_size].view(m, d.heads, d.head_dim)
    k = qkv[:, d.q_size: d.q_size + d.kv_size].view(m, d.kv_heads, d.head_dim)
    v = qkv[:, d.q_size + d.kv_size:].view(m, d.kv_heads, d.head_dim)
    if d.qk_norm:
        q, k = rms64(q, w["q_norm"], d.norm_eps), rms64(k, w["k_norm"], d.norm_eps)
    q, k = rope.reference(q, k, cos, sin)
    kc = torch.cat([as_float64(k_past), k.view(b, t, d.kv_heads, d.head_dim).transpose(1, 2)], dim=2)
    vc = torch.cat([as_float64(v_past), v.view(b, t, d.kv_heads, d.head_dim).transpose(1, 2)], dim=2)
    (a,) = prefill_attention.reference(q.view(b, t, d.heads, d.head_dim).transpose(1, 2), kc, vc, p, d.window,
                                       w["sinks"])
    (y,) = gemm.reference(a.transpose(1, 2).reshape(m, d.q_size), w["o"], w["o_bias"])
    return y, kc, vc

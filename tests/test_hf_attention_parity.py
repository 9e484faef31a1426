"""The attention blocks of DeepSeek-V3 (MLA), gpt-oss (sliding and full layers, sinks, biases, YaRN) and
Qwen3 (q/k norm) against transformers' own modules (DeepseekV3Attention, GptOssAttention, Qwen3Attention)
on the same random weights, in decode (one token after a cached context) and in prefill (a chunk continuing
a cache), float32, both backends (Triton under the interpreter on a CPU).

transformers' eager attention is the reference path; its caches are DynamicCache layers filled with the
same random past (for MLA: the normalised latent and the rotated rope key, exactly what its
DeepseekV3Attention caches); masks come from transformers' own mask functions (masking_utils).

Tolerances (||ours - theirs|| / ||theirs||, float32 on both sides; what remains is summation order, the
absorbed MLA decode's reassociation (q_nope W_UK) c and (P c) W_UV, and float32 rounding of the rope tables):
2e-6 for each architecture, about 4x the largest error measured over every case and both backends on a CPU
(MLA 5.2e-7, gpt-oss 3.9e-7, Qwen3 3.1e-7).
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

transformers = pytest.importorskip(
    "transformers", reason="transformers is a test dependency (pip install .[test])")

from triton_helpers import DEVICE, rel_error

from kernels import attention_block, mla_block
from kernels import hf_attention_mapping as hfm
from kernels.rope_scaling import cos_sin

BACKENDS = ["torch", pytest.param("triton", marks=pytest.mark.interpreter)]
TOL = {"mla": 2e-6, "gpt_oss": 2e-6, "qwen3": 2e-6}
B = 2


def _randomise(module, seed):
    """transformers initialises norms to 1, biases to 0 and sinks uninitialised: redraw every parameter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if "norm" in name:
                p.copy_(1.0 + 0.1 * r)
            elif name.endswith("bias"):
                p.copy_(0.1 * r)
            elif name == "sinks":
                p.copy_(r)
            else:
                p.copy_(r * p.shape[1] ** -0.5)
    return module.to(DEVICE).eval()


def _cache(*past, layer_idx=0):
    """A DynamicCache whose layer `layer_idx` (the module's own) holds the past; earlier layers empty."""
    from transformers.cache_utils import DynamicCache

    cache = DynamicCache()
    for i in range(layer_idx):
        cache.update(*(t[:, :, :0].clone() for t in past), i)
    cache.update(*(t.clone() for t in past), layer_idx)
    return cache


def _layer_kv(cache):
    layer = cache.layers[0]
    return layer.keys, layer.values


def _additive(allowed):
    """[T, S] bool -> [B, 1, T, S] float mask as transformers' eager attention adds it."""
    m = torch.zeros(allowed.shape, device=DEVICE).masked_fill(~allowed, float("-inf"))
    return m[None, None].expand(B, 1, *allowed.shape)


def _hf_mask(prefix, t, window):
    """Which keys 0..prefix+t-1 each chunk query sees, from transformers' own mask functions."""
    from transformers.masking_utils import and_masks, causal_mask_function, sliding_window_overlay

    fn = causal_mask_function if not window else and_masks(causal_mask_function, sliding_window_overlay(window))
    q_idx = (prefix + torch.arange(t, device=DEVICE))[:, None]
    kv_idx = torch.arange(prefix + t, device=DEVICE)[None, :]
    return fn(0, 0, q_idx, kv_idx).expand(t, prefix + t)


def _run(attn, hidden, positions, rotary, mask, cache):
    pos = positions.view(B, -1)
    with torch.no_grad():
        out = attn(hidden, position_embeddings=rotary(hidden, pos), attention_mask=mask, cache=cache)
    return out[0] if isinstance(out, tuple) else out


# ---------------------------------------------------------------------------------------------------
# DeepSeek-V3: MLA


def _deepseek_config(q_lora_rank, bias):
    from transformers import DeepseekV3Config

    cfg = DeepseekV3Config(
        hidden_size=64, num_attention_heads=4, num_key_value_heads=4, q_lora_rank=q_lora_rank, kv_lora_rank=64,
        qk_rope_head_dim=16, qk_nope_head_dim=32, v_head_dim=64, attention_bias=bias, num_hidden_layers=1,
        n_routed_experts=8, n_group=1, topk_group=1, max_position_embeddings=2560, rope_interleave=True,
        # YaRN as DeepSeek-V3 ships it (factor 40, mscale = mscale_all_dim = 1), on a short original context
        rope_parameters={"rope_type": "yarn", "factor": 40.0, "original_max_position_embeddings": 64,
                         "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0,
                         "rope_theta": 10000.0})
    cfg._attn_implementation = "eager"
    return cfg


MLA_CASES = [pytest.param((32, False), id="q_lora"), pytest.param((None, True), id="no_q_lora-bias")]


@pytest.fixture(scope="module", params=MLA_CASES)
def deepseek(request):
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3Attention, DeepseekV3RotaryEmbedding

    cfg = _deepseek_config(*request.param)
    attn = _randomise(DeepseekV3Attention(cfg, layer_idx=0), seed=1)
    return cfg, attn, DeepseekV3RotaryEmbedding(cfg).to(DEVICE)


def test_mla_dims_and_scale_follow_the_config(deepseek):
    cfg, attn, _ = deepseek
    d = hfm.mla_dims(cfg)
    assert d.scale == pytest.approx(attn.scaling, rel=1e-12)
    assert d.scale != pytest.approx(d.qk_head_dim ** -0.5)  # YaRN's mscale^2 is in it
    assert d.latent_width == cfg.kv_lora_rank + cfg.qk_rope_head_dim


def _mla_inputs(d, prefix, t, seed):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, t, d.hidden, generator=g).to(DEVICE)
    c_past = torch.randn(B, 1, prefix, d.kv_lora_rank, generator=g).to(DEVICE)
    pe_past = torch.randn(B, 1, prefix, d.qk_rope_head_dim, generator=g).to(DEVICE)
    positions = (prefix + torch.arange(t, device=DEVICE)).repeat(B)
    return hidden, c_past, pe_past, positions


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("prefix,t", [(9, 1), (0, 6), (7, 5)], ids=["decode", "prefill", "chunk"])
def test_mla_matches_deepseek_v3_attention(deepseek, backend, prefix, t):
    cfg, attn, rotary = deepseek
    d = hfm.mla_dims(cfg)
    hidden, c_past, pe_past, positions = _mla_inputs(d, prefix, t, seed=prefix + t)
    cache = _cache(c_past, pe_past)
    mask = None if t == 1 else _additive(_hf_mask(prefix, t, 0))
    theirs = _run(attn, hidden, positions, rotary, mask, cache).reshape(B * t, d.hidden)
    hf_c, hf_pe = _layer_kv(cache)

    weights = hfm.mla_weights(attn.state_dict(), d, cfg.rope_interleave)
    ours_cache = torch.cat([torch.cat([c_past[:, 0], pe_past[:, 0]], dim=-1),
                            torch.full((B, t, d.latent_width), float("nan"), device=DEVICE)], dim=1)
    cos, sin = cos_sin(positions, d.qk_rope_head_dim, d.rope_theta, d.rope_scaling)
    x = hidden.reshape(B * t, d.hidden)
    if t == 1:  # decode: absorbed W_UK / W_UV over the latent cache
        y = mla_block.decode_forward(d, backend, weights, x, ours_cache, positions, cos, sin)
    else:  # prefill: K and V decompressed for the chunk and its prefix
        y = mla_block.prefill_forward(d, backend, weights, x, ours_cache, prefix, cos, sin)
    assert rel_error(y, theirs) < TOL["mla"]
    assert rel_error(ours_cache[..., : d.kv_lora_rank], hf_c[:, 0]) < TOL["mla"], "latent written differently"
    assert rel_error(ours_cache[..., d.kv_lora_rank:], hf_pe[:, 0]) < TOL["mla"], "rope key written differently"
    ref, ref_cache = mla_block.reference(d, weights, x, ours_cache, prefix, cos, sin)
    assert rel_error(y, ref) < TOL["mla"] and rel_error(ours_cache, ref_cache) < TOL["mla"]


def test_mla_op_shapes_count_the_latent_cache_once(deepseek):
    cfg, _, _ = deepseek
    d = hfm.mla_dims(cfg)
    ops = mla_block.decode_op_shapes(d, batch=4, context=100)
    _, module, shape = ops["mla_attention"]
    assert module.min_bytes(shape, 2) == 2 * (4 * 100 * d.latent_width + 4 * d.heads * (d.latent_width + 64))
    assert ops["q_absorb"][2].n == d.kv_lora_rank and ops["out_absorb"][2].n == d.v_head_dim
    assert ("q_a_proj" in ops) == bool(cfg.q_lora_rank)
    pre = mla_block.prefill_op_shapes(d, batch=2, chunk=8, prefix=24)
    assert pre["kv_b_proj"][2].m == 2 * 32  # every cached latent decompressed for the chunk


# ---------------------------------------------------------------------------------------------------
# gpt-oss (sliding and full layers, sinks, biases, YaRN) and Qwen3 (q/k norm)


@pytest.fixture(scope="module")
def gpt_oss():
    from transformers import GptOssConfig
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssAttention, GptOssRotaryEmbedding

    cfg = GptOssConfig(hidden_size=64, num_attention_heads=8, num_key_value_heads=2, head_dim=32, sliding_window=8,
                       num_hidden_layers=2, num_local_experts=4, intermediate_size=64)
    cfg._attn_implementation = "eager"
    layers = [_randomise(GptOssAttention(cfg, layer_idx=i), seed=10 + i) for i in range(2)]
    return cfg, layers, GptOssRotaryEmbedding(cfg).to(DEVICE)


@pytest.fixture(scope="module")
def qwen3():
    from transformers import Qwen3Config
    from transformers.models.qwen3.modeling_qwen3 import Qwen3Attention, Qwen3RotaryEmbedding

    cfg = Qwen3Config(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=32, num_hidden_layers=1,
                      rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
    cfg._attn_implementation = "eager"
    return cfg, [_randomise(Qwen3Attention(cfg, layer_idx=0), seed=20)], Qwen3RotaryEmbedding(cfg).to(DEVICE)


def test_gpt_oss_dims_follow_the_layer_types(gpt_oss):
    cfg, layers, _ = gpt_oss
    sliding, full = (hfm.attention_dims(cfg, i) for i in range(2))
    assert (sliding.window, full.window) == (8, 0)
    assert sliding.sinks and sliding.qkv_bias and sliding.o_bias
    assert hfm.rope_scaling(cfg).factor == 32.0
    ops = attention_block.decode_op_shapes(sliding, batch=2, context=1000)
    assert ops["attention"][2].cached == 8 and ops["kv_append"][2].context == 8  # the cache bounded by W
    assert ops["o_proj"][2].bias and ops["qkv_proj"][2].bias


def _gqa_case(request, arch):
    cfg, layers, rotary = request.getfixturevalue(arch)
    return cfg, layers, rotary


def _gqa_inputs(d, prefix, t, seed):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, t, d.hidden, generator=g).to(DEVICE)
    k_past, v_past = (torch.randn(B, d.kv_heads, prefix, d.head_dim, generator=g).to(DEVICE) for _ in range(2))
    return hidden, k_past, v_past, (prefix + torch.arange(t, device=DEVICE)).repeat(B)


GQA_CASES = [("gpt_oss", 0), ("gpt_oss", 1), ("qwen3", 0)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("prefix,t", [(13, 1), (0, 6), (11, 5)], ids=["decode", "prefill", "chunk"])
@pytest.mark.parametrize("arch,layer", GQA_CASES, ids=["gpt_oss-sliding", "gpt_oss-full", "qwen3"])
def test_gqa_block_matches_hf_attention(request, arch, layer, backend, prefix, t):
    cfg, layers, rotary = _gqa_case(request, arch)
    attn = layers[layer]
    d = hfm.attention_dims(cfg, layer, qk_norm=arch == "qwen3")
    hidden, k_past, v_past, positions = _gqa_inputs(d, prefix, t, seed=prefix + t + layer)
    # transformers keeps every past token here and masks with its own sliding-window function
    theirs = _run(attn, hidden, positions, rotary, _additive(_hf_mask(prefix, t, d.window)),
                  _cache(k_past, v_past, layer_idx=layer)).reshape(B * t, d.hidden)

    weights = hfm.attention_weights(attn.state_dict(), d)
    cos, sin = cos_sin(positions, d.head_dim, d.rope_theta, d.rope_scaling)
    x = hidden.reshape(B * t, d.hidden)
    kept = min(prefix, d.window - 1) if d.window else prefix  # what a window-bounded cache still holds
    nan = torch.full((B, d.kv_heads, t, d.head_dim), float("nan"), device=DEVICE)
    k_cache = torch.cat([k_past[:, :, prefix - kept:], nan], dim=2)
    v_cache = torch.cat([v_past[:, :, prefix - kept:], nan.clone()], dim=2)
    if t == 1:
        slots = torch.full((B,), kept, device=DEVICE)
        y = attention_block.decode_forward(d, backend, weights, x, k_cache, v_cache, slots, cos, sin)
    else:
        y = attention_block.prefill_forward(d, backend, weights, x, k_cache, v_cache, kept, cos, sin)
    assert rel_error(y, theirs) < TOL[arch]
    ref, _, _ = attention_block.reference(d, weights, x, k_past[:, :, prefix - kept:], v_past[:, :, prefix - kept:],
                                          cos, sin)
    assert rel_error(y, ref) < TOL[arch]


@pytest.mark.parametrize("backend", BACKENDS)
def test_sliding_decode_over_a_full_cache_and_a_ring_buffer(gpt_oss, backend):
    """The sliding layer's decode with the whole past cached (the kernels read the last W) and with a
    W-slot ring buffer (token p in slot p % W) both equal transformers' GptOssAttention."""
    cfg, layers, rotary = gpt_oss
    d = hfm.attention_dims(cfg, 0)
    prefix, w = 21, d.window
    hidden, k_past, v_past, positions = _gqa_inputs(d, prefix, 1, seed=3)
    theirs = _run(layers[0], hidden, positions, rotary, _additive(_hf_mask(prefix, 1, w)),
                  _cache(k_past, v_past)).reshape(B, d.hidden)
    weights = hfm.attention_weights(layers[0].state_dict(), d)
    cos, sin = cos_sin(positions, d.head_dim, d.rope_theta, d.rope_scaling)
    x = hidden.reshape(B, d.hidden)
    nan = torch.full((B, d.kv_heads, 1, d.head_dim), float("nan"), device=DEVICE)
    full_k, full_v = torch.cat([k_past, nan], dim=2), torch.cat([v_past, nan.clone()], dim=2)
    y_full = attention_block.decode_forward(d, backend, weights, x, full_k, full_v,
                                            torch.full((B,), prefix, device=DEVICE), cos, sin)
    ring_k = torch.full((B, d.kv_heads, w, d.head_dim), float("nan"), device=DEVICE)
    ring_v = ring_k.clone()
    for p in range(prefix - w + 1, prefix):
        ring_k[:, :, p % w], ring_v[:, :, p % w] = k_past[:, :, p], v_past[:, :, p]
    y_ring = attention_block.decode_forward(d, backend, weights, x, ring_k, ring_v,
                                            torch.full((B,), prefix % w, device=DEVICE), cos, sin)
    assert rel_error(y_full, theirs) < TOL["gpt_oss"]
    assert rel_error(y_ring, theirs) < TOL["gpt_oss"]

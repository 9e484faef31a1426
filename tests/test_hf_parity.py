"""The decode layer and the whole tiny model, both backends, against Hugging Face transformers' Llama.

Same random weights (mapped by kernels.hf_mapping) and the same KV cache; fp32 everywhere, the Triton
kernels under the interpreter on a CPU.
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

transformers = pytest.importorskip(
    "transformers", reason="transformers is a test dependency (pip install .[test])")

from triton_helpers import DEVICE, rel_error

from bench.configs.model_configs import MODELS
from kernels import hf_mapping as hf
from kernels import rope
from kernels.backends import parse_backend
from kernels.layer import LayerDims, layer_forward
from kernels.model import model_forward

TINY = MODELS["tiny"]
DIMS = LayerDims(TINY.hidden, TINY.heads, TINY.kv_heads, TINY.head_dim, TINY.ffn, TINY.vocab,
                 TINY.qkv_bias, TINY.norm_eps, TINY.rope_theta)
BACKENDS = ["torch", pytest.param("triton", marks=pytest.mark.interpreter)]
TOL = 1e-4  # fp32 on both sides; what remains is summation order
BATCH, CONTEXT = 3, 9  # the new token is at position CONTEXT - 1


@pytest.fixture(scope="module")
def hf_model():
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(hf.llama_config(DIMS, TINY.layers)).to(DEVICE).eval()
    # HF initialises norms to exactly 1 and linears at std 0.02: redraw so every weight matters
    g = torch.Generator(device="cpu").manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            p.copy_((1.0 + 0.1 * r) if p.dim() == 1 else r * (1.0 if "embed" in name else p.shape[1] ** -0.5))
    return model


def _empty_cache():
    from transformers.cache_utils import DynamicCache

    return DynamicCache()


def test_weight_mapping_round_trips(hf_model):
    state = {k: v for k, v in hf_model.state_dict().items() if k.startswith("model.layers.1.")}
    ours = hf.layer_weights_from_hf(state, DIMS, "model.layers.1.")
    assert ours["qkv"].shape == (DIMS.q_size + 2 * DIMS.kv_size, DIMS.hidden)
    assert ours["gate_up"].shape == (2 * DIMS.ffn, DIMS.hidden)
    back = hf.layer_weights_to_hf(ours, DIMS, "model.layers.1.")
    assert back.keys() == state.keys()
    assert all(torch.equal(back[k], state[k]) for k in state)


@pytest.mark.parametrize("backend", BACKENDS)
def test_decoder_layer_matches_hf(hf_model, backend):
    layer = hf_model.model.layers[0]
    g = torch.Generator(device="cpu").manual_seed(2)
    k_past, v_past = (torch.randn(BATCH, DIMS.kv_heads, CONTEXT - 1, DIMS.head_dim, generator=g).to(DEVICE)
                      for _ in range(2))
    hidden = torch.randn(BATCH, 1, DIMS.hidden, generator=g).to(DEVICE)
    residual = torch.randn(BATCH, DIMS.hidden, generator=g).to(DEVICE)

    cache = _empty_cache()
    cache.update(k_past.clone(), v_past.clone(), 0)
    pos = torch.full((BATCH, 1), CONTEXT - 1, device=DEVICE)
    with torch.no_grad():
        out = layer(hidden, attention_mask=None, position_ids=pos, use_cache=True,
                    position_embeddings=hf_model.model.rotary_emb(hidden, pos),
                    **{hf.cache_kwarg(layer.forward): cache})
    hf_out = (out[0] if isinstance(out, tuple) else out)[:, 0]
    hf_k, hf_v = hf.cache_layer_kv(cache, 0)

    # our cache: the same past, and NaN in the new token's slot, which the layer must fill before use
    k_cache = torch.cat([k_past, torch.full_like(k_past[:, :, :1], float("nan"))], dim=2)
    v_cache = torch.cat([v_past, torch.full_like(v_past[:, :, :1], float("nan"))], dim=2)
    positions = pos[:, 0]
    cos, sin = rope.cos_sin(positions, DIMS.head_dim, DIMS.rope_theta)
    weights = hf.layer_weights_from_hf(layer.state_dict(), DIMS)
    # the HF layer's input is the residual stream; ours takes it as x + residual
    y, r2 = layer_forward(DIMS, parse_backend(backend), weights, hidden[:, 0] - residual, residual,
                          k_cache, v_cache, positions, cos, sin)
    assert rel_error(y + r2, hf_out) < TOL
    assert rel_error(k_cache, hf_k) < TOL, "rotated k appended differently"
    assert rel_error(v_cache, hf_v) < TOL


@pytest.mark.parametrize("backend", BACKENDS)
def test_tiny_model_next_token_logits_match_hf(hf_model, backend):
    g = torch.Generator(device="cpu").manual_seed(3)
    prompt = torch.randint(0, DIMS.vocab, (BATCH, CONTEXT - 1), generator=g).to(DEVICE)
    next_tokens = torch.randint(0, DIMS.vocab, (BATCH,), generator=g).to(DEVICE)
    with torch.no_grad():
        cache = hf.output_cache(hf_model(input_ids=prompt, use_cache=True))
        past = [tuple(t.clone() for t in hf.cache_layer_kv(cache, i)) for i in range(TINY.layers)]
        hf_logits = hf_model(input_ids=next_tokens[:, None], use_cache=True,
                             **{hf.cache_kwarg(hf_model.forward): cache}).logits[:, -1]

    weights = hf.model_weights_from_hf(hf_model, DIMS)
    layers = []
    for layer_weights, (k_past, v_past) in zip(weights["layers"], past):
        # the past from HF's prefill, and NaN in the new token's slot: the step must fill it before use
        k_cache, v_cache = (torch.cat([t, torch.full_like(t[:, :, :1], float("nan"))], dim=2)
                            for t in (k_past, v_past))
        layers.append({"weights": layer_weights, "k_cache": k_cache, "v_cache": v_cache})
    positions = torch.full((BATCH,), CONTEXT - 1, device=DEVICE)
    cos, sin = rope.cos_sin(positions, DIMS.head_dim, DIMS.rope_theta)
    x = weights["embed"][next_tokens]  # the embedding gather (model_forward starts after it)
    # the first layer's residual stream is the embedding itself: x + 0 (a real zero, not a test input)
    logits = model_forward(DIMS, parse_backend(backend), x, torch.zeros_like(x), positions, cos, sin, layers,
                           weights["final_norm"], weights["lm_head"])
    assert torch.isfinite(logits).all()
    assert rel_error(logits, hf_logits) < TOL
    assert torch.equal(logits.argmax(-1), hf_logits.argmax(-1))


@pytest.mark.parametrize("prefix", [0, 6])
@pytest.mark.parametrize("backend", ["torch"])
def test_prefill_layer_matches_hf(hf_model, backend, prefix):
    """A chunk of T prompt tokens (after a cached prefix) through our prefill layer and HF's layer."""
    from kernels.prefill_attention import causal_mask
    from kernels.prefill_layer import prefill_forward

    layer, t = hf_model.model.layers[0], 5
    g = torch.Generator(device="cpu").manual_seed(4)
    k_past, v_past = (torch.randn(BATCH, DIMS.kv_heads, prefix, DIMS.head_dim, generator=g).to(DEVICE)
                      for _ in range(2))
    hidden = torch.randn(BATCH, t, DIMS.hidden, generator=g).to(DEVICE)
    residual = torch.randn(BATCH * t, DIMS.hidden, generator=g).to(DEVICE)
    pos = (prefix + torch.arange(t, device=DEVICE)).repeat(BATCH, 1)
    cache = _empty_cache()
    if prefix:
        cache.update(k_past.clone(), v_past.clone(), 0)
    # an explicit additive mask: HF's SDPA path would align a bare is_causal to the top-left corner
    mask = torch.zeros(t, prefix + t, device=DEVICE).masked_fill(~causal_mask(t, prefix, DEVICE), float("-inf"))
    with torch.no_grad():
        out = layer(hidden, attention_mask=mask[None, None].expand(BATCH, 1, t, prefix + t), position_ids=pos,
                    use_cache=True, position_embeddings=hf_model.model.rotary_emb(hidden, pos),
                    **{hf.cache_kwarg(layer.forward): cache})
    hf_out = (out[0] if isinstance(out, tuple) else out).reshape(BATCH * t, DIMS.hidden)
    hf_k, hf_v = hf.cache_layer_kv(cache, 0)

    k_cache, v_cache = (torch.cat([p, torch.full((BATCH, DIMS.kv_heads, t, DIMS.head_dim), float("nan"),
                                                 device=DEVICE)], dim=2) for p in (k_past, v_past))
    cos, sin = rope.cos_sin(pos.reshape(-1), DIMS.head_dim, DIMS.rope_theta)
    weights = hf.layer_weights_from_hf(layer.state_dict(), DIMS)
    y, r2 = prefill_forward(DIMS, parse_backend(backend), weights, hidden.reshape(BATCH * t, -1) - residual,
                            residual, k_cache, v_cache, prefix, cos, sin)
    assert rel_error(y + r2, hf_out) < TOL
    assert rel_error(k_cache, hf_k) < TOL and rel_error(v_cache, hf_v) < TOL

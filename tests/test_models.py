import pytest

from bench.errors import UserError
from bench.configs.model_configs import get_model


@pytest.mark.parametrize("name,billions", [
    # published parameter counts
    ("llama-3.1-8b", 8.03), ("llama-3.1-70b", 70.55), ("llama-3.1-405b", 405.85),
    ("llama-3.2-1b", 1.24), ("llama-3.2-3b", 3.21), ("qwen2.5-7b", 7.62), ("mistral-7b", 7.25),
])
def test_param_counts_match_published(name, billions):
    assert get_model(name).params / 1e9 == pytest.approx(billions, abs=0.01)


def test_llama8b_derived_sizes_by_hand():
    m = get_model("llama-3.1-8b")
    assert m.head_dim == 128
    # K and V, 32 layers, 8 KV heads of 128, bf16
    assert m.kv_bytes_per_token("bf16") == 2 * 32 * 8 * 128 * 2
    assert m.weight_bytes("bf16") == 2 * m.params
    assert m.kv_cache_bytes(4, 100, "bf16") == 4 * 100 * m.kv_bytes_per_token("bf16")


def test_tied_embeddings_counted_once():
    # counted by hand from the published config (hidden 2048, 16 layers, 32 query and 8 KV heads of 64,
    # ffn 8192, vocab 128256), not from the class's own fields: one embedding table shared with the LM head
    layer = 2048 * 2048 + 2 * 2048 * 512 + 2048 * 2048 + 3 * 2048 * 8192 + 2 * 2048  # q, k+v, o, MLP, 2 norms
    embedding = 128256 * 2048
    assert get_model("llama-3.2-1b").params == embedding + 16 * layer + 2048  # + the final norm, once


def test_qkv_bias_adds_parameters():
    q = get_model("qwen2.5-7b")
    assert q.layer_params == (q.hidden * q.qkv_size + q.qkv_size + q.q_size * q.hidden
                              + 3 * q.hidden * q.ffn + 2 * q.hidden)


def test_decode_flops_near_two_per_weight_at_short_context():
    m = get_model("llama-3.1-8b")
    weights_read = m.params - m.vocab * m.hidden  # the embedding table is gathered, not multiplied
    assert m.decode_flops(context=1) == pytest.approx(2 * weights_read, rel=0.01)
    # attention adds 4 * heads * head_dim flops per layer per context entry
    grow = m.decode_flops(context=1001) - m.decode_flops(context=1)
    assert grow == 4 * m.heads * m.head_dim * 1000 * m.layers


def test_unknown_model_names_choices():
    with pytest.raises(UserError, match="llama-3.1-8b"):
        get_model("gpt-5")


def test_issue14_model_sizes_are_shown_in_their_own_units():
    from bench.commands.models import _count
    assert _count(1.236e9) == "1.24 B" and _count(2.5e6) == "2.5 M" and _count(4096) == "4.1 K" and _count(12) == "12"

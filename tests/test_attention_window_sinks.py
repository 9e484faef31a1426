"""Sliding-window attention and attention sinks (gpt-oss) in the decode and prefill attention ops: the
work formulas, the PyTorch baselines and the Triton kernels (interpreter on a CPU) against float64."""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from triton_helpers import DEVICE, INTERPRETER_DTYPES, assert_close, nan_like

from kernels import attention
from kernels import prefill_attention as pa


def test_window_bounds_decode_work_and_cache():
    full = attention.AttentionShape(2, 8, 2, 64, context=1000)
    windowed = attention.AttentionShape(2, 8, 2, 64, context=1000, window=128)
    assert windowed.cached == 128
    assert attention.flops(windowed) * 1000 == attention.flops(full) * 128
    assert attention.min_bytes(windowed, 2) < attention.min_bytes(full, 2)
    short = attention.AttentionShape(2, 8, 2, 64, context=50, window=128)
    assert short.cached == 50 and attention.flops(short) == attention.flops(
        attention.AttentionShape(2, 8, 2, 64, context=50))
    sinks = attention.AttentionShape(2, 8, 2, 64, context=50, sinks=True)
    assert attention.min_bytes(sinks, 2) == attention.min_bytes(short, 2) + 8 * 4


@pytest.mark.parametrize("t,prefix,window", [(5, 0, 3), (7, 2, 4), (9, 20, 6), (4, 3, 100), (1, 30, 8),
                                             (12, 0, 1)])
def test_attended_pairs_counts_the_window_mask(t, prefix, window):
    s = pa.PrefillAttentionShape(1, 2, 1, 16, t, prefix, window=window)
    mask = pa.causal_mask(t, s.cached, "cpu", window)
    assert pa.attended_pairs(t, prefix, window) == int(mask.sum())
    assert pa.attended_pairs(t, prefix, window) <= t * window
    assert mask.shape[1] == s.keys  # every key the cache holds is seen by some query
    assert bool(mask.any(0).all())


@pytest.mark.parametrize("window,sinks,ragged", [(0, True, False), (6, False, True), (6, True, True),
                                                 (40, True, False)])
def test_torch_decode_matches_reference(window, sinks, ragged):
    s = attention.AttentionShape(3, 8, 2, 32, context=20, sinks=sinks)
    inputs = attention.make_inputs(s, torch.float32, DEVICE, seed=1)
    inputs["window"] = window  # over a full-length cache: the implementation reads only the last W
    if ragged:
        inputs["lengths"] = torch.tensor([20, 3, 11], device=DEVICE)
    (ref,) = attention.reference(**inputs)
    assert_close(attention.torch_sdpa(**inputs), ref, torch.float32, "torch decode")


def test_sinks_shrink_the_output_as_an_extra_key_of_zero_value():
    """A sink is a key whose value is zero: the reference with sinks equals a reference over one more
    key with score sink_h and value 0 (checks the sink's sign and scale, not just self-consistency)."""
    s = attention.AttentionShape(2, 4, 2, 16, context=9, sinks=True)
    inp = attention.make_inputs(s, torch.float64, DEVICE, seed=4)
    (out,) = attention.reference(**inp)
    q, k, v, sinks = inp["q"], inp["k_cache"], inp["v_cache"], inp["sinks"]
    scores = torch.einsum("bhd,bhsd->bhs", q, k.repeat_interleave(2, dim=1)) / 4.0
    scores = torch.cat([scores, sinks.double().view(1, 4, 1).expand(2, 4, 1)], dim=-1)
    v0 = torch.cat([v.repeat_interleave(2, dim=1), torch.zeros(2, 4, 1, 16, dtype=torch.float64)], dim=2)
    expect = torch.einsum("bhs,bhsd->bhd", torch.softmax(scores, -1), v0)
    assert torch.allclose(out, expect, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("t,prefix,window,sinks", [(9, 0, 4, False), (7, 5, 4, True), (6, 0, 0, True),
                                                   (5, 30, 8, True)])
def test_torch_prefill_matches_reference(t, prefix, window, sinks):
    s = pa.PrefillAttentionShape(2, 6, 2, 32, t, prefix, window=window, sinks=sinks)
    inputs = pa.make_inputs(s, torch.float32, DEVICE, seed=t)
    (ref,) = pa.reference(**inputs)
    assert_close(pa.torch_sdpa_prefill(**inputs), ref, torch.float32, "torch prefill")


# Triton, under the interpreter on a CPU (16-token decode blocks; 16 x 16 prefill tiles)
DECODE = [  # (batch, Hq, Hkv, D, cache S, window, sinks, splits, ragged)
    (2, 8, 2, 64, 50, 20, False, 1, False),  # window inside the cache, one split
    (3, 8, 2, 64, 50, 17, True, 3, True),  # window, sinks, splits, ragged lengths (some shorter than W)
    (2, 4, 4, 64, 33, 0, True, 1, False),  # sinks in the single split
    (2, 12, 4, 64, 40, 0, True, 4, True),  # sinks in the merge, padded GQA ratio
    (1, 8, 1, 128, 70, 64, True, None, False),  # heuristic splits over the window
]


@pytest.mark.interpreter
@pytest.mark.parametrize("dtype", INTERPRETER_DTYPES, ids=str)
@pytest.mark.parametrize("b,hq,hkv,d,s,window,sinks,splits,ragged", DECODE)
def test_triton_decode_window_sinks(b, hq, hkv, d, s, window, sinks, splits, ragged, dtype):
    from kernels.triton import attention as tattn

    inputs = attention.make_inputs(attention.AttentionShape(b, hq, hkv, d, s, sinks=sinks), dtype, DEVICE,
                                   seed=s + window)
    inputs["window"] = window
    if ragged:
        inputs["lengths"] = torch.tensor([s] + [max(1, s // (i + 2)) for i in range(b - 1)], device=DEVICE)
    out = nan_like((b, hq, d), dtype)
    y = tattn.triton_decode_attention(**inputs, out=out, num_splits=splits)
    assert_close(y, attention.reference(**inputs)[0], dtype, f"decode W{window} sinks{sinks} splits{splits}")


@pytest.mark.interpreter
def test_triton_paged_decode_window():
    from kernels import paged_attention
    from kernels.triton import attention as tattn

    inputs = paged_attention.make_inputs(paged_attention.PagedAttentionShape(3, 8, 2, 64, 45, 16), torch.float32,
                                         DEVICE, seed=3)
    sinks = torch.randn(8, device=DEVICE)
    y = tattn.triton_paged_decode_attention(**inputs, num_splits=2, window=10, sinks=sinks)
    cache = [paged_attention.gather_pages(inputs[n], inputs["block_table"]) for n in ("k_pages", "v_pages")]
    (ref,) = attention.reference(inputs["q"], *cache, lengths=inputs["lengths"], window=10, sinks=sinks)
    assert_close(y, ref, torch.float32, "paged window sinks")


PREFILL = [  # (batch, Hq, Hkv, D, T, prefix, window, sinks)
    (1, 4, 2, 64, 45, 0, 7, False),  # window narrower than a tile: band and diagonal tiles overlap
    (2, 4, 1, 64, 45, 40, 20, True),  # truncated prefix (19 cached), band tiles, sinks
    (1, 8, 2, 64, 40, 5, 33, False),  # window wider than a tile: unmasked tiles between band and diagonal
    (1, 4, 4, 80, 17, 3, 0, True),  # sinks without a window, head dim 80
    (2, 4, 2, 64, 1, 50, 16, True),  # a one-token chunk over a window-bounded cache
]


@pytest.mark.interpreter
@pytest.mark.parametrize("dtype", INTERPRETER_DTYPES, ids=str)
@pytest.mark.parametrize("b,hq,hkv,d,t,prefix,window,sinks", PREFILL)
def test_triton_prefill_window_sinks(b, hq, hkv, d, t, prefix, window, sinks, dtype):
    from kernels.triton import prefill_attention as tpa

    s = pa.PrefillAttentionShape(b, hq, hkv, d, t, prefix, window=window, sinks=sinks)
    inputs = pa.make_inputs(s, dtype, DEVICE, seed=t + prefix)
    out = nan_like((b, hq, t, d), dtype)
    y = pa.implementation("triton")(**inputs) if dtype == torch.float16 else tpa.triton_prefill_attention(
        inputs["q"], inputs["k"], inputs["v"], inputs["prefix"], out=out, window=window, sinks=inputs["sinks"])
    assert_close(y, pa.reference(**inputs)[0], dtype, f"prefill W{window} P{prefix} sinks{sinks}")


@pytest.mark.interpreter
@pytest.mark.parametrize("block_m,block_n", [(32, 16), (16, 32)])
def test_triton_prefill_window_unequal_tiles(monkeypatch, block_m, block_n):
    from kernels.triton import prefill_attention as tpa

    monkeypatch.setattr(tpa, "INTERPRETER_CONFIG", {"BLOCK_M": block_m, "BLOCK_N": block_n})
    s = pa.PrefillAttentionShape(1, 4, 2, 64, 45, 21, window=19, sinks=True)
    inputs = pa.make_inputs(s, torch.float32, DEVICE, seed=block_m)
    y = pa.implementation("triton")(**inputs)
    assert_close(y, pa.reference(**inputs)[0], torch.float32, f"tiles {block_m}x{block_n}")


@pytest.mark.interpreter
def test_triton_prefill_skips_keys_below_every_window(monkeypatch):
    """NaN in the value of key 0, which only query 0 sees (window 8, 7 cached keys): the second query
    tile (queries 16..19, windows from key 16) must never load the key tile 0..15, so its rows stay exact,
    while query 0 shows that the poison did land."""
    from kernels.triton import prefill_attention as tpa

    monkeypatch.setattr(tpa, "INTERPRETER_CONFIG", {"BLOCK_M": 16, "BLOCK_N": 16})
    s = pa.PrefillAttentionShape(1, 2, 1, 64, 20, 7, window=8)  # 7 cached + 20: keys 0..26
    inputs = pa.make_inputs(s, torch.float32, DEVICE, seed=5)
    ref = pa.reference(**inputs)[0]
    inputs["v"][:, :, 0] = float("nan")  # key 0: seen by query 0 only (window 8 from key 7)
    y = pa.implementation("triton")(**inputs)
    # query tile 16..19 starts its window at key 7 + 16 - 7 = 16: it never loads tile 0..15
    assert_close(y[:, :, 16:], ref[:, :, 16:], torch.float32, "rows whose windows start past the poison")
    assert torch.isnan(y[:, :, 0]).all()

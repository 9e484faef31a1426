"""Triton decode attention (split-KV + merge; contiguous and paged caches) against the float64 reference."""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from triton_helpers import DEVICE, INTERPRETER_DTYPES, assert_close, nan_like

from kernels import attention, paged_attention
from kernels.triton import attention as tattn

pytestmark = pytest.mark.interpreter
NO_CUDA_BF16 = "needs CUDA (the interpreter's bf16 tl.dot is wrong)"

# (batch, heads, kv_heads, head_dim, context, num_splits, ragged lengths). The interpreter's block is
# 16 tokens, so contexts 1, 17, 50 cover a lone token, one-past-a-block and a ragged tail.
CASES = [
    (1, 4, 4, 64, 17, 1, False),  # GQA ratio 1, single split writes the output directly
    (3, 8, 2, 64, 50, 3, True),  # ratio 4, odd batch, splits + per-sequence lengths
    (2, 8, 1, 128, 33, 2, False),  # ratio 8, head dim 128
    (1, 16, 2, 128, 1, 1, False),  # a cache of one token
    (3, 4, 1, 64, 40, 8, True),  # more splits than a short sequence has blocks: empty splits
    (2, 12, 4, 64, 70, None, True),  # ratio 3 (padded to the 16-row tile), heuristic split count
]


def _lengths(batch, context, seed):
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    lengths = torch.randint(1, context + 1, (batch,), generator=g, device=DEVICE)
    lengths[0] = context
    return lengths


@pytest.mark.parametrize("dtype", INTERPRETER_DTYPES, ids=str)
@pytest.mark.parametrize("b,hq,hkv,d,s,splits,ragged", CASES)
def test_decode_attention_matches_reference(b, hq, hkv, d, s, splits, ragged, dtype):
    inputs = attention.make_inputs(attention.AttentionShape(b, hq, hkv, d, s), dtype, DEVICE, seed=b + hq + s)
    if ragged:
        inputs["lengths"] = _lengths(b, s, seed=s)
    out = nan_like((b, hq, d), dtype)
    y = tattn.triton_decode_attention(**inputs, out=out, num_splits=splits)
    assert y is out
    assert_close(y, attention.reference(**inputs)[0], dtype, f"attention B{b} Hq{hq} Hkv{hkv} D{d} S{s}")


def test_decode_attention_accepts_qkv_views():
    """q as a strided view of a fused qkv row, as the decoder layer passes it."""
    b, hq, hkv, d, s = 2, 4, 2, 64, 20
    qkv = torch.randn(b, (hq + 2 * hkv) * d, device=DEVICE)
    q = qkv[:, : hq * d].view(b, hq, d)
    k_cache = torch.randn(b, hkv, s, d, device=DEVICE)
    v_cache = torch.randn(b, hkv, s, d, device=DEVICE)
    y = tattn.triton_decode_attention(q, k_cache, v_cache, num_splits=2)
    assert_close(y, attention.reference(q, k_cache, v_cache)[0], torch.float32, "qkv view")


# (batch, heads, kv_heads, head_dim, longest context, page size, num_splits)
PAGED = [
    (3, 8, 2, 64, 45, 16, 2),  # page = block
    (2, 4, 4, 64, 37, 4, 1),  # pages smaller than a block: one block gathers from several pages
    (2, 8, 1, 128, 29, 5, 3),  # page size not a power of two, ratio 8
]


@pytest.mark.parametrize("dtype", INTERPRETER_DTYPES, ids=str)
@pytest.mark.parametrize("b,hq,hkv,d,s,page,splits", PAGED)
def test_paged_attention_matches_reference(b, hq, hkv, d, s, page, splits, dtype):
    shape = paged_attention.PagedAttentionShape(b, hq, hkv, d, s, page)
    inputs = paged_attention.make_inputs(shape, dtype, DEVICE, seed=s + page)
    out = nan_like((b, hq, d), dtype)
    y = tattn.triton_paged_decode_attention(**inputs, out=out, num_splits=splits)
    assert y is out
    (ref,) = paged_attention.reference(**inputs)
    assert_close(y, ref, dtype, f"paged B{b} Hkv{hkv} D{d} S{s} page{page}")
    assert_close(paged_attention.torch_paged_sdpa(**inputs), ref, dtype, "torch paged baseline")


def test_paged_equals_contiguous_on_the_same_tokens():
    """Scatter a contiguous cache into shuffled pages: both kernels must agree to rounding."""
    b, hq, hkv, d, s, page = 2, 8, 2, 64, 24, 8
    inputs = attention.make_inputs(attention.AttentionShape(b, hq, hkv, d, s), torch.float32, DEVICE, seed=5)
    per_seq = s // page
    perm = torch.randperm(b * per_seq, device=DEVICE)
    table = perm.view(b, per_seq).to(torch.int32)
    pages = {}
    for name in ("k_cache", "v_cache"):
        p = torch.empty(b * per_seq, hkv, page, d, device=DEVICE)
        chunks = inputs[name].view(b, hkv, per_seq, page, d).permute(0, 2, 1, 3, 4)  # [B, pages, Hkv, P, D]
        p[table.long()] = chunks
        pages[name] = p
    lengths = torch.full((b,), s, device=DEVICE)
    q = inputs["q"]
    k_pages, v_pages = pages["k_cache"], pages["v_cache"]
    paged = tattn.triton_paged_decode_attention(q, k_pages, v_pages, table, lengths, num_splits=2)
    contiguous = tattn.triton_decode_attention(q, inputs["k_cache"], inputs["v_cache"], num_splits=2)
    torch.testing.assert_close(paged, contiguous, rtol=1e-5, atol=1e-6)


def test_attention_rejects_bad_arguments():
    q = torch.randn(2, 6, 64, device=DEVICE)
    cache = torch.randn(2, 4, 8, 64, device=DEVICE)
    with pytest.raises(ValueError, match="not a multiple"):
        tattn.triton_decode_attention(q, cache, cache)
    with pytest.raises(ValueError, match="lengths"):
        bad = torch.ones(3, dtype=torch.int32, device=DEVICE)
        tattn.triton_decode_attention(q[:, :4], cache, cache, lengths=bad)
    with pytest.raises(ValueError, match="num_splits"):
        tattn.triton_decode_attention(q[:, :4], cache, cache, num_splits=0)
    with pytest.raises(ValueError, match="lengths is required"):
        tattn.triton_paged_decode_attention(q[:, :4], cache, cache, torch.zeros(2, 1, dtype=torch.int32,
                                                                               device=DEVICE), None)


def test_split_heuristic():
    """choose_num_splits(batch, kv_heads, context, SMs) on 132 SMs, as its docstring states."""
    assert tattn.choose_num_splits(1, 8, 32768, 132) == 33
    assert tattn.choose_num_splits(1, 8, 4096, 132) == 16  # capped by 256 tokens per split
    assert tattn.choose_num_splits(32, 8, 32768, 132) == 2
    assert tattn.choose_num_splits(64, 8, 32768, 132) == 1
    assert tattn.choose_num_splits(1, 8, 100, 132) == 1  # too short to split
    assert tattn.choose_num_splits(1, 1, 10**6, 132) == tattn.MAX_SPLITS


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA_BF16)
@pytest.mark.parametrize("b,s,ratio,d", [(1, 4096, 4, 128), (4, 1000, 8, 128), (8, 517, 1, 64)])
def test_decode_attention_bf16_on_gpu(b, s, ratio, d):
    hkv = 8 if d == 128 else 4
    shape = attention.AttentionShape(b, hkv * ratio, hkv, d, s)
    inputs = attention.make_inputs(shape, torch.bfloat16, "cuda", seed=b)
    inputs["lengths"] = _lengths(b, s, seed=b)
    y = tattn.triton_decode_attention(**inputs, out=nan_like((b, hkv * ratio, d), torch.bfloat16))
    assert_close(y, attention.reference(**inputs)[0], torch.bfloat16, f"bf16 attention B{b} S{s}")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_paged_attention_bf16_on_gpu():
    shape = paged_attention.PagedAttentionShape(4, 32, 8, 128, 3000, 16)
    inputs = paged_attention.make_inputs(shape, torch.bfloat16, "cuda", seed=1)
    y = tattn.triton_paged_decode_attention(**inputs)
    assert_close(y, paged_attention.reference(**inputs)[0], torch.bfloat16, "bf16 paged attention")

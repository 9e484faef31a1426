"""Triton causal prefill attention (GQA, continuing a cached prefix) against a float64 reference."""
import math
import os

import pytest
import torch
import torch.nn.functional as F

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from triton_helpers import DEVICE, INTERPRETER_DTYPES, nan_like, rel_error

from kernels.triton import prefill_attention as tpa

pytestmark = pytest.mark.interpreter
NO_CUDA_BF16 = "needs CUDA (the interpreter's bf16 tl.dot is wrong)"

# ||out - ref|| / ||ref|| allowed per dtype. The reference runs in float64 on the same rounded inputs,
# so the error is the kernel's own rounding: fp32 keeps everything in fp32 (ieee products), 1.5e-7 seen
# on these shapes, so 1e-6; fp16 rounds p to fp16 before P V (2^-11 relative) and the output once more,
# 2.5e-4 seen, so 1e-3; bf16 (GPU only) has 3 fewer mantissa bits, 8x the fp16 rounding: 1e-2.
TOL = {torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 1e-2}


def reference(q, k, v, prefix, scale=None):
    """Plain float64 attention: scores, causal-with-prefix mask, softmax, P V; GQA by repeating K/V."""
    b, hq, t, d = q.shape
    g = hq // k.shape[1]
    q, k, v = q.double(), k.double().repeat_interleave(g, dim=1), v.double().repeat_interleave(g, dim=1)
    scores = q @ k.transpose(-1, -2) * (1 / math.sqrt(d) if scale is None else scale)  # [B, Hq, T, S]
    keys = torch.arange(prefix + t, device=q.device)
    allowed = keys[None, :] <= prefix + torch.arange(t, device=q.device)[:, None]  # query i sees 0..prefix+i
    scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def make(b, hq, hkv, d, t, prefix, dtype, seed, device=DEVICE):
    g = torch.Generator(device=device).manual_seed(seed)
    def r(*shape):
        return torch.randn(shape, generator=g, device=device).to(dtype)
    return r(b, hq, t, d), r(b, hkv, prefix + t, d), r(b, hkv, prefix + t, d)


def check(out, ref, dtype, what):
    assert out.shape == ref.shape, f"{what}: shape {tuple(out.shape)} != {tuple(ref.shape)}"
    bad = (~torch.isfinite(out)).sum().item()
    assert bad == 0, f"{what}: {bad} non-finite elements (unwritten output or overflow)"
    err = rel_error(out, ref)
    assert err <= TOL[dtype], f"{what}: relative error {err:.3g} > {TOL[dtype]:g}"


# (batch, query heads, kv heads, head dim, chunk T, prefix). The interpreter's tiles are 16 x 16, so
# T 17 and 45 leave ragged query tiles; prefix 5 and 33 put the diagonal mid-tile; 33 + 45 keys also
# give a run of unmasked tiles before the diagonal ones.
CASES = [
    (1, 4, 4, 64, 17, 0),  # GQA ratio 1, plain causal prompt
    (2, 8, 2, 64, 45, 5),  # ratio 4, batch 2, diagonal mid-tile
    (1, 8, 1, 128, 17, 33),  # ratio 8, head dim 128, long prefix: unmasked tiles first
    (2, 4, 1, 80, 45, 33),  # head dim 80 padded to 128
    (1, 8, 2, 80, 1, 5),  # a one-token chunk (decode through the prefill path)
    (2, 8, 8, 128, 1, 0),  # one token, no prefix: one key
    (1, 4, 1, 64, 45, 0),  # ratio 4 with several diagonal tiles
]


@pytest.mark.parametrize("dtype", INTERPRETER_DTYPES, ids=str)
@pytest.mark.parametrize("b,hq,hkv,d,t,prefix", CASES)
def test_prefill_attention_matches_reference(b, hq, hkv, d, t, prefix, dtype):
    q, k, v = make(b, hq, hkv, d, t, prefix, dtype, seed=t + prefix + d)
    out = nan_like((b, hq, t, d), dtype)
    y = tpa.triton_prefill_attention(q, k, v, prefix, out=out)
    assert y is out
    check(y, reference(q, k, v, prefix), dtype, f"prefill B{b} Hq{hq} Hkv{hkv} D{d} T{t} prefix{prefix}")


@pytest.mark.parametrize("block_m,block_n", [(32, 16), (16, 32)])
def test_prefill_attention_unequal_tiles(monkeypatch, block_m, block_n):
    """Query and key tiles of different heights move the unmasked / diagonal boundary off the tile grid."""
    monkeypatch.setattr(tpa, "INTERPRETER_CONFIG", {"BLOCK_M": block_m, "BLOCK_N": block_n})
    q, k, v = make(2, 4, 2, 64, 45, 21, torch.float32, seed=block_m)
    y = tpa.triton_prefill_attention(q, k, v, 21, out=nan_like((2, 4, 45, 64), torch.float32))
    check(y, reference(q, k, v, 21), torch.float32, f"tiles {block_m}x{block_n}")


def test_tiles_above_the_diagonal_are_not_loaded(monkeypatch):
    """NaN in the value of key prefix + 16, which only query 16 attends: with 16 x 16 tiles the first
    query tile's range ends at key prefix + 15, so if it never loads the next tile its rows stay exact
    (a loaded NaN would spread through 0 x NaN in P V), while query 16 shows the poison did land."""
    monkeypatch.setattr(tpa, "INTERPRETER_CONFIG", {"BLOCK_M": 16, "BLOCK_N": 16})
    prefix, t = 16, 17
    q, k, v = make(1, 2, 1, 64, t, prefix, torch.float32, seed=11)
    poisoned = v.clone()
    poisoned[:, :, prefix + 16] = float("nan")
    y = tpa.triton_prefill_attention(q, k, poisoned, prefix)
    check(y[:, :, :16], reference(q, k, v, prefix)[:, :, :16], torch.float32, "rows below the poisoned key")
    assert torch.isnan(y[:, :, 16]).all()


def test_prefill_attention_scale_and_strided_cache():
    """An explicit scale, and K/V as views of a larger cache (capacity past S), as a layer passes them."""
    b, hq, hkv, d, t, prefix, capacity = 1, 4, 2, 64, 20, 13, 48
    q, _, _ = make(b, hq, hkv, d, t, prefix, torch.float32, seed=3)
    k_cache = torch.randn(b, hkv, capacity, d, device=DEVICE)
    v_cache = torch.randn(b, hkv, capacity, d, device=DEVICE)
    k, v = k_cache[:, :, : prefix + t], v_cache[:, :, : prefix + t]
    y = tpa.triton_prefill_attention(q, k, v, prefix, scale=0.3)
    check(y, reference(q, k, v, prefix, scale=0.3), torch.float32, "scale 0.3, strided cache")


def test_prefill_attention_rejects_bad_arguments():
    q, k, v = make(1, 6, 4, 64, 8, 2, torch.float32, seed=0)
    with pytest.raises(ValueError, match="not a multiple"):
        tpa.triton_prefill_attention(q, k, v, 2)
    q, k, v = make(1, 4, 2, 64, 8, 2, torch.float32, seed=0)
    with pytest.raises(ValueError, match="prefix \\+ T"):
        tpa.triton_prefill_attention(q, k, v, 3)
    with pytest.raises(ValueError, match="prefix must be"):
        tpa.triton_prefill_attention(q, k, v, -1)
    with pytest.raises(ValueError, match="expected q"):
        tpa.triton_prefill_attention(q[0], k, v, 2)
    with pytest.raises(ValueError, match="float16"):
        tpa.triton_prefill_attention(q, k.half(), v, 2)
    q8, k8, v8 = make(1, 2, 1, 8, 4, 0, torch.float32, seed=0)
    with pytest.raises(ValueError, match="head dim 8"):
        tpa.triton_prefill_attention(q8, k8, v8, 0)


def test_empty_chunk_returns_empty():
    q, k, v = make(1, 4, 2, 64, 0, 7, torch.float32, seed=0)
    assert tpa.triton_prefill_attention(q, k, v, 7).shape == (1, 4, 0, 64)


def test_autotune_configs_per_architecture():
    """Every list is non-empty; short chunks drop tall query tiles; fp32 halves the tiles to fit."""
    class Arg:
        def __init__(self, size):
            self.size = size

        def element_size(self):
            return self.size

    for cap in ((8, 0), (9, 0), (10, 0), (12, 0)):
        configs = tpa.configs_for(cap)
        assert configs
        assert tpa._prune(configs, {"T": 8192, "q_ptr": Arg(2)}) == configs
        short = tpa._prune(configs, {"T": 40, "q_ptr": Arg(2)})
        assert short and all(c.kwargs["BLOCK_M"] == 64 for c in short)
        assert tpa._prune(configs, {"T": 1, "q_ptr": Arg(2)})  # a tile is always left
        halved = tpa._prune(configs, {"T": 8192, "q_ptr": Arg(4)})
        assert [c.kwargs["BLOCK_N"] for c in halved] == [max(16, c.kwargs["BLOCK_N"] // 2) for c in configs]


# ---- bf16 at real sizes on a GPU (the interpreter's bf16 tl.dot is wrong) ---------------------------

def _sdpa(q, k, v, prefix):
    """torch's SDPA: its own causal flag (flash kernel) without a prefix, an explicit mask with one."""
    if prefix == 0:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    t = q.shape[2]
    keys = torch.arange(prefix + t, device=q.device)
    mask = keys[None, :] <= prefix + torch.arange(t, device=q.device)[:, None]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA_BF16)
@pytest.mark.parametrize("prefix", [0, 1024])
def test_prefill_attention_bf16_on_gpu(prefix):
    b, hq, hkv, d, t = 1, 32, 8, 128, 2048
    q, k, v = make(b, hq, hkv, d, t, prefix, torch.bfloat16, seed=prefix, device="cuda")
    y = tpa.triton_prefill_attention(q, k, v, prefix, out=torch.full_like(q, float("nan")))
    ref = reference(q, k, v, prefix)
    check(y, ref, torch.bfloat16, f"bf16 prefill T{t} prefix{prefix}")
    sdpa = _sdpa(q, k, v, prefix)
    check(sdpa, ref, torch.bfloat16, "torch SDPA baseline")
    # both sit within bf16 rounding of the exact result, so within each other's
    assert rel_error(y, sdpa) <= TOL[torch.bfloat16], f"Triton vs SDPA: {rel_error(y, sdpa):.3g}"

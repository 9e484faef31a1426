"""MLA's ops (latent-cache append, per-head absorbed GEMMs, decode over the latent cache, prefill with K/V
decompressed per chunk) and the plain / per-head RMSNorms: work formulas, fresh inputs, the PyTorch baselines
and the Triton kernels (interpreter on a CPU, fp16/fp32) against float64 references."""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from triton_helpers import DEVICE, INTERPRETER_DTYPES, assert_close, nan_like

from kernels import head_gemm, latent_cache, mla_attention, mla_prefill_attention, qk_norm, rmsnorm
from kernels.rope_scaling import RopeScaling, softmax_scale

DSV3 = dict(kv_lora_rank=512, qk_rope_head_dim=64, qk_nope_head_dim=128)


def test_mla_decode_formulas_at_deepseek_v3():
    s = mla_attention.MlaDecodeShape(batch=4, heads=128, context=1000, **DSV3)
    assert mla_attention.flops(s) == 2 * 4 * 128 * 1000 * (576 + 512)
    # the latent (1152 bytes a token in bf16) read once for all 128 heads, plus q and o_lat
    assert mla_attention.min_bytes(s, 2) == 2 * (4 * 1000 * 576 + 4 * 128 * (576 + 512))
    assert s.scale == pytest.approx(192 ** -0.5)
    assert latent_cache.min_bytes(latent_cache.LatentAppendShape(4, 1000), 2) == 2 * 2 * 4 * 576 + 32


def test_deepseek_softmax_scale_takes_yarn_mscale_squared():
    """DeepSeek-V3's config: YaRN factor 40, mscale = mscale_all_dim = 1: scale = 192^-0.5 (0.1 ln 40 + 1)^2."""
    yarn = RopeScaling("yarn", factor=40.0, original_max_position_embeddings=4096, mscale=1.0, mscale_all_dim=1.0)
    m = 0.1 * torch.log(torch.tensor(40.0, dtype=torch.float64)).item() + 1.0
    assert softmax_scale(192, yarn, deepseek_mscale=True) == pytest.approx(192 ** -0.5 * m * m, rel=1e-12)
    assert softmax_scale(192, yarn) == pytest.approx(192 ** -0.5)
    assert softmax_scale(192, None, deepseek_mscale=True) == pytest.approx(192 ** -0.5)


def test_mla_prefill_and_head_gemm_formulas():
    s = mla_prefill_attention.MlaPrefillShape(batch=1, heads=128, chunk=4, prefix=2)
    pairs = 4 * 2 + 4 * 5 // 2
    assert mla_prefill_attention.flops(s) == 2 * 128 * pairs * (192 + 128)
    assert mla_prefill_attention.min_bytes(s, 2) == 2 * (128 * 4 * (192 + 128) + 6 * (128 * 256 + 64))
    g = head_gemm.HeadGemmShape(m=8, heads=128, k=128, n=512)
    assert head_gemm.flops(g) == 2 * 8 * 128 * 128 * 512
    assert head_gemm.min_bytes(g, 2) == 2 * (128 * 512 * 128 + 8 * 128 * (128 + 512))
    assert qk_norm.flops(qk_norm.QkNormShape(2, 4, 2, 8)) == 4 * 2 * 6 * 8
    assert rmsnorm.min_bytes(rmsnorm.RmsNormShape(3, 10), 2) == 2 * (60 + 10)


SMALL = [  # (module, shape) at small sizes for the baseline checks
    (mla_attention, mla_attention.MlaDecodeShape(3, 20, 37, kv_lora_rank=64, qk_rope_head_dim=16,
                                                 qk_nope_head_dim=32)),
    (mla_prefill_attention, mla_prefill_attention.MlaPrefillShape(2, 3, 9, 7, 32, 16, 64)),
    (head_gemm, head_gemm.HeadGemmShape(5, 4, 32, 48)),
    (qk_norm, qk_norm.QkNormShape(3, 4, 2, 32)),
    (rmsnorm, rmsnorm.RmsNormShape(5, 96)),
]
TORCH_IMPL = {mla_attention: mla_attention.torch_mla_decode, mla_prefill_attention: mla_prefill_attention.torch_mla_prefill,
              head_gemm: head_gemm.torch_head_gemm, qk_norm: qk_norm.torch_qk_norm, rmsnorm: rmsnorm.torch_rmsnorm}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("module,shape", SMALL, ids=lambda v: getattr(v, "__name__", "").split(".")[-1])
def test_torch_baselines_match_float64(module, shape, dtype):
    inputs = module.make_inputs(shape, dtype, DEVICE, seed=3)
    tensors = [t for t in inputs.values() if isinstance(t, torch.Tensor)]
    assert all(t.abs().sum() > 0 for t in tensors), "inputs must be random, never zeros"
    out = TORCH_IMPL[module](**inputs)
    outs = out if isinstance(out, tuple) else (out,)
    for o, ref in zip(outs, module.reference(**inputs)):
        assert_close(o, ref, dtype, module.__name__)


def test_latent_append_writes_only_its_slots():
    s = latent_cache.LatentAppendShape(3, 10, kv_lora_rank=32, qk_rope_head_dim=16)
    inputs = latent_cache.make_inputs(s, torch.float32, DEVICE, seed=1)
    before = inputs["cache"].clone()
    latent_cache.poison(inputs)
    latent_cache.torch_latent_append(**inputs)
    (ref,) = latent_cache.reference(**inputs)
    assert_close(latent_cache.written_slots(inputs, None)[0], ref, torch.float32, "slots")
    untouched = torch.ones(3, 10, dtype=torch.bool)
    untouched[torch.arange(3), inputs["positions"]] = False
    assert torch.equal(inputs["cache"][untouched], before[untouched])


# Triton, under the interpreter on a CPU ---------------------------------------------------------------


@pytest.mark.interpreter
@pytest.mark.parametrize("dtype", INTERPRETER_DTYPES, ids=str)
@pytest.mark.parametrize("b,h,s,splits,ragged", [(2, 20, 37, 1, False), (3, 16, 50, 3, True),
                                                 (1, 40, 70, None, False), (3, 4, 33, 8, True)])
def test_triton_mla_decode(b, h, s, splits, ragged, dtype):
    from kernels.triton.mla_attention import triton_mla_decode

    shape = mla_attention.MlaDecodeShape(b, h, s, kv_lora_rank=64, qk_rope_head_dim=16, qk_nope_head_dim=32)
    inputs = mla_attention.make_inputs(shape, dtype, DEVICE, seed=s)
    if ragged:
        inputs["lengths"] = torch.tensor([s] + [max(1, s // (i + 3)) for i in range(b - 1)], device=DEVICE)
    out = nan_like((b, h, 64), dtype)
    y = triton_mla_decode(**inputs, out=out, num_splits=splits)
    assert y is out
    assert_close(y, mla_attention.reference(**inputs)[0], dtype, f"mla decode B{b} H{h} S{s} splits{splits}")


@pytest.mark.interpreter
def test_triton_mla_decode_takes_strided_q_pe():
    """q_pe as the rope columns of the q_b_proj output, as the MLA block passes it."""
    from kernels.triton.mla_attention import triton_mla_decode

    q = torch.randn(2, 8, 48, device=DEVICE)
    inputs = {"q_lat": torch.randn(2, 8, 64, device=DEVICE), "q_pe": q[..., 32:],
              "cache": torch.randn(2, 21, 80, device=DEVICE), "scale": 0.2}
    assert_close(triton_mla_decode(**inputs, num_splits=2), mla_attention.reference(**inputs)[0], torch.float32,
                 "strided q_pe")


@pytest.mark.interpreter
@pytest.mark.parametrize("dtype", INTERPRETER_DTYPES, ids=str)
@pytest.mark.parametrize("b,h,t,prefix", [(1, 2, 17, 0), (2, 3, 20, 13), (1, 2, 1, 30), (2, 2, 45, 33)])
def test_triton_mla_prefill(b, h, t, prefix, dtype):
    from kernels.triton.mla_prefill_attention import triton_mla_prefill

    shape = mla_prefill_attention.MlaPrefillShape(b, h, t, prefix, 32, 16, 64)
    inputs = mla_prefill_attention.make_inputs(shape, dtype, DEVICE, seed=t + prefix)
    out = nan_like((b, h, t, 64), dtype)
    y = triton_mla_prefill(**inputs, out=out)
    assert y is out
    assert_close(y, mla_prefill_attention.reference(**inputs)[0], dtype, f"mla prefill T{t} P{prefix}")


@pytest.mark.interpreter
@pytest.mark.parametrize("block_m,block_n", [(32, 16), (16, 32)])
def test_triton_mla_prefill_unequal_tiles(monkeypatch, block_m, block_n):
    from kernels.triton import mla_prefill_attention as tmlap

    monkeypatch.setattr(tmlap, "INTERPRETER_CONFIG", {"BLOCK_M": block_m, "BLOCK_N": block_n})
    shape = mla_prefill_attention.MlaPrefillShape(1, 2, 45, 21, 32, 16, 32)
    inputs = mla_prefill_attention.make_inputs(shape, torch.float32, DEVICE, seed=block_m)
    assert_close(tmlap.triton_mla_prefill(**inputs), mla_prefill_attention.reference(**inputs)[0], torch.float32,
                 f"tiles {block_m}x{block_n}")


@pytest.mark.interpreter
@pytest.mark.parametrize("dtype", INTERPRETER_DTYPES, ids=str)
@pytest.mark.parametrize("m", [3, 40])
def test_triton_head_gemm_in_both_absorb_layouts(m, dtype):
    from kernels.triton.head_gemm import triton_head_gemm

    h, dn, dv, r = 4, 32, 48, 64
    kv_b = (torch.randn(h * (dn + dv), r, device=DEVICE) * r ** -0.5).to(dtype).view(h, dn + dv, r)
    q = torch.randn(m, h, dn + 16, device=DEVICE).to(dtype)
    for x, w in ((q[..., :dn], kv_b[:, :dn].transpose(1, 2)),  # q absorb: W_UK^T as a view
                 (torch.randn(m, h, r, device=DEVICE).to(dtype), kv_b[:, dn:])):  # out absorb
        out = nan_like((m, h, w.shape[1]), dtype)
        assert triton_head_gemm(x, w, out=out) is out
        assert_close(out, head_gemm.reference(x, w)[0], dtype, f"head gemm M{m} N{w.shape[1]}")


@pytest.mark.interpreter
@pytest.mark.parametrize("dtype", INTERPRETER_DTYPES, ids=str)
def test_triton_norms(dtype):
    from kernels.triton.qk_norm import triton_qk_norm
    from kernels.triton.rmsnorm import triton_rmsnorm

    b, hq, hkv, d = 5, 6, 2, 64
    qkv = torch.randn(b, (hq + 2 * hkv) * d, device=DEVICE).to(dtype)
    q, k = qkv[:, : hq * d].view(b, hq, d), qkv[:, hq * d: (hq + hkv) * d].view(b, hkv, d)
    w_q, w_k = (1 + 0.1 * torch.randn(d, device=DEVICE)).to(dtype), (1 + 0.1 * torch.randn(d, device=DEVICE)).to(dtype)
    for o, ref in zip(triton_qk_norm(q, k, w_q, w_k, 1e-6), qk_norm.reference(q, k, w_q, w_k, 1e-6)):
        assert_close(o, ref, dtype, "qk norm")
    ckv = torch.randn(7, 96, device=DEVICE).to(dtype)  # the latent columns of a kv_a row: a strided view
    w = (1 + 0.1 * torch.randn(80, device=DEVICE)).to(dtype)
    out = nan_like((7, 80), dtype)
    assert triton_rmsnorm(ckv[:, :80], w, 1e-6, out=out) is out
    assert_close(out, rmsnorm.reference(ckv[:, :80], w, 1e-6)[0], dtype, "rmsnorm")


@pytest.mark.interpreter
def test_triton_latent_append():
    from kernels.triton.latent_cache import triton_latent_append

    s = latent_cache.LatentAppendShape(3, 10, kv_lora_rank=32, qk_rope_head_dim=16)
    inputs = latent_cache.make_inputs(s, torch.float16, DEVICE, seed=2)
    latent_cache.poison(inputs)
    triton_latent_append(**inputs)
    assert_close(latent_cache.written_slots(inputs, None)[0], latent_cache.reference(**inputs)[0], torch.float16,
                 "latent append")

"""Triton RMSNorm+residual, RoPE, SwiGLU, KV append and fused RoPE+append against their references."""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from triton_helpers import DEVICE, INTERPRETER_DTYPES, assert_close, nan_like

from kernels import activation, kv_cache, norm, rope
from kernels.triton.activation import triton_swiglu
from kernels.triton.kv_cache import triton_append, triton_paged_append
from kernels.triton.norm import triton_rmsnorm_residual
from kernels.triton.rope import triton_rope, triton_rope_append

pytestmark = pytest.mark.interpreter
DTYPES = pytest.mark.parametrize("dtype", INTERPRETER_DTYPES, ids=str)


@DTYPES
@pytest.mark.parametrize("rows,hidden", [(1, 64), (3, 100), (5, 1000)])
def test_rmsnorm_residual(rows, hidden, dtype):
    inputs = norm.make_inputs(norm.NormShape(rows, hidden), dtype, DEVICE, seed=rows + hidden)
    out, r = nan_like((rows, hidden), dtype), nan_like((rows, hidden), dtype)
    got = triton_rmsnorm_residual(**inputs, out=out, residual_out=r)
    assert got[0] is out and got[1] is r
    ref_out, ref_r = norm.reference(**inputs)
    assert_close(out, ref_out, dtype, "rmsnorm out")
    assert_close(r, ref_r, dtype, "rmsnorm residual")


@DTYPES
@pytest.mark.parametrize("rows,ffn", [(1, 176), (3, 50), (2, 1500)])
def test_swiglu(rows, ffn, dtype):
    inputs = activation.make_inputs(activation.SwigluShape(rows, ffn), dtype, DEVICE, seed=ffn)
    out = nan_like((rows, ffn), dtype)
    assert triton_swiglu(**inputs, out=out) is out
    assert_close(out, activation.reference(**inputs)[0], dtype, "swiglu")


def _qkv_views(b, hq, hkv, d, dtype, seed):
    """q, k, v as strided views of one fused qkv row, exactly as the decoder layer slices them."""
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    qkv = torch.randn(b, (hq + 2 * hkv) * d, generator=g, device=DEVICE).to(dtype)
    q = qkv[:, : hq * d].view(b, hq, d)
    k = qkv[:, hq * d: (hq + hkv) * d].view(b, hkv, d)
    v = qkv[:, (hq + hkv) * d:].view(b, hkv, d)
    return q, k, v


ROPE = pytest.mark.parametrize("b,hq,hkv,d", [(1, 4, 4, 64), (3, 8, 2, 64), (2, 8, 1, 128), (3, 6, 2, 80)])


@DTYPES
@ROPE
def test_rope_on_qkv_views(b, hq, hkv, d, dtype):
    q, k, _ = _qkv_views(b, hq, hkv, d, dtype, seed=d + b)
    cos, sin = rope.cos_sin(torch.randint(0, 4096, (b,), device=DEVICE), d, 10000.0)
    q_out, k_out = nan_like(q.shape, dtype), nan_like(k.shape, dtype)
    triton_rope(q, k, cos, sin, q_out=q_out, k_out=k_out)
    ref_q, ref_k = rope.reference(q, k, cos, sin)
    assert_close(q_out, ref_q, dtype, "rope q")
    assert_close(k_out, ref_k, dtype, "rope k")


@DTYPES
@pytest.mark.parametrize("b,hkv,d,s", [(1, 1, 64, 5), (3, 2, 64, 17), (2, 8, 128, 9)])
def test_append_writes_every_slot(b, hkv, d, s, dtype):
    inputs = kv_cache.make_inputs(kv_cache.AppendShape(b, hkv, d, s), dtype, DEVICE, seed=s)
    before = {n: inputs[n].clone() for n in ("k_cache", "v_cache")}
    kv_cache.poison(inputs)
    triton_append(**inputs)
    for got, ref, name in zip(kv_cache.written_slots(inputs), kv_cache.reference(**inputs), ("k", "v")):
        assert_close(got, ref, dtype, f"append {name}")
    # nothing but the new slots changed
    for n in ("k_cache", "v_cache"):
        mask = torch.ones_like(inputs[n], dtype=torch.bool)
        mask[torch.arange(b, device=DEVICE), :, inputs["positions"]] = False
        assert torch.equal(inputs[n][mask], before[n][mask])


def _paged_cache(b, hkv, d, page, pages_per_seq, dtype, seed):
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    num_pages = b * pages_per_seq + 2
    table = torch.randperm(num_pages, generator=g, device=DEVICE)[: b * pages_per_seq].view(b, pages_per_seq)
    pages = [torch.randn(num_pages, hkv, page, d, generator=g, device=DEVICE).to(dtype) for _ in range(2)]
    positions = torch.randint(0, page * pages_per_seq, (b,), generator=g, device=DEVICE)
    return pages, table.to(torch.int32), positions


def _paged_slot(pages, table, positions, page):
    rows = torch.arange(table.shape[0], device=DEVICE)
    return pages[table[rows, positions // page].long(), :, positions % page]  # [B, Hkv, D]


@DTYPES
@pytest.mark.parametrize("b,hkv,d,page", [(3, 2, 64, 4), (2, 8, 128, 16)])
def test_paged_append(b, hkv, d, page, dtype):
    (k_pages, v_pages), table, positions = _paged_cache(b, hkv, d, page, 3, dtype, seed=page)
    _, k, v = _qkv_views(b, hkv, hkv, d, dtype, seed=page)
    triton_paged_append(k, v, k_pages, v_pages, table, positions)
    assert torch.equal(_paged_slot(k_pages, table, positions, page), k)
    assert torch.equal(_paged_slot(v_pages, table, positions, page), v)


@DTYPES
@ROPE
def test_rope_append_equals_rope_then_append(b, hq, hkv, d, dtype):
    q, k, v = _qkv_views(b, hq, hkv, d, dtype, seed=hq + d)
    s = 11
    positions = torch.randint(0, s, (b,), device=DEVICE)
    cos, sin = rope.cos_sin(positions, d, 10000.0)
    caches = [torch.randn(b, hkv, s, d, device=DEVICE).to(dtype) for _ in range(2)]
    expect = [c.clone() for c in caches]
    _q_ref, k_rot = rope.torch_rope(q, k, cos, sin)
    kv_cache.torch_append(k_rot, v, expect[0], expect[1], positions)
    q_out = nan_like(q.shape, dtype)
    assert triton_rope_append(q, k, v, cos, sin, caches[0], caches[1], positions, q_out=q_out) is q_out
    assert_close(q_out, rope.reference(q, k, cos, sin)[0], dtype, "rope_append q")
    # same fp32 rotation rounded once, so equal to PyTorch's up to one rounding of the last bit
    torch.testing.assert_close(caches[0], expect[0], rtol=2e-3 if dtype != torch.float32 else 1e-6, atol=1e-6)
    assert torch.equal(caches[1], expect[1])


@DTYPES
def test_paged_rope_append(dtype):
    b, hq, hkv, d, page = 3, 8, 2, 64, 4
    (k_pages, v_pages), table, positions = _paged_cache(b, hkv, d, page, 3, dtype, seed=9)
    q, k, v = _qkv_views(b, hq, hkv, d, dtype, seed=9)
    cos, sin = rope.cos_sin(positions, d, 10000.0)
    q_out = triton_rope_append(q, k, v, cos, sin, k_pages, v_pages, positions, block_table=table)
    ref_q, ref_k = rope.reference(q, k, cos, sin)
    assert_close(q_out, ref_q, dtype, "paged rope_append q")
    assert_close(_paged_slot(k_pages, table, positions, page), ref_k, dtype, "paged rope_append k")
    assert torch.equal(_paged_slot(v_pages, table, positions, page), v)


def test_elementwise_reject_bad_arguments():
    x = torch.randn(2, 8, device=DEVICE)
    with pytest.raises(ValueError, match="w has shape"):
        triton_rmsnorm_residual(x, x, torch.ones(7, device=DEVICE), 1e-5)
    with pytest.raises(ValueError, match="2F"):
        triton_swiglu(torch.randn(2, 7, device=DEVICE))
    q, k, _ = _qkv_views(2, 4, 2, 64, torch.float32, 0)
    with pytest.raises(ValueError, match="float32"):
        cos64 = torch.ones(2, 32, device=DEVICE, dtype=torch.float64)
        triton_rope(q, k, cos64, torch.ones(2, 32, device=DEVICE))
    with pytest.raises(ValueError, match="positions"):
        triton_append(k, k, torch.empty(2, 2, 4, 64, device=DEVICE), torch.empty(2, 2, 4, 64, device=DEVICE),
                      torch.zeros(2, 1, dtype=torch.int64, device=DEVICE))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_elementwise_bf16_on_gpu():
    dt = torch.bfloat16
    inputs = norm.make_inputs(norm.NormShape(7, 4096), dt, "cuda", seed=1)
    for got, ref in zip(triton_rmsnorm_residual(**inputs), norm.reference(**inputs)):
        assert_close(got, ref, dt, "bf16 rmsnorm")
    inputs = activation.make_inputs(activation.SwigluShape(7, 14336), dt, "cuda", seed=2)
    assert_close(triton_swiglu(**inputs), activation.reference(**inputs)[0], dt, "bf16 swiglu")
    inputs = rope.make_inputs(rope.RopeShape(7, 32, 8, 128), dt, "cuda", seed=3)
    for got, ref in zip(triton_rope(**inputs), rope.reference(**inputs)):
        assert_close(got, ref, dt, "bf16 rope")

"""FLOP and minimum-byte formulas against counts done by hand for small shapes."""
from kernels import activation, attention, gemm, kv_cache, norm, rope
from kernels.layer import LayerDims, layer_flops, layer_min_bytes, op_shapes


def test_gemm_counts():
    s = gemm.GemmShape(m=2, k=3, n=5)
    # 2*3*5 multiply-adds = 30, two flops each
    assert gemm.flops(s) == 60
    # W 15 + x 6 + y 10 elements, bf16
    assert gemm.min_bytes(s, 2) == (15 + 6 + 10) * 2
    sb = gemm.GemmShape(m=2, k=3, n=5, bias=True)
    assert gemm.flops(sb) == 60 + 10
    assert gemm.min_bytes(sb, 4) == (15 + 6 + 10 + 5) * 4


def test_attention_counts():
    s = attention.AttentionShape(batch=2, heads=4, kv_heads=2, head_dim=8, context=10)
    # QK: 2*4 query heads x 10 keys x 8 dims = 640 MACs; PV the same -> 1280 MACs -> 2560 flops
    assert attention.flops(s) == 2560
    # K and V: 2 tensors x 2 x 2 x 10 x 8 = 640; q and out: 2 x (2 x 4 x 8) = 128
    assert attention.min_bytes(s, 2) == (640 + 128) * 2


def test_norm_rope_swiglu_append_counts():
    assert norm.flops(norm.NormShape(3, 4)) == 60
    assert norm.min_bytes(norm.NormShape(3, 4), 2) == (4 * 12 + 4) * 2
    r = rope.RopeShape(batch=1, heads=2, kv_heads=1, head_dim=4)
    assert rope.flops(r) == 3 * 3 * 4
    assert rope.min_bytes(r, 2) == 2 * 12 * 2 + 2 * 1 * 2 * 4
    assert activation.flops(activation.SwigluShape(2, 3)) == 30
    assert activation.min_bytes(activation.SwigluShape(2, 3), 2) == 18 * 2
    a = kv_cache.AppendShape(batch=2, kv_heads=1, head_dim=4, context=9)
    assert kv_cache.flops(a) == 0
    assert kv_cache.min_bytes(a, 2) == 4 * 8 * 2 + 16


def test_layer_flops_is_sum_of_ops_and_bytes_cover_weights_and_cache():
    d = LayerDims(hidden=8, heads=2, kv_heads=1, head_dim=4, ffn=12, vocab=16)
    total = sum(m.flops(s) for _, m, s in op_shapes(d, 3, 5).values())
    assert layer_flops(d, 3, 5) == total
    weights = 8 * (8 + 2 * 4) + 8 * 8 + 3 * 8 * 12 + 2 * 8
    kv = 2 * 3 * 4 * 5
    nbytes = layer_min_bytes(d, 3, 5, 2)
    assert nbytes > (weights + kv) * 2
    assert nbytes == (weights + kv + 2 * 3 * 4 + 4 * 3 * 8) * 2 + 2 * 3 * 2 * 4 + 8 * 3

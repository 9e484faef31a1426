"""Every op's torch implementation against its float64 reference, at irregular shapes and each dtype."""
import pytest
import torch

from bench.measure.gate import check_case
from kernels.layer import LayerDims, layer_case, op_cases

DIMS = [
    LayerDims(hidden=64, heads=4, kv_heads=2, head_dim=16, ffn=176, vocab=512),
    LayerDims(hidden=96, heads=6, kv_heads=6, head_dim=16, ffn=200, vocab=300, qkv_bias=True),  # MHA, bias
    LayerDims(hidden=128, heads=8, kv_heads=1, head_dim=64, ffn=344, vocab=97),  # GQA 8, head dim 64
]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@pytest.mark.parametrize("dims", DIMS, ids=["gqa2", "mha-bias", "gqa8-d64"])
@pytest.mark.parametrize("batch,context", [(1, 1), (3, 37), (5, 130)])
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_torch_ops_match_reference(dims, batch, context, dtype):
    for case in op_cases(dims, batch, context, DTYPES[dtype], "cpu") + [
            layer_case(dims, batch, context, DTYPES[dtype], "cpu")]:
        check = check_case(case, "torch", dtype)
        assert check.ok, f"{case.name}: {check.reason}"
        assert check.error < check.tolerance


def test_cpu_split_gemv_equals_f_linear():
    from kernels.gemm import torch_linear

    torch.manual_seed(0)
    x, w, b = torch.randn(1, 64), torch.randn(96, 64), torch.randn(96)
    assert torch.allclose(torch_linear(x, w, b), torch.nn.functional.linear(x, w, b), atol=1e-5)


def test_attention_lengths_mask_matches_truncated_cache():
    from kernels.attention import reference, torch_sdpa

    torch.manual_seed(1)
    q, k, v = torch.randn(2, 4, 16), torch.randn(2, 2, 20, 16), torch.randn(2, 2, 20, 16)
    lengths = torch.tensor([20, 7])
    out = torch_sdpa(q, k, v, lengths)
    (ref,) = reference(q, k, v, lengths)
    (short,) = reference(q[1:], k[1:, :, :7], v[1:, :, :7])
    assert torch.allclose(out.double(), ref, atol=1e-5)
    assert torch.allclose(ref[1:], short, atol=1e-12)


def test_inputs_are_random_and_fresh_per_seed():
    case = op_cases(DIMS[0], 2, 9, torch.float32, "cpu")[1]
    a, b = case.make_inputs(0), case.make_inputs(1)
    assert a["x"].abs().sum() > 0 and a["w"].abs().sum() > 0  # never zeros
    assert not torch.equal(a["x"], b["x"])
    assert torch.equal(a["x"], case.make_inputs(0)["x"])  # seeded: reproducible

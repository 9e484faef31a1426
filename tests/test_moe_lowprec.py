"""Low-precision expert weights: the FP8 128x128 block and MXFP4 formats (quantize, exact dequantize,
packing), the MoE op with them against its float64 reference on the dequantized weights (torch-dequant on
the CPU, the Triton grouped GEMMs under the interpreter in float16/float32, the blockwise _scaled_mm path
on a GPU), faults the check must catch, and the work counts."""
import pytest
import torch

from bench.measure.gate import check_case
from kernels import expert_weights as ew
from kernels import moe, moe_lowprec
from kernels.dtypes import TOLERANCE, torch_dtype

# partial 128-blocks (hidden 160, expert FFN 96), gate and up rows sharing a block (2F = 128), shared experts,
# and tiny-moe's widths (expert FFN 48: a partial 16-element MXFP4 block)
SMALL = [moe.MoeShape(tokens=1, hidden=256, ffn=128, experts=4, top_k=2),
         moe.MoeShape(tokens=5, hidden=160, ffn=96, experts=6, top_k=2, shared=1),
         moe.MoeShape(tokens=19, hidden=128, ffn=64, experts=4, top_k=3),
         moe.MoeShape(tokens=3, hidden=64, ffn=48, experts=8, top_k=2, shared=1)]


def _w(shape, seed=0, scale=0.05):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * scale


def test_fp8_block_scales_are_block_amax_over_448_and_dequantize_exactly():
    w = _w((2, 200, 300))
    q = ew.quantize_fp8_block(w)
    assert q.q.dtype == torch.float8_e4m3fn and q.q.shape == (2, 200, 300)
    assert q.scale_inv.shape == (2, 2, 3)  # ceil(200/128), ceil(300/128): DeepSeek's weight_scale_inv
    assert q.scale_inv[1, 1, 2].item() == pytest.approx(w[1, 128:, 256:].abs().max().item() / 448, rel=1e-6)
    deq = q.dequantize64()
    block = deq[0, :128, :128] / q.scale_inv[0, 0, 0].double()
    assert torch.equal(block, q.q[0, :128, :128].double())  # q * scale, nothing else
    assert 0.01 < ew.quantization_error(w, "fp8-block") < 0.05  # e4m3: 3 mantissa bits
    assert q.nbytes() == 2 * ew.stored_bytes(200, 300, "fp8-block") == 2 * (200 * 300 + 4 * 6)


def test_mxfp4_packs_low_nibble_first_with_power_of_two_scales():
    # one 32-element block, amax 3 -> shared exponent floor(log2 3) - 2 = -1: scale 1/2, biased 126
    row = torch.tensor([[1.5, -0.5, 3.0, 0.25] + [0.0] * 28])
    m = ew.quantize_mxfp4(row)
    assert m.scales.tolist() == [[126]]
    # 1.5 / 0.5 = 3 -> code 5; -0.5 / 0.5 = -1 -> code 8 | 2 = 10; 3 / 0.5 = 6 -> code 7;
    # 0.25 / 0.5 = 0.5 -> code 1
    assert m.blocks[0, :2].tolist() == [5 | (10 << 4), 7 | (1 << 4)]
    torch.testing.assert_close(m.dequantize()[0, :4], row[0, :4], rtol=0, atol=0)


def test_mxfp4_rounds_to_nearest_ties_to_even_and_clamps():
    # amax 7 -> exponent 0 (scale 1): every midpoint of the E2M1 grid, then 7 (clamped to 6)
    vals = torch.tensor([[0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 7.0] + [0.0] * 24])
    got = ew.quantize_mxfp4(vals).dequantize()[0, :8].tolist()
    assert got == [0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 6.0]


def test_mxfp4_dequantizes_exactly_in_bf16_ends_in_a_partial_block_and_refuses_odd_k():
    m = ew.quantize_mxfp4(_w((3, 64, 96)))
    assert torch.equal(m.dequantize(torch.bfloat16).double(), m.dequantize64())
    assert m.shape == (3, 64, 96) and m.nbytes() == 3 * (64 * 48 + 64 * 3)
    assert 0.05 < ew.quantization_error(_w((3, 64, 96)), "mxfp4") < 0.2
    part = ew.quantize_mxfp4(_w((4, 40)))  # blocks of 32 and 8 elements
    assert part.blocks.shape == (4, 20) and part.scales.shape == (4, 2) and part.shape == (4, 40)
    assert part.nbytes() == ew.stored_bytes(4, 40, "mxfp4") == 4 * 20 + 4 * 2
    tail = _w((4, 40))[:, 32:]
    assert part.scales[0, 1].item() == 127 + int(torch.floor(torch.log2(tail[0].abs().max()))) - 2
    with pytest.raises(ValueError, match="K must be even"):
        ew.quantize_mxfp4(_w((4, 41)))


def test_activation_groups_are_per_token_per_128():
    x = _w((3, 300), scale=1.0)
    q, s = ew.quantize_groups(x)
    assert q.shape == (3, 300) and s.shape == (3, 3)
    assert s[2, 2].item() == pytest.approx(x[2, 256:].abs().max().item() / 448, rel=1e-6)
    assert (ew.dequantize_groups(q, s) - x.double()).norm() / x.norm() < 0.05


def test_bytes_count_stored_weights_and_scales():
    s = moe.MoeShape(tokens=2, hidden=256, ffn=128, experts=4, top_k=2, shared=1)
    fp8_expert = 256 * 256 + 4 * 2 * 2 + 256 * 128 + 4 * 2 * 1
    mx_expert = 256 * 256 // 2 + 256 * 8 + 256 * 128 // 2 + 256 * 4
    assert moe_lowprec.expert_bytes(s, "fp8-block") == fp8_expert
    assert moe_lowprec.expert_bytes(s, "mxfp4") == mx_expert
    act = 4 * 256 + 2 * 2 * 256  # router, x, y in the activation dtype
    assert moe_lowprec.min_bytes(s, "mxfp4", 2, active=3) == (3 + 1) * mx_expert + act * 2
    assert moe_lowprec.min_bytes(s, "fp8-block", 2) == round((moe.expected_active_experts(s) + 1) * fp8_expert
                                                           + act * 2)
    assert moe_lowprec.flops(s) == moe.flops(s)
    # against the bf16 experts: about half (FP8) and a bit over a quarter (MXFP4) of the expert bytes
    bf16_expert = 3 * 256 * 128 * 2
    assert 0.5 < fp8_expert / bf16_expert < 0.51 and 0.26 < mx_expert / bf16_expert < 0.27


def test_inputs_share_the_routing_of_the_bf16_op():
    s = SMALL[1]
    inputs = moe_lowprec.make_inputs(s, "mxfp4", torch.float32, "cpu", 3)
    plain = moe.routing_inputs(s, torch.float32, "cpu", 3)
    assert torch.equal(inputs["x"], plain["x"]) and torch.equal(inputs["router_w"], plain["router_w"])
    assert isinstance(inputs["w_gate_up"], ew.Mxfp4Weight) and inputs["w_gate_up"].shape == (7, 192, 160)
    again = moe_lowprec.make_inputs(s, "mxfp4", torch.float32, "cpu", 4)
    assert not torch.equal(inputs["w_down"].blocks, again["w_down"].blocks)  # fresh draws per seed


@pytest.mark.parametrize("fmt", moe_lowprec.WEIGHT_FORMATS)
@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("shape", SMALL, ids=str)
def test_torch_dequant_matches_reference(shape, dtype, fmt):
    case = moe_lowprec.moe_case(shape, fmt, torch_dtype(dtype), "cpu", ("torch-dequant",))
    check = check_case(case, "torch-dequant", dtype)
    assert check.ok, check.reason


@pytest.mark.interpreter
@pytest.mark.parametrize("fmt", moe_lowprec.WEIGHT_FORMATS)
@pytest.mark.parametrize("dtype", ["fp32", "fp16"])  # the interpreter's bf16 dot is wrong
@pytest.mark.parametrize("shape", SMALL, ids=str)
def test_triton_lowprec_grouped_gemm_matches_reference(shape, dtype, fmt):
    if torch.cuda.is_available():
        pytest.skip("interpreter test")
    case = moe_lowprec.moe_case(shape, fmt, torch_dtype(dtype), "cpu", ("triton",))
    check = check_case(case, "triton", dtype)
    assert check.ok, check.reason


def test_fp8_tolerance_floor_and_mxfp4_dtype_tolerance():
    fp8_case = moe_lowprec.moe_case(SMALL[0], "fp8-block", torch.float32, "cpu")
    assert fp8_case.tolerance == moe_lowprec.FP8_BLOCK_TOLERANCE
    assert moe_lowprec.moe_case(SMALL[0], "fp8-block", torch.bfloat16, "cpu").tolerance == TOLERANCE["bf16"]
    assert moe_lowprec.moe_case(SMALL[0], "mxfp4", torch.float32, "cpu").tolerance is None


@pytest.mark.parametrize("fault", ["scale 1% off", "scale of one block doubled", "nibbles swapped"])
def test_check_catches_faults_in_the_weight_decoding(fault):
    """An implementation that misreads the format (a scale 1% off, one wrong block, nibble order) fails."""
    fmt = "mxfp4" if fault == "nibbles swapped" else "fp8-block"
    shape = SMALL[0]

    def wrong(x, router_w, w_gate_up, w_down, top_k, **_):
        if fault == "scale 1% off":
            w_gate_up = w_gate_up._replace(scale_inv=w_gate_up.scale_inv * 1.01)
        elif fault == "scale of one block doubled":
            s = w_down.scale_inv.clone()
            s[:, 0, 0] *= 2
            w_down = w_down._replace(scale_inv=s)
        else:
            b = w_gate_up.blocks
            w_gate_up = w_gate_up._replace(blocks=(b >> 4) | ((b & 0xF) << 4))
        return moe_lowprec.torch_dequant(x, router_w, w_gate_up, w_down, top_k)

    case = moe_lowprec.moe_case(shape, fmt, torch.float32, "cpu", ("torch-dequant",))
    from dataclasses import replace

    bad = replace(case, impls={"wrong": lambda inp: wrong(**inp)})
    check = check_case(bad, "wrong", "fp32")
    assert not check.ok and check.error > 2 * check.tolerance, check


def test_unknown_format_and_backend_are_refused():
    with pytest.raises(ValueError, match="choose from fp8-block, mxfp4"):
        moe_lowprec.moe_case(SMALL[0], "int4", torch.float32, "cpu")
    with pytest.raises(ValueError, match="unknown mxfp4 MoE backend 'torch'"):
        moe_lowprec.moe_case(SMALL[0], "mxfp4", torch.float32, "cpu", ("torch",))


def test_fp8_block_is_verified_not_timed_without_fp8_hardware():
    case = moe_lowprec.moe_case(SMALL[0], "fp8-block", torch.float32, "cpu")
    ok, why = case.timing_support("cpu")
    assert not ok and "8.9" in why
    assert moe_lowprec.moe_case(SMALL[0], "mxfp4", torch.float32, "cpu").timing_support is None
    ok, why = moe_lowprec.blockwise_scaled_mm_support("cpu")
    assert not ok and why


@pytest.mark.gpu
@pytest.mark.parametrize("fmt", moe_lowprec.WEIGHT_FORMATS)
@pytest.mark.parametrize("shape", [
    moe.MoeShape(tokens=8, hidden=1024, ffn=512, experts=16, top_k=2, shared=1),
    moe.MoeShape(tokens=64, hidden=512, ffn=256, experts=8, top_k=2)], ids=str)
def test_lowprec_moe_bf16_on_gpu(shape, fmt):
    backends = list(moe_lowprec.IMPLS[fmt])
    if fmt == "fp8-block" and not moe_lowprec.blockwise_scaled_mm_support(torch.device("cuda"))[0]:
        backends.remove("torch")
    case = moe_lowprec.moe_case(shape, fmt, torch.bfloat16, "cuda", backends)
    for backend in backends:
        check = check_case(case, backend, "bf16")
        assert check.ok, (backend, check.reason)


def test_weight_scales_for_cublas_have_16_byte_row_strides():
    s = torch.rand(3, 2)
    aligned = moe_lowprec._k_blocks_aligned(s)
    assert torch.equal(aligned, s) and aligned.stride() == (4, 1)
    wide = torch.rand(3, 8)
    assert moe_lowprec._k_blocks_aligned(wide) is wide

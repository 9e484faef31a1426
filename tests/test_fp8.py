"""FP8: quantization, the torch._scaled_mm path (CPU's emulation here, cuBLASLt on a GPU), the Triton FP8 GEMM
(interpreter here), byte counts, and the skip reasons on devices without FP8."""
import pytest
import torch

from bench.measure.gate import check_case
from kernels import fp8, gemm

SHAPES = [(1, 64, 48), (3, 96, 80), (17, 160, 112)]


def test_quantize_per_tensor_and_per_row():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(8, 256, generator=g)
    t[3] *= 100  # one loud row: per-row scales keep the quiet rows' precision
    q, s = fp8.quantize(t, per_row=False)
    assert q.dtype == torch.float8_e4m3fn and s.shape == ()
    assert q.float().abs().max().item() == 448.0  # amax maps to the largest e4m3 value
    qr, sr = fp8.quantize(t, per_row=True)
    assert sr.shape == (8, 1)
    err_rows = [((fp8.dequantize64(qr[i], sr[i]) - t[i].double()).norm() / t[i].double().norm()).item()
                for i in range(8)]
    assert max(err_rows) < 0.04  # 3 mantissa bits: ~2.5% rms for Gaussian data
    assert fp8.quantization_error(t, per_row=True) < 0.04
    zq, _ = fp8.quantize(torch.zeros(2, 16), per_row=True)  # no division by zero
    assert torch.isfinite(zq.float()).all() and torch.all(zq.float() == 0)


def test_bytes_halve_at_batch_one():
    s = fp8.Fp8GemmShape(1, 4096, 14336)
    bf16 = gemm.min_bytes(gemm.GemmShape(1, 4096, 14336), 2)
    assert fp8.min_bytes(s) / bf16 == pytest.approx(0.5, abs=0.001)
    assert fp8.flops(s) == gemm.flops(gemm.GemmShape(1, 4096, 14336))
    assert fp8.min_bytes(fp8.Fp8GemmShape(1, 4096, 14336, "channel")) == fp8.min_bytes(s) - 8 + 4 * (14336 + 1)


def test_no_fp8_on_cpu_is_a_stated_skip():
    ok, why = fp8.support("cpu")
    assert not ok and "8.9" in why
    ok4, why4 = fp8.fp4_support("cpu")
    assert not ok4 and why4


def _cpu_scaled_mm_works() -> bool:
    try:
        a = torch.ones(16, 16).to(torch.float8_e4m3fn)
        torch._scaled_mm(a, a.t(), scale_a=torch.tensor(1.0), scale_b=torch.tensor(1.0), out_dtype=torch.bfloat16)
        return True
    except (RuntimeError, NotImplementedError):
        return False


@pytest.mark.parametrize("scaling", fp8.SCALINGS)
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_scaled_mm_path_matches_dequantized_reference(m, k, n, scaling):
    if not _cpu_scaled_mm_works():
        pytest.skip(f"torch {torch.__version__} has no CPU _scaled_mm")
    case = fp8.fp8_case(fp8.Fp8GemmShape(m, k, n, scaling), "cpu", backends=("torch",))
    check = check_case(case, "torch", "bf16")
    assert check.ok, check.reason


# W8A8 (x quantized to FP8) and weight-only W8A16 with x in float16: the interpreter's bf16 dot is wrong;
# bf16 x runs in the GPU test
@pytest.mark.interpreter
@pytest.mark.parametrize("backend,x_dtype", [("triton", torch.bfloat16), ("triton-w8a16", torch.float16)])
@pytest.mark.parametrize("scaling", fp8.SCALINGS)
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_triton_fp8_interpreter(m, k, n, scaling, backend, x_dtype):
    if torch.cuda.is_available():
        pytest.skip("interpreter test")
    case = fp8.fp8_case(fp8.Fp8GemmShape(m, k, n, scaling), "cpu", backends=(backend,), x_dtype=x_dtype)
    check = check_case(case, backend, "bf16")
    assert check.ok, check.reason


def test_w8a8_and_w8a16_backends_need_separate_cases():
    with pytest.raises(ValueError, match="separate cases"):
        fp8.fp8_case(fp8.Fp8GemmShape(*SHAPES[0]), "cpu", backends=("triton", "triton-w8a16"))


def test_reference_isolates_gemm_from_quantization():
    inputs = fp8.make_inputs(fp8.Fp8GemmShape(2, 64, 32), "cpu", 5)
    (ref,) = fp8.reference(**inputs)
    exact = inputs["x"].double() @ fp8.dequantize64(inputs["w_q"], inputs["w_scale"]).T
    rel = ((ref - exact).norm() / exact.norm()).item()
    assert 0.005 < rel < 0.06  # the activation's quantization error, kept out of the check


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["torch", "triton", "triton-w8a16"])
@pytest.mark.parametrize("scaling", fp8.SCALINGS)
@pytest.mark.parametrize("m,k,n", [(1, 4096, 4096), (16, 4096, 14336), (5, 1024, 6144)])
def test_fp8_on_gpu(m, k, n, scaling, backend):
    ok, why = fp8.support("cuda")
    if not ok:
        pytest.skip(why)
    ok, why = fp8.scaling_support(scaling)
    if not ok:
        pytest.skip(why)
    case = fp8.fp8_case(fp8.Fp8GemmShape(m, k, n, scaling), "cuda", backends=(backend,))
    check = check_case(case, backend, "bf16")
    assert check.ok, check.reason

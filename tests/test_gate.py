"""The correctness gate catches wrong implementations and never lets one be timed."""
import math
from dataclasses import replace

import pytest
import torch

from bench.configs.device_catalog import detect
from bench.configs.model_configs import get_model
from bench.sweeps.decode_sweep import RunPlan, measure
from bench.measure.gate import check_case
from kernels.layer import LayerDims, op_cases

DIMS = LayerDims(hidden=64, heads=4, kv_heads=2, head_dim=16, ffn=176, vocab=512)


def case_named(name):
    return next(c for c in op_cases(DIMS, 3, 21, torch.float32, "cpu") if c.name == name)


def with_impl(case, fn):
    return replace(case, impls={"bad": fn})


def test_slightly_wrong_gemm_fails():
    case = case_named("qkv_proj")
    bad = with_impl(case, lambda inp: torch.nn.functional.linear(inp["x"], inp["w"]) * 1.01)
    check = check_case(bad, "bad", "fp32")
    assert not check.ok and check.error == pytest.approx(0.01, rel=0.05)


def test_nan_output_fails():
    case = case_named("swiglu")
    check = check_case(with_impl(case, lambda inp: torch.full_like(inp["gate_up"][:, :176], math.nan)), "bad",
                       "fp32")
    assert not check.ok and "NaN" in check.reason


def test_unwritten_kv_slot_fails_through_poison():
    case = case_named("kv_append")
    check = check_case(with_impl(case, lambda inp: None), "bad", "fp32")  # writes nothing
    assert not check.ok and "NaN" in check.reason


def test_wrong_position_kv_append_fails():
    def off_by_one(inp):
        rows = torch.arange(inp["k"].shape[0])
        pos = (inp["positions"] + 1) % inp["k_cache"].shape[2]
        inp["k_cache"][rows, :, pos] = inp["k"]
        inp["v_cache"][rows, :, pos] = inp["v"]

    assert not check_case(with_impl(case_named("kv_append"), off_by_one), "bad", "fp32").ok


def test_crashing_and_misshapen_impls_fail_with_reason():
    case = case_named("gate_up_proj")
    crash = check_case(with_impl(case, lambda inp: 1 / 0), "bad", "fp32")
    assert not crash.ok and "ZeroDivisionError" in crash.reason
    shape = check_case(with_impl(case, lambda inp: inp["x"]), "bad", "fp32")
    assert not shape.ok and "shape" in shape.reason


def test_failed_check_is_never_timed():
    device = detect("cpu")
    plan = RunPlan(model=get_model("tiny"), batches=[3], contexts=[21], dtype="fp32", backends=["bad"],
                   budget_s=0.05)
    case = with_impl(case_named("qkv_proj"), lambda inp: torch.nn.functional.linear(inp["x"], inp["w"]) + 1)
    row = measure(case, "bad", device, plan, 3, 21).to_dict()  # as it is written
    assert row["valid"] is False
    assert "seconds_p50" not in row and "tflops" not in row


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("op", ["qkv_proj", "o_proj", "gate_up_proj", "down_proj", "lm_head"])
def test_one_percent_wrong_projection_fails_in_every_dtype(dtype, op):
    """The gate per dtype: the right implementation passes, the same one 1% off fails. In bf16 (8 bits of
    mantissa, relative rounding 2**-9 ~ 0.2% per element) a 1% error is only a few times the rounding noise,
    so this is the test that shows the bf16 tolerance is tight enough to see it."""
    cases = {c.name: c for c in op_cases(DIMS, 3, 21, DTYPES[dtype], "cpu")}
    if op not in cases:
        pytest.skip(f"no {op} case in this layer")
    case = cases[op]
    right = check_case(case, "torch", dtype)
    assert right.ok, right.reason
    bad = check_case(with_impl(case, lambda inp: case.impls["torch"](inp) * 1.01), "bad", dtype)
    assert not bad.ok, f"{op} in {dtype}: a 1% error ({bad.error:.2e}) passed the tolerance {bad.tolerance:.0e}"

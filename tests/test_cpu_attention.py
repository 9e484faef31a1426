"""The CPU attention chooser over a half-width cache: every candidate matches float64 (with and without
ragged lengths), the winner is one that passed, and a wrong candidate is never picked."""
import pytest
import torch

from kernels import attention, cpu_attention


@pytest.fixture(autouse=True)
def fresh_choices(monkeypatch):
    # every test starts from no cached choice, and leaves the process's cache as it found it
    monkeypatch.setattr(cpu_attention, "_CHOSEN", {})


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("shape", [(1, 4, 2, 16, 9), (3, 8, 2, 64, 33)])  # batch, heads, kv heads, dim, context
def test_every_candidate_matches_float64(shape, masked, dtype):
    for cand in cpu_attention.candidates():
        err = cpu_attention.check(cand, shape, dtype, masked, attention.reference, seed=4)
        assert err <= cpu_attention.tolerance(dtype), (cand.name, err)


def test_torch_sdpa_on_a_bf16_cache_goes_through_the_chooser_and_records_a_passed_winner():
    inp = attention.make_inputs(attention.AttentionShape(2, 8, 4, 32, 17), torch.bfloat16, "cpu", 6)
    out = attention.torch_sdpa(**inp)
    (ref,) = attention.reference(**inp)
    assert ((out.double() - ref).norm() / ref.norm()).item() < cpu_attention.tolerance(torch.bfloat16)
    [(_, _, dtype, choice)] = cpu_attention.calibrations()
    assert dtype == "bf16" and choice.name in choice.seconds
    assert choice.errors[choice.name] <= cpu_attention.tolerance(torch.bfloat16)


def test_a_fast_wrong_candidate_is_never_picked():
    wrong = cpu_attention.Candidate("wrong", lambda q, k, v, lengths=None: torch.zeros_like(q))
    right = cpu_attention.candidates()[1]
    inp = attention.make_inputs(attention.AttentionShape(2, 4, 2, 16, 8), torch.bfloat16, "cpu", 2)
    choice = cpu_attention.choose(inp["q"], inp["k_cache"], inp["v_cache"], None, attention.reference, [wrong, right])
    assert choice.name == right.name and set(choice.seconds) == {right.name}
    with pytest.raises(RuntimeError, match="no CPU attention path passed"):
        cpu_attention.choose(inp["q"], inp["k_cache"], inp["v_cache"], None, attention.reference, [wrong])

"""The CPU GEMM chooser: every candidate matches float64, the winner is one that passed, and a wrong
candidate is never picked, however fast."""
import time

import pytest
import torch

from kernels import cpu_gemm
from kernels import cpu_widen_gemm as widen
from kernels.gemm import torch_linear

SHAPES = [(1, 64, 96, False), (3, 80, 48, True), (8, 128, 256, False)]


@pytest.fixture(autouse=True)
def fresh_choices(monkeypatch):
    # every test starts from no cached choice, and leaves the process's cache as it found it
    monkeypatch.setattr(cpu_gemm, "_CHOSEN", {})


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("m,k,n,bias", SHAPES)
def test_every_candidate_matches_float64(m, k, n, bias, dtype):
    for cand in cpu_gemm.candidates(dtype):  # the paths this CPU can run in this dtype
        if cand.applies(m, k, n):
            err = cpu_gemm.check(cand, m, k, n, dtype, bias, seed=5)
            assert err <= cpu_gemm.tolerance(dtype), (cand.name, err)


def _inputs(m, k, n, bias, dtype=torch.float32, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=g).to(dtype)
    w = (torch.randn(n, k, generator=g) * k**-0.5).to(dtype)
    return x, w, (torch.randn(n, generator=g).to(dtype) if bias else None)


@pytest.mark.parametrize("m,k,n,bias", SHAPES)
def test_chosen_path_passed_and_is_recorded(m, k, n, bias):
    x, w, b = _inputs(m, k, n, bias)
    y = torch_linear(x, w, b)
    ref = x.double() @ w.double().T + (b.double() if bias else 0)
    assert ((y.double() - ref).norm() / ref.norm()).item() < 1e-4
    name = cpu_gemm.chosen_path(m, k, n, torch.float32, bias)
    choice = cpu_gemm._CHOSEN[(m, k, n, torch.float32, bias, torch.get_num_threads())]
    assert name == choice.name and choice.errors[name] <= cpu_gemm.tolerance(torch.float32)
    assert name in choice.seconds  # only timed candidates can win
    assert any(v == name for v in cpu_gemm.chosen_paths().values())


def test_a_fast_wrong_candidate_is_never_picked():
    def wrong(x, w, b):  # 1% off everywhere, and instant: it would win any race it entered
        return torch.empty(x.shape[0], w.shape[0], dtype=x.dtype).fill_(1.0)

    def off_by_one_percent(x, w, b):
        return torch.nn.functional.linear(x, w, b) * 1.01

    pool = [cpu_gemm.Candidate("wrong", wrong), cpu_gemm.Candidate("scaled", off_by_one_percent),
            cpu_gemm.Candidate("linear", cpu_gemm._linear)]
    x, w, b = _inputs(4, 64, 128, False)
    choice = cpu_gemm.choose(x, w, b, pool)
    assert choice.name == "linear"
    assert set(choice.seconds) == {"linear"}
    assert choice.errors["wrong"] > 1e-2 and choice.errors["scaled"] > 1e-3


def test_no_passing_candidate_is_an_error_not_a_silent_pick():
    pool = [cpu_gemm.Candidate("scaled", lambda x, w, b: torch.nn.functional.linear(x, w, b) * 1.01)]
    x, w, b = _inputs(2, 32, 64, False)
    with pytest.raises(RuntimeError, match="no CPU GEMM path passed"):
        cpu_gemm.choose(x, w, b, pool)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("m,k,n", [(1, 20, 7), (9, 67, 33), (5, 2048, 130)])  # odd N, K % 8 != 0, M > 4
def test_widened_paths_match_float64_on_ragged_shapes(m, k, n, dtype):
    pool = [cpu_gemm.Candidate(name, run) for name, run in cpu_gemm._WIDEN_BLOCKS.items()]
    if widen.kernel_available():
        pool.append(cpu_gemm.Candidate("widened_kernel", widen.widened_kernel))
    for cand in pool:
        for bias in (False, True):
            err = cpu_gemm.check(cand, m, k, n, dtype, bias, seed=3)
            assert err <= cpu_gemm.tolerance(dtype), (cand.name, bias, err)


def test_half_width_weights_get_the_widened_candidates():
    names = [c.name for c in cpu_gemm.candidates(torch.bfloat16)]
    assert "widen_blocks_1m" in names
    assert ("widened_kernel" in names) == widen.kernel_available()
    assert not {"widen_blocks_1m", "widened_kernel"} & {c.name for c in cpu_gemm.candidates(torch.float32)}


def test_no_compiler_means_no_kernel_candidate_and_says_why(monkeypatch):
    monkeypatch.setattr(widen, "_LIB", None)
    monkeypatch.setattr(widen, "_STATUS", "not built yet")
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(widen.shutil, "which", lambda name: None)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")  # as on a CPU that could
    assert not widen.kernel_available()
    assert "no C compiler" in widen.kernel_status()
    assert "widened_kernel" not in [c.name for c in cpu_gemm.candidates(torch.bfloat16)]


def test_a_far_slower_candidate_is_timed_once_and_cannot_win():
    calls = {"slow": 0}

    def slow(x, w, b):
        calls["slow"] += 1
        time.sleep(0.4)  # far past any stall a loaded machine puts on the 2x64x128 linear
        return torch.nn.functional.linear(x, w, b)

    pool = [cpu_gemm.Candidate("slow", slow), cpu_gemm.Candidate("linear", cpu_gemm._linear)]
    x, w, b = _inputs(2, 64, 128, False)
    choice = cpu_gemm.choose(x, w, b, pool)
    assert choice.name == "linear" and set(choice.seconds) == {"slow", "linear"}
    assert calls["slow"] == 3  # the float64 check, the warm-up, one timed run

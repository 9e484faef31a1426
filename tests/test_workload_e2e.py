"""The end-to-end cohort (bench/workload/e2e.py): float64 check, cache slots, timing fields, the documented
packing and chunking, and refusing a cohort that does not fit. The tiny model throughout (a few seconds)."""
import math

import pytest
import torch

import bench.workload.e2e as e2e
import kernels.backends
from bench.configs.device_catalog import detect
from bench.errors import UserError
from bench.configs.model_configs import get_model
from kernels.prefill_layer import Chunk

TINY = get_model("tiny")


@pytest.fixture(scope="module")
def cpu():
    return detect("cpu")


@pytest.fixture(scope="module")
def tiny_model(cpu):
    return e2e.make_cohort_model(TINY, "fp32", cpu, "torch", max_positions=64, seed=0)


def test_float64_check_passes_fp32(tiny_model):
    check = e2e.verify_cohort(tiny_model, "fp32", TINY.layers)
    assert check.ok, check.reason
    assert check.reference_error < 1e-5  # fp32 lands near 1e-6
    assert check.tolerance == pytest.approx(1e-4 * math.sqrt(TINY.layers))


def test_wrong_layer_fails_the_check_and_is_not_timed(cpu, monkeypatch):
    swiglu = kernels.backends.TORCH_IMPLS["activation"]
    monkeypatch.setitem(kernels.backends.TORCH_IMPLS, "activation", lambda **kw: swiglu(**kw) * 1.01)
    run = e2e.run_cohort(TINY, "fp32", cpu, 2, 8, 3, 4)
    assert not run.ok
    assert "relative error" in run.check.reason and run.check.reference_error > run.check.tolerance
    assert math.isnan(run.prefill_s) and math.isnan(run.wall_s) and not run.decode_step_s


def test_skipped_cache_write_fails_the_timed_run_checks(cpu, monkeypatch):
    """A decode layer that never writes its new K/V: the reference check sees it (NaN), and so does the timed
    run's own check of the poisoned slots."""
    monkeypatch.setitem(kernels.backends.TORCH_IMPLS, "kv_append", lambda **kw: None)
    model = e2e.make_cohort_model(TINY, "fp32", cpu, "torch", max_positions=64)
    assert not e2e.verify_cohort(model, "fp32", TINY.layers).ok
    run = e2e.run_cohort(TINY, "fp32", cpu, 2, 8, 3, 4, verify=False)
    assert not run.ok and run.check.finite is False
    # decode steps 1 .. OSL-1 write slots ISL .. ISL+OSL-2: 2 slots x C x Hkv x D x (K, V) x layers
    assert run.check.unwritten == 2 * 2 * TINY.kv_heads * TINY.head_dim * 2 * TINY.layers
    assert "never written" in run.check.reason


def test_cohort_writes_every_cache_slot(tiny_model):
    c, isl, osl = 3, 10, 4
    caches = e2e.make_caches(tiny_model, c, isl + osl)
    prompt = torch.randint(0, TINY.vocab, (c, isl), generator=torch.Generator().manual_seed(5))
    tr = e2e.run_pass(tiny_model, caches, prompt, osl, chunk=4)
    assert tr.finite
    assert e2e.unwritten_slots(caches, isl + osl - 1) == 0
    # the last slot is never written: the last answer token is produced, never fed back
    assert all(torch.isnan(t[:, :, isl + osl - 1]).all() for kv in caches for t in kv)


def test_timing_fields(cpu):
    run = e2e.run_cohort(TINY, "fp32", cpu, 3, 8, 5, 4)
    assert run.ok, run.check.reason
    assert run.check.finite and run.check.unwritten == 0
    assert run.prefill_s > 0 and run.decode_s > 0 and run.wall_s > 0 and run.warmup_s > 0
    assert run.prefill_s + run.decode_s <= run.wall_s
    assert len(run.decode_step_s) == 4 and all(s > 0 for s in run.decode_step_s)
    assert run.decode_contexts == [9, 10, 11, 12]  # ISL + 1 .. ISL + OSL - 1
    assert run.decode_p10 <= run.decode_p50 <= run.decode_p90
    assert run.groups == [1, 1, 1] and run.chunks == [4, 4]
    assert run.input_tokens == 24 and run.output_tokens == 15
    assert run.kv_bytes == TINY.kv_cache_bytes(3, 13, "fp32")
    assert run.memory_bytes == run.weight_bytes + run.kv_bytes > 0
    assert run.first_token_s == sorted(run.first_token_s)
    assert run.first_token_s[-1] == pytest.approx(run.prefill_s)
    assert run.to_dict()["ok"] is True


def _count_calls(monkeypatch, tiny_model, c, isl, osl, chunk):
    prefill, decode = [], []

    def counting_prefill(d, backends, w, x, residual, k_cache, v_cache, prefix, cos, sin, **kw):
        prefill.append((k_cache.shape[0], x.shape[0] // k_cache.shape[0], prefix, k_cache.shape[2]))
        return real_prefill(d, backends, w, x, residual, k_cache, v_cache, prefix, cos, sin, **kw)

    def counting_decode(d, backends, w, x, residual, k_cache, v_cache, positions, cos, sin, **kw):
        decode.append((x.shape[0], k_cache.shape[2], int(positions[0])))
        return real_decode(d, backends, w, x, residual, k_cache, v_cache, positions, cos, sin, **kw)

    real_prefill, real_decode = e2e.prefill_forward, e2e.layer_forward
    monkeypatch.setattr(e2e, "prefill_forward", counting_prefill)
    monkeypatch.setattr(e2e, "layer_forward", counting_decode)
    caches = e2e.make_caches(tiny_model, c, isl + osl)
    prompt = torch.randint(0, TINY.vocab, (c, isl), generator=torch.Generator().manual_seed(1))
    tr = e2e.run_pass(tiny_model, caches, prompt, osl, chunk)
    assert tr.finite and e2e.unwritten_slots(caches, isl + osl - 1) == 0
    per_layer = lambda calls: calls[:: TINY.layers]  # noqa: E731 - each pass calls every layer in turn
    assert len(prefill) % TINY.layers == 0 and len(decode) % TINY.layers == 0
    return per_layer(prefill), per_layer(decode)


def test_packing_whole_prompts(monkeypatch, tiny_model):
    """C=5, ISL 8, chunk 16: b = 16 // 8 = 2 prompts a group, groups of 2, 2, 1, each one chunk."""
    assert [g.batch for g in e2e.prefill_plan(5, 8, 16)] == [2, 2, 1]
    prefill, decode = _count_calls(monkeypatch, tiny_model, 5, 8, 3, 16)
    assert prefill == [(2, 8, 0, 8), (2, 8, 0, 8), (1, 8, 0, 8)]  # (sequences, tokens, prefix, cache read)
    # OSL - 1 = 2 decode steps at batch C, reading ISL + 1 then ISL + 2 cache entries
    assert decode == [(5, 9, 8), (5, 10, 9)]


def test_chunking_long_prompts(monkeypatch, tiny_model):
    """ISL 10, chunk 4: one sequence a group, chunks of 4, 4, 2 continuing the cache."""
    plan = e2e.prefill_plan(2, 10, 4)
    assert [g.chunks for g in plan] == [(Chunk(1, 4, 0), Chunk(1, 4, 4), Chunk(1, 2, 8))] * 2
    prefill, decode = _count_calls(monkeypatch, tiny_model, 2, 10, 2, 4)
    assert prefill == [(1, 4, 0, 4), (1, 4, 4, 8), (1, 2, 8, 10)] * 2
    assert decode == [(2, 11, 10)]


def test_one_output_token_has_no_decode_step(monkeypatch, tiny_model):
    assert e2e.decode_contexts(8, 1) == []
    _, decode = _count_calls(monkeypatch, tiny_model, 2, 8, 1, 8)
    assert decode == []


def test_refuses_a_cohort_that_does_not_fit(cpu, monkeypatch):
    monkeypatch.setattr(e2e, "available_bytes", lambda device: 1 << 20)
    with pytest.raises(UserError) as exc:
        e2e.run_cohort(TINY, "fp32", cpu, 4, 256, 64, 256)
    msg = str(exc.value)
    assert "\n" not in msg and "GiB" in msg and "C=4" in msg
    need = TINY.weight_bytes("fp32") + TINY.kv_cache_bytes(4, 320, "fp32")
    assert e2e.fit_reason(TINY, "fp32", cpu, 4, 256, 64) is not None
    monkeypatch.setattr(e2e, "available_bytes", lambda device: int(need / 0.8) + 1)
    assert e2e.fit_reason(TINY, "fp32", cpu, 4, 256, 64) is None


@pytest.mark.parametrize("kwargs, words", [
    (dict(concurrency=0), "positive"),
    (dict(backend="triton"), "interpreter"),
    (dict(backend="bogus"), "unknown backend"),
])
def test_refuses_bad_requests(cpu, kwargs, words):
    args = dict(concurrency=2, isl=8, osl=3, chunk=4, **kwargs) if "concurrency" not in kwargs else \
        dict(isl=8, osl=3, chunk=4, **kwargs)
    with pytest.raises(UserError, match=words):
        e2e.run_cohort(TINY, "fp32", cpu, **args)


def test_refuses_moe(cpu):
    with pytest.raises(UserError, match="mixture of experts"):
        e2e.run_cohort(get_model("tiny-moe"), "fp32", cpu, 2, 8, 3, 4)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, backend", [("fp32", "torch"), ("bf16", "torch"), ("bf16", "triton")])
def test_cohort_on_cuda(dtype, backend):
    """The same code on a GPU: checked against float64, every slot written, timed with synchronisation."""
    run = e2e.run_cohort(TINY, dtype, detect("cuda"), 5, 8, 4, 16, backend=backend)
    assert run.ok, run.check.reason
    assert run.groups == [2, 2, 1] and len(run.decode_step_s) == 3
    assert 0 < run.prefill_s + run.decode_s <= run.wall_s
    assert run.peak_memory_bytes >= run.kv_bytes


def test_one_model_for_several_cohorts(cpu, monkeypatch):
    """Weights built and float64-checked once, reused for each concurrency; a mismatched model refused."""
    calls = []
    real_verify = e2e.verify_cohort
    monkeypatch.setattr(e2e, "verify_cohort", lambda *a, **k: calls.append(1) or real_verify(*a, **k))
    model = e2e.make_cohort_model(TINY, "fp32", cpu, "torch", max_positions=4)
    runs = [e2e.run_cohort(TINY, "fp32", cpu, c, 8, 3, 8, cohort_model=model) for c in (1, 3)]
    assert len(calls) == 1 and all(r.ok for r in runs)
    assert runs[0].check.reference_error == runs[1].check.reference_error == model.checked.reference_error
    assert model.cos.shape[0] >= 11  # RoPE tables grown to ISL + OSL and the check cohorts' positions
    with pytest.raises(UserError, match="cohort model given"):
        e2e.run_cohort(TINY, "bf16", cpu, 1, 8, 3, 8, cohort_model=model)

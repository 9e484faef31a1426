"""`tokenbench workload --tp N` on CPU (gloo ranks): the sharded prefill and mixed layers give the one-process
layer's output; the command measures its steps on the group and writes points per GPU."""
import json
from dataclasses import replace

import pytest
import torch

from bench.sweeps import tp_sweep
from bench.cli import main
from bench.configs.model_configs import get_model
from bench.workload import compose as comp
from bench.workload.plan import make_spec
from kernels.prefill_layer import Chunk, make_prefill_inputs

FAST = ["--model", "tiny", "--device", "cpu", "--budget-s", "0.02"]


def test_sharded_prefill_and_mixed_layers_on_two_ranks_match_one_process(gloo_pair):
    from gloo_pair import PREFILL_CASES

    saved = gloo_pair["prefill"]  # per case, rank 0's group output beside the one-process layer's
    assert len(saved) == len(PREFILL_CASES)
    for case, s in zip(PREFILL_CASES, saved):
        assert s["kv_heads"] == 1 and s["decode_kv_heads"] in (None, 1)  # tiny: 2 KV heads split over 2 ranks
        for got, want in zip(s["tp"], s["one"]):
            assert got.shape == want.shape, case
            # the same fp32 math, summed in another order across the split: a few ulps
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_shard_inputs_splits_every_cache_by_kv_heads():
    d = get_model("tiny").layer_dims
    full = make_prefill_inputs(d, Chunk(2, 3, 4), torch.float32, "cpu", 0, decode_batch=2, context=6)
    one = tp_sweep.shard_inputs(d, full, 1, 2)
    for name in tp_sweep.CACHE_KEYS:
        torch.testing.assert_close(one[name], full[name][:, 1:2])  # rank 1 keeps KV head 1
    assert one["x"] is full["x"] and one["prefix"] == 4  # activations and positions replicated


def test_points_are_the_group_rates_per_gpu_and_memory_per_gpu():
    from bench.sweeps.decode_sweep import RunPlan
    from bench.workload.tp_group import per_gpu, tp_header

    class Dev:
        key, name, memory_bytes = None, "cpu", 10**12

    m = get_model("llama-3.1-70b")
    plan = RunPlan(model=m, batches=[], contexts=[], dtype="bf16", backends=["torch"])
    h8 = tp_header(plan, Dev(), 8)
    assert h8.tp == 8 and h8.weight_bytes == tp_sweep.shard_weight_bytes(m, 8, 2)
    assert h8.kv_bytes_per_token * 8 == m.kv_bytes_per_token("bf16")  # 8 KV heads, one per rank
    spec = make_spec(16, 8, [2], 32)
    steps = {k: comp.WorkloadStep(k, 1e-3 * (1 + k.batch)) for k in comp.needed_keys(spec, [2])}
    for p, _ in comp.compose(replace(h8, tp=1), spec, steps):
        q = per_gpu(p, 8)
        assert q.total_tokens_per_s == pytest.approx(p.total_tokens_per_s / 8)
        assert q.output_tokens_per_s == pytest.approx(p.output_tokens_per_s / 8)
        assert (q.interactivity, q.ttft_s, q.e2e_latency_s) == (p.interactivity, p.ttft_s, p.e2e_latency_s)


def test_workload_tp2_end_to_end_writes_points_per_gpu_from_the_group(tmp_path, capsys):
    """The launcher in-process, the group a real torchrun launch (rank 0's stderr relayed to ours)."""
    code = main(["workload", "--tp", "2", *FAST, "--isl", "8", "--osl", "2", "--concurrency", "1,2",
                 "--out", str(tmp_path), "--price-per-hour", "2", "--power-kw", "1"])
    stderr = capsys.readouterr().err
    assert code == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    (path,) = tmp_path.glob("*.json")  # one record: the launcher's, which rank 0 filled in
    record = json.loads(path.read_text())
    assert record["kind"] == "workload" and record["complete"] and record["workload"]["tp"] == 2
    assert record["tp"]["world_size"] == 2 and record["tp"]["process_group_backend"] == "gloo"
    assert "per rank (a CPU process) over the group" in record["tp"]["rates"]
    assert "rates are tokens/s per rank (CPU process) over a TP group of 2" in stderr
    # every timed item on every rank, gated first
    assert {r["rank"] for r in record["rows"]} == {0, 1}
    assert all(r["valid"] and r["rel_error"] <= r["tolerance"] for r in record["rows"] if "rel_error" in r)
    ops = {r["op"] for r in record["rows"]}
    assert {"tp_layer", "tp_mixed_layer", "tp_prefill_layer", "all_reduce", "final_norm", "lm_head_shard"} <= ops
    # each step: layers x the slowest rank's layer (all-reduces inside) + slowest final norm + LM head shard
    layers = record["model"]["layers"]
    for s in record["steps"]:
        assert s["tp"] == 2 and s["seconds"] > 0
        assert s["layer_seconds"] == pytest.approx(max(s["layer_seconds_per_rank"]))
        assert s["seconds"] == pytest.approx(layers * s["layer_seconds"] + s["final_norm_seconds"]
                                             + s["lm_head_seconds"])
        mine = [r for r in record["rows"] if r["op"] in ("tp_layer", "tp_mixed_layer", "tp_prefill_layer")
                and r["phase"] == s["phase"] and r["step_batch"] == s["batch"] and r["step_context"] == s["context"]
                and (s["phase"] != "mixed" or r["chunk_tokens"] == s["chunk_tokens"])]
        assert s["layer_seconds"] == pytest.approx(max(r["seconds_p50"] for r in mine))
    # the points: composed from the group's steps, then divided over the 2 ranks
    spec = make_spec(8, 2, [1, 2], 256)
    h = comp.Header(device="x", model="tiny", precision=record["dtype"], memory_bytes=None, weight_bytes=0,
                    kv_bytes_per_token=0)
    steps = {comp.WorkloadStep.from_dict(s).key: comp.WorkloadStep.from_dict(s) for s in record["steps"]}
    group = comp.compose(h, spec, steps)
    assert len(record["points"]) == len(group) == 4
    for p, (g, _), e in zip(record["points"], group, record["economics"]):
        assert p["tp"] == 2 and p["fits"]
        assert p["total_tokens_per_s"] == pytest.approx(g.total_tokens_per_s / 2)
        assert p["output_tokens_per_s"] == pytest.approx(g.output_tokens_per_s / 2)
        assert p["interactivity"] == pytest.approx(g.interactivity)
        assert e["cost_per_mtok_total"] == pytest.approx(2 / (p["total_tokens_per_s"] * 3600 / 1e6))
    # memory per GPU: the rank's weight shards and its KV heads' cache
    m = get_model("tiny")
    eb = 4 if record["dtype"] == "fp32" else 2
    c1 = record["points"][0]
    assert c1["bytes_needed"] == tp_sweep.shard_weight_bytes(m, 2, eb) + tp_sweep.kv_bytes_per_rank(m, 2, 1, 10, eb)


@pytest.mark.parametrize("argv,expect", [
    (["--tp", "0"], "--tp must be a positive integer"),
    (["--tp", "3"], "--tp 3 must divide the 4 attention heads"),
    (["--tp", "2", "--measure-e2e"], "--measure-e2e with --tp 2: the end-to-end cohort runs on one device"),
])
def test_bad_tp_input_is_one_line_exit_2(argv, expect, tmp_path, capsys):
    assert main(["workload", *FAST, "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert expect in err and err.count("\n") == 1 and "Traceback" not in err
    assert not list(tmp_path.glob("*.json"))  # refused before anything is written or launched


def test_a_tp_workload_is_not_projected():
    from types import SimpleNamespace

    from bench.errors import UserError
    from bench.workload.projection import project_points

    with pytest.raises(UserError, match="tensor-parallel workload is not projected"):
        project_points(SimpleNamespace(workload={"tp": 2}, dtype="fp32"), "h200")


def test_all_reduce_sums_logical_elements_whatever_each_rank_layout(gloo_pair):
    """Seen once in a full suite run: a sharded layer 200% off when one rank's GEMM came back in the
    row-block path's transposed layout; the all-reduce must sum elements, not storage (gloo_pair.layout_sum:
    rank 1 passes its tensor in transposed storage)."""
    torch.testing.assert_close(gloo_pair["layout_sum"], torch.arange(12, dtype=torch.float32).reshape(3, 4) * 3)

"""Expert parallelism: two gloo ranks give the one-process MoE block (float64, every rank), the traffic and
modelled all-to-all arithmetic on hand-made routings, and the one-line refusals of `moe --ep`."""
import pytest
import torch

from bench.configs.model_configs import get_model
from bench.errors import UserError
from bench.sweeps import ep_sweep
from bench.sweeps.moe_sweep import block_kind, block_shape
from kernels import moe_block, moe_expert_parallel as ep


def test_two_gloo_ranks_match_the_one_process_block_on_every_rank(gloo_pair):
    import gloo_pair as pair

    assert len(gloo_pair["ep"]) == len(pair.EP_CASES)
    uneven = False
    for case, every in zip(pair.EP_CASES, gloo_pair["ep"]):
        assert len(every) == 2, case
        for rank, got in enumerate(every):
            # float64 on both sides, the same sums in the same order per expert: equal to rounding
            torch.testing.assert_close(got["y"], got["ref"], rtol=1e-12, atol=1e-12, msg=f"{case} rank {rank}")
            assert got["ref"].abs().max() > 0.1  # a real output, not zeros
            gate = got["gate"]
            assert gate["float64_gate"] == "ran" and gate["passed"], (case, rank, gate)
            assert gate["rel_error_float64"] <= ep_sweep.FLOAT64_GATE
            assert gate["rel_error"] <= gate["tolerance"]
            assert got["wrong_shard_error"] > 1e-2  # the other rank's experts: the comparison sees it
        tokens = case[1]
        top_k = get_model(case[0]).experts_per_token
        assert [sum(r["send"]) for r in every] == [tokens * top_k] * 2
        uneven |= any(r["send"][0] != r["send"][1] for r in every)
    assert uneven  # some case sent more pairs to one rank than the other


def test_group_timings_compose_to_the_slowest_rank(gloo_pair):
    r = gloo_pair["ep_timed"]  # tiny-deepseek-v3, 4 tokens a rank, 2 gloo ranks
    assert r["ranks"] == 2 and r["tokens_per_rank"] == 4 and r["modelled"] == "nothing"
    assert len(r["per_rank"]) == 2 and all(p["valid"] for p in r["per_rank"])
    assert r["layer_seconds"] == max(p["layer_seconds"] for p in r["per_rank"]) > 0
    assert r["tokens_per_s_per_gpu"] == pytest.approx(4 / (r["moe_layers"] * r["layer_seconds"]))
    for p in r["per_rank"]:
        assert p["dispatch_seconds"] > 0 and p["combine_seconds"] > 0 and p["experts_seconds"] > 0
        t = p["traffic"]
        assert p["flops"] > 0 and t["received_pairs"] >= t["received_off_rank"]
    # every pair the two ranks send arrives somewhere: 2 ranks x 4 tokens x top-2
    assert sum(p["traffic"]["received_pairs"] for p in r["per_rank"]) == 2 * 4 * 2


def _shape(name="tiny-qwen3-moe", tokens=3, ranks=2) -> ep.EpShape:
    m = get_model(name)
    return ep.EpShape(block_shape(m, tokens, block_kind(m, None)), ranks)


def test_one_rank_is_the_one_process_block():
    s = _shape("tiny-deepseek-v3", 6, 1)
    g = moe_block.make_inputs(s.group_block, torch.float64, "cpu", 2)
    y = ep.ep_forward(s, ep.shard_inputs(s, g, 0), lambda t, send, recv: t.clone())
    torch.testing.assert_close(y, ep.reference(s, g, 0), rtol=1e-12, atol=1e-12)


def test_group_traffic_and_modelled_alltoall_on_hand_made_routing():
    s = _shape(tokens=2, ranks=2)  # 8 experts, 4 a rank, top-2; rank 0 tokens rows 0-1, rank 1 rows 2-3
    ids = torch.tensor([[0, 5], [1, 2], [6, 7], [4, 3]])
    t0, t1 = ep.group_traffic(s, ids)
    # rank 0 sends expert 5 off-rank; rank 1 sends experts 3 off-rank; rank 0 receives 1, rank 1 receives 1
    assert (t0.sent_off_rank, t0.received_off_rank, t0.received_pairs, t0.active_local_experts) == (1, 1, 4, 4)
    assert (t1.sent_off_rank, t1.received_off_rank, t1.received_pairs, t1.active_local_experts) == (1, 1, 4, 4)
    skew = ep.group_traffic(s, torch.tensor([[4, 5], [6, 7], [4, 5], [6, 7]]))  # everything to rank 1
    assert [(r.sent_off_rank, r.received_off_rank, r.received_pairs) for r in skew] == [(4, 0, 0), (0, 4, 8)]
    h = s.block.hidden  # 64, fp32: a dispatched row is 64*4 + 8 bytes
    assert ep.dispatch_bytes(s, 4, 4) == 4 * (64 * 4 + 8) and ep.combine_bytes(s, 4, 4) == 4 * h * 4
    # busiest rank moves 4 rows each way: 4 * 264 bytes at 1 GB/s, + 2 us latency
    t = ep.modelled_alltoall_seconds(skew, lambda n: ep.dispatch_bytes(s, n, 4), 1e9, latency_s=2e-6)
    assert t == pytest.approx(2e-6 + 4 * 264 / 1e9)
    assert ep.alltoall_busbw(1056, 1e-6) == pytest.approx(1.056e9)
    with pytest.raises(ValueError):
        ep.modelled_alltoall_seconds(skew, lambda n: n, 0.0)


def test_rank_work_counts_its_share():
    s = _shape(tokens=4, ranks=2)
    b = s.block
    whole = moe_block.flops(s.group_block)
    # two ranks' router and shared work on T tokens each, plus all N T k pairs between them, is the whole block
    assert ep.rank_flops(s, 5) + ep.rank_flops(s, 2 * 4 * b.top_k - 5) == whole
    traffic = ep.RankTraffic(0, 1, 1, 5, 3)
    assert ep.rank_min_bytes(s, 4, traffic) == moe_block.min_bytes(b, 4, 3) + 2 * 5 * b.hidden * 4


def test_shard_inputs_takes_the_ranks_tokens_and_experts():
    s = _shape("tiny-gpt-oss", 3, 4)  # 8 experts: 2 a rank
    g = moe_block.make_inputs(s.group_block, torch.float32, "cpu", 0)
    r2 = ep.shard_inputs(s, g, 2)
    assert torch.equal(r2["x"], g["x"][6:9]) and torch.equal(r2["w_down"], g["w_down"][4:6])
    assert torch.equal(r2["b_gate_up"], g["b_gate_up"][4:6]) and r2["router_w"] is g["router_w"]


@pytest.mark.parametrize("experts,ranks,why", [(8, 3, "do not divide"), (8, 16, "only 8 routed experts"),
                                               (8, 0, "at least 1 rank")])
def test_check_ranks_refuses(experts, ranks, why):
    with pytest.raises(ValueError, match=why):
        ep.check_ranks(experts, ranks)


@pytest.mark.parametrize("argv,why", [
    (["--ep", "3"], "do not divide over 3 ranks"),
    (["--ep", "16", "--ep-measure", "1", "--ep-busbw", "5"], "only 8 routed experts"),
    (["--ep", "4", "--ep-measure", "2"], "measure all 4 ranks"),
    (["--ep-measure", "1"], "go with --ep N"),
    (["--ep", "2", "--ep-measure", "1"], "give --ep-busbw"),
    (["--ep", "2", "--ep-busbw", "5"], "the group measures its own"),
    (["--ep", "2", "--weights", "mxfp4"], "--weights and --router"),
    (["--ep", "2", "--ep-measure", "1", "--ep-busbw", "5", "--routing", "uniform,zipf"], "one --routing"),
])
def test_moe_ep_refusals_are_one_line(argv, why, capsys):
    from bench.cli import main

    code = main(["moe", "--model", "tiny-qwen3-moe", "--device", "cpu", *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err and why in err, err
    assert err.strip().splitlines()[-1].startswith("tokenbench")


def test_one_device_share_is_measured_and_the_alltoall_modelled(capsys):
    from bench.cli import main

    code = main(["moe", "--model", "tiny-deepseek-v3", "--device", "cpu", "--ep", "2", "--ep-measure", "1",
                 "--ep-busbw", "10", "--batch", "4", "--budget-s", "0.01"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "measured: one device's share" in err and "modelled: dispatch and combine" in err
    assert "busbw 10 GB/s (--ep-busbw (given))" in err

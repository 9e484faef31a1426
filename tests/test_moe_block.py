"""The MoE routers, steered routing and the MoE block: FLOPs and bytes by hand, every backend against float64
(torch in fp32 and bf16, Triton under the interpreter in fp32 and fp16), the steered router choosing the
drawn table, the Zipf draw's frequencies, and the step statistics. transformers parity: test_moe_block_hf.py."""
import pytest
import torch

from bench.measure.gate import check_case
from kernels import moe_block as mb
from kernels import moe_router as mr
from kernels import moe_routing as routing
from kernels.dtypes import torch_dtype

DEEPSEEK = mr.RouterSpec("deepseek_group_sigmoid", True, 4, 2, 2.5)
SPECS = [mr.RouterSpec(), mr.RouterSpec(norm_topk_prob=False), mr.RouterSpec("gptoss"), DEEPSEEK,
         mr.RouterSpec("deepseek_group_sigmoid", False, 8, 3, 1.0)]
ZIPF = routing.Routing("zipf", 1.0)
BLOCKS = [
    mb.MoeBlockShape(5, 64, 32, 8, 2),  # Mixtral-like
    mb.MoeBlockShape(19, 64, 24, 16, 4, mr.RouterSpec(norm_topk_prob=False)),  # Qwen3-MoE-like
    mb.MoeBlockShape(7, 64, 24, 16, 4, DEEPSEEK, shared=2),  # DeepSeek-like
    mb.MoeBlockShape(6, 64, 40, 8, 4, mr.RouterSpec("gptoss"), expert_bias=True, activation="gptoss_swiglu",
                     limit=0.8),  # gpt-oss-like, a small limit so the clamps act
]


def test_router_spec_and_shape_refusals():
    with pytest.raises(ValueError, match="unknown router"):
        mr.RouterSpec("sparsemixer")
    with pytest.raises(ValueError, match="takes no n_group"):
        mr.RouterSpec("softmax_topk", n_group=2, topk_group=1)
    with pytest.raises(ValueError, match="equal groups"):
        mr.RouterShape(1, 64, 10, 2, mr.RouterSpec("deepseek_group_sigmoid", True, 4, 2))
    with pytest.raises(ValueError, match="does not fit"):
        mr.RouterShape(1, 64, 16, 9, mr.RouterSpec("deepseek_group_sigmoid", True, 4, 2))
    with pytest.raises(ValueError, match="positive limit"):
        mb.MoeBlockShape(1, 64, 32, 8, 2, activation="gptoss_swiglu")


def test_router_flops_and_bytes_by_hand():
    s = mr.RouterShape(3, 16, 8, 2, mr.RouterSpec("deepseek_group_sigmoid", True, 4, 2, 2.5))
    assert mr.flops(s) == 2 * 3 * 16 * 8 + 3 * 8 * 2 + 3 * 2 * 2
    assert mr.min_bytes(s, 2) == (3 + 8) * 16 * 2 + 4 * 8 + 3 * 2 * 12
    g = mr.RouterShape(3, 16, 8, 2, mr.RouterSpec("gptoss"))
    assert mr.flops(g) == 2 * 3 * 16 * 8 + 3 * 8 + 3 * 8 * 3 + 3 * 2
    assert mr.min_bytes(g, 2) == (3 + 8) * 16 * 2 + 8 * 2 + 3 * 2 * 12


def test_block_flops_and_bytes_count_only_activated_work():
    s = mb.MoeBlockShape(3, 16, 8, 4, 2, expert_bias=True, activation="gptoss_swiglu", limit=7.0,
                         router=mr.RouterSpec("gptoss"))
    per_pair = 4 * 16 * 8 + 11 * 8 + 2 * 8 * 16 + 2 * 16 + (2 * 8 + 16)
    assert mb.flops(s) == mr.flops(s.router_shape) + 3 * 2 * per_pair
    expert = 3 * 16 * 8 + 2 * 8 + 16
    router_in = (3 + 4) * 16 * 2 + 4 * 2
    assert mb.min_bytes(s, 2, active=3) == router_in + (3 * expert + 3 * 16) * 2
    d = mb.MoeBlockShape(3, 16, 8, 4, 2, shared=2, shared_ffn=4)
    shared = 6 * 16 * 8 + 5 * 8 + 16
    assert mb.flops(d) - mr.flops(d.router_shape) == 3 * (2 * (4 * 16 * 8 + 5 * 8 + 2 * 8 * 16 + 2 * 16) + shared)
    assert mb.min_bytes(d, 2, active=1) - mb.min_bytes(d, 2, active=0) == 3 * 16 * 8 * 2


@pytest.mark.parametrize("routed", [None, routing.Routing(), ZIPF], ids=str)
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.describe())
def test_torch_router_matches_float64(spec, routed):
    for tokens, dtype in ((1, "fp32"), (37, "bf16")):
        case = mr.router_case(mr.RouterShape(tokens, 64, 32, 4, spec), torch_dtype(dtype), "cpu", ("torch",), routed)
        check = check_case(case, "torch", dtype)
        assert check.ok, check.reason


@pytest.mark.interpreter
@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.describe())
def test_triton_router_matches_float64(spec, dtype):
    if torch.cuda.is_available():
        pytest.skip("interpreter test")
    for tokens, routed in ((1, None), (5, ZIPF), (37, routing.Routing())):
        case = mr.router_case(mr.RouterShape(tokens, 64, 32, 4, spec), torch_dtype(dtype), "cpu", ("triton",),
                              routed)
        check = check_case(case, "triton", dtype)
        assert check.ok, (tokens, check.reason)


@pytest.mark.interpreter
def test_triton_router_ids_and_weights_equal_torch():
    """Beyond the dense matrix: the same (id, weight) pairs per token, in any order."""
    if torch.cuda.is_available():
        pytest.skip("interpreter test")
    from kernels.triton.moe_router import triton_select

    g = torch.Generator().manual_seed(3)
    logit = torch.randn(21, 32, generator=g)
    bias = torch.randn(32, generator=g) * 0.03
    for spec in SPECS:
        want_ids, want_w = mr.select(logit, spec, 4, bias)
        ids, w = triton_select(logit, spec, 4, bias)
        order, want_order = ids.argsort(1), want_ids.argsort(1)
        assert torch.equal(ids.gather(1, order), want_ids.gather(1, want_order)), spec
        torch.testing.assert_close(w.gather(1, order), want_w.gather(1, want_order))


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.describe())
def test_steered_router_chooses_the_drawn_table(spec, dtype):
    """x built for a drawn table makes the router (float32 and float64 alike) choose exactly that table."""
    s = mr.RouterShape(64, 96, 32, 4, spec)
    g = torch.Generator().manual_seed(5)
    w = mr.draw_router_weights(32, 96, spec, torch_dtype(dtype), "cpu", g)
    table = routing.draw_table(ZIPF, 64, 32, 4, g, spec.n_group, spec.topk_group)
    target = routing.target_logits(table, 32, spec.kind, g)
    if w["router_bias"] is not None:
        target = target - w["router_bias"].double()
    x = routing.solve_inputs(w["router_w"], target, g).to(torch_dtype(dtype))
    for route in (mr.route, mr.route_reference):
        ids, _ = route(x, w["router_w"], spec, 4, w["router_bias"], w["correction_bias"])
        assert torch.equal(ids.sort(1).values, table.sort(1).values), route.__name__
    assert x.float().std() > 0.9  # as large as a random input: the routing is a component, not all of x


def test_zipf_draw_follows_its_exponent_and_uniform_is_flat():
    """Over 20000 tokens x 1 choice, each expert's share is its 1/rank^s probability within 1.5 points; at
    top-4 draws without replacement the hottest expert still carries the most tokens."""
    g = torch.Generator().manual_seed(0)
    for dist in (ZIPF, routing.Routing("zipf", 1.5), routing.Routing()):
        p = routing.expert_probabilities(dist, 16)
        table = routing.draw_table(dist, 20000, 16, 1, g)
        share = torch.bincount(table.flatten(), minlength=16).double() / 20000
        assert (share - p).abs().max() < 0.015, dist
    p = routing.expert_probabilities(ZIPF, 16)
    assert p.max() / p.min() == pytest.approx(16.0)  # rank 1 vs rank 16 at s = 1
    table = routing.draw_table(ZIPF, 2000, 16, 4, g)
    assert torch.bincount(table.flatten(), minlength=16).argmax() == p.argmax()


def test_group_limited_draw_stays_in_topk_group_groups():
    g = torch.Generator().manual_seed(1)
    table = routing.draw_table(routing.Routing("zipf", 2.0), 500, 32, 8, g, n_group=8, topk_group=3)
    groups = table // 4
    assert max(len(set(row.tolist())) for row in groups) <= 3
    assert all(len(set(row.tolist())) == 8 for row in table)  # k distinct experts


def test_parse_routing():
    assert routing.parse_routing("uniform") == routing.Routing()
    assert routing.parse_routing("zipf") == routing.Routing("zipf", 1.0)
    assert routing.parse_routing("zipf:1.2").label == "zipf:1.2"
    for bad in ("zipf:0", "zipf:-1", "zipf:x", "pareto"):
        with pytest.raises(ValueError):
            routing.parse_routing(bad)


def test_steering_refuses_hidden_below_experts():
    with pytest.raises(ValueError, match="hidden >= experts"):
        mr.make_inputs(mr.RouterShape(2, 16, 32, 2), torch.float32, "cpu", 0, ZIPF)


def test_zipf_step_is_more_concentrated_than_uniform():
    """Same block, 256 tokens: Zipf s=1.2 leaves the heaviest expert with more tokens than uniform does."""
    s = mb.MoeBlockShape(256, 64, 16, 32, 4)
    uni = mb.step_routing(s, mb.routing_inputs(s, torch.float32, "cpu", 0, routing.Routing()))
    zipf = mb.step_routing(s, mb.routing_inputs(s, torch.float32, "cpu", 0, routing.Routing("zipf", 1.2)))
    assert zipf.max_tokens_per_expert > 1.5 * uni.max_tokens_per_expert
    assert uni.active_experts == 32  # 1024 draws over 32 experts: all of them


def test_routing_stats():
    stats = routing.routing_stats(torch.tensor([[3, 0], [0, 2], [3, 0]]), 5)
    assert stats == routing.RoutingStats(active_experts=3, max_tokens_per_expert=3)


def test_case_metadata_carries_the_step_routing():
    s = BLOCKS[2]
    case = mb.moe_block_case(s, torch.float32, "cpu", ("torch",), ZIPF)
    stats = mb.step_routing(s, mb.make_inputs(s, torch.float32, "cpu", 0, ZIPF))
    assert case.shape["routing"] == "zipf:1" and case.shape["active_experts"] == stats.active_experts
    assert case.shape["max_tokens_per_expert"] == stats.max_tokens_per_expert
    assert case.bytes == mb.min_bytes(s, 4, stats.active_experts)
    assert case.shape["router"]["kind"] == "deepseek_group_sigmoid"


@pytest.mark.parametrize("backend", ["torch", "torch-gather"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("shape", BLOCKS, ids=lambda s: s.router.kind + "-" + s.activation)
def test_torch_block_matches_float64(shape, dtype, backend):
    for routed in (None, ZIPF):
        case = mb.moe_block_case(shape, torch_dtype(dtype), "cpu", (backend,), routed)
        check = check_case(case, backend, dtype)
        assert check.ok, (routed, check.reason)


@pytest.mark.interpreter
@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("shape", BLOCKS, ids=lambda s: s.router.kind + "-" + s.activation)
def test_triton_block_matches_float64(shape, dtype):
    if torch.cuda.is_available():
        pytest.skip("interpreter test")
    case = mb.moe_block_case(shape, torch_dtype(dtype), "cpu", ("triton",), ZIPF)
    check = check_case(case, "triton", dtype)
    assert check.ok, check.reason


@pytest.mark.gpu
@pytest.mark.parametrize("shape", BLOCKS + [mb.MoeBlockShape(64, 2048, 768, 128, 8, mr.RouterSpec(norm_topk_prob=False))],
                         ids=lambda s: f"{s.router.kind}-{s.tokens}")
def test_block_bf16_on_gpu(shape):
    for routed in (None, ZIPF):
        case = mb.moe_block_case(shape, torch.bfloat16, "cuda", ("triton", "torch"), routed)
        for backend in ("triton", "torch"):
            check = check_case(case, backend, "bf16")
            assert check.ok, (backend, routed, check.reason)

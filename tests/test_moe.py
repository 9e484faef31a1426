"""MoE: configs and their sizes, the router, the float64 reference, the torch baselines and the Triton grouped
GEMM (interpreter on a CPU, small shapes), and Hugging Face's Mixtral block as an outside reference."""
import math

import pytest
import torch

from bench.configs.model_configs import MODELS, get_model
from bench.measure.gate import check_case
from kernels import moe

SMALL = [moe.MoeShape(tokens=1, hidden=64, ffn=48, experts=8, top_k=2),
         moe.MoeShape(tokens=5, hidden=80, ffn=40, experts=6, top_k=2, shared=1),
         moe.MoeShape(tokens=19, hidden=32, ffn=24, experts=4, top_k=3)]


@pytest.mark.parametrize("name,total,active", [
    # published: Mixtral 46.7B / 12.9B; gpt-oss-120b 116.8B total / 5.1B active without the embedding table
    # (counted here, as `params` counts it: + 201088 x 2880); DeepSeek-V3 671B / 37B
    ("mixtral-8x7b", 46.70, 12.88), ("gpt-oss-120b", 116.83, 5.71), ("deepseek-v3", 671.03, 37.55),
])
def test_moe_param_counts(name, total, active):
    m = get_model(name)
    assert m.params / 1e9 == pytest.approx(total, rel=0.005)
    assert m.active_params / 1e9 == pytest.approx(active, rel=0.01)


def test_mixtral_params_by_hand():
    m = get_model("mixtral-8x7b")
    attn = 4096 * (4096 + 2 * 1024) + 4096 * 4096
    layer = attn + 4096 * 8 + 8 * 3 * 4096 * 14336 + 2 * 4096
    assert m.params == 2 * 32000 * 4096 + 32 * layer + 4096
    assert m.params - m.active_params == 32 * 6 * 3 * 4096 * 14336
    assert get_model("deepseek-v3").spec.layers[-1].attention.kind == "mla"


def test_dense_models_unchanged_by_moe_fields():
    m = get_model("llama-3.1-8b")
    assert not m.is_moe and m.active_params == m.params
    assert m.decode_weight_bytes("bf16", batch=64) == m.decode_weight_bytes("bf16", batch=1)


def test_expected_active_experts_formula():
    s = moe.MoeShape(tokens=1, hidden=8, ffn=8, experts=8, top_k=2)
    assert moe.expected_active_experts(s) == pytest.approx(2.0)  # one token: exactly k
    s4 = moe.MoeShape(tokens=4, hidden=8, ffn=8, experts=8, top_k=2)
    assert moe.expected_active_experts(s4) == pytest.approx(8 * (1 - 0.75**4))
    assert get_model("deepseek-v3").expected_active_experts(256) == pytest.approx(256 * (1 - (1 - 8 / 256) ** 256))
    m = get_model("mixtral-8x7b")
    # batch 1 reads 2 of 8 experts; a large batch reads nearly all of them
    assert m.decode_weight_bytes("bf16", 1) < 0.3 * m.weight_bytes("bf16")
    assert m.decode_weight_bytes("bf16", 512) == pytest.approx(m.weight_bytes("bf16") - 32000 * 4096 * 2, rel=1e-6)


def test_flops_and_bytes_count_only_activated_work():
    s = moe.MoeShape(tokens=3, hidden=16, ffn=8, experts=4, top_k=2, shared=1)
    pairs = 3 * 3
    assert moe.flops(s) == 2 * 3 * 16 * 4 + pairs * (4 * 16 * 8 + 5 * 8 + 2 * 8 * 16 + 2 * 16)
    assert moe.min_bytes(s, 2, active=3) == ((3 + 1) * 3 * 16 * 8 + 4 * 16 + 2 * 3 * 16) * 2
    # the default is the expected count for uniform routing
    assert moe.min_bytes(s, 2) == round(((moe.expected_active_experts(s) + 1) * 384 + 64 + 96) * 2)
    m = get_model("tiny-moe")
    assert m.decode_flops(context=9, batch=2) > 0


def test_router_is_mixtral_softmax_over_selected_and_appends_shared():
    g = torch.Generator().manual_seed(0)
    x, wr = torch.randn(5, 16, generator=g), torch.randn(6, 16, generator=g)
    ids, p = moe.route(x, wr, 2, shared=1)
    logits = x @ wr.T
    full = torch.softmax(logits, -1)
    top, want = torch.topk(full, 2, -1)
    assert torch.equal(ids[:, :2], want) and torch.all(ids[:, 2] == 6)
    torch.testing.assert_close(p[:, :2], top / top.sum(-1, keepdim=True))  # renormalised top-k
    assert torch.all(p[:, 2] == 1)
    inputs = moe.make_inputs(moe.MoeShape(5, 16, 8, 6, 2), torch.float32, "cpu", 1)
    assert 2 <= moe.active_experts(inputs) <= 6


@pytest.mark.parametrize("backend", ["torch", "torch-gather"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("shape", SMALL, ids=str)
def test_torch_moe_matches_reference(shape, dtype, backend):
    from kernels.dtypes import torch_dtype

    case = moe.moe_case(shape, torch_dtype(dtype), "cpu", backends=(backend,))
    check = check_case(case, backend, dtype)
    assert check.ok, check.reason


@pytest.mark.interpreter
@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("shape", SMALL, ids=str)
def test_triton_grouped_gemm_matches_reference(shape, dtype):
    if torch.cuda.is_available():
        pytest.skip("interpreter test")
    from kernels.dtypes import torch_dtype

    case = moe.moe_case(shape, torch_dtype(dtype), "cpu", backends=("triton",))
    check = check_case(case, "triton", dtype)
    assert check.ok, check.reason


def test_sort_by_expert_groups_rows():
    from kernels.triton.moe import sort_by_expert

    ids = torch.tensor([[3, 0], [0, 2], [3, 1]])
    tok, pair, starts, counts = sort_by_expert(ids, 5)
    assert counts.tolist() == [2, 1, 1, 2, 0] and starts.tolist() == [0, 2, 3, 4, 6]
    assert pair.tolist() == [1, 2, 5, 3, 0, 4] and tok.tolist() == [0, 1, 2, 1, 0, 2]


@pytest.mark.gpu
@pytest.mark.parametrize("shape", SMALL + [moe.MoeShape(tokens=32, hidden=1024, ffn=512, experts=16, top_k=2)],
                         ids=str)
def test_triton_moe_bf16_on_gpu(shape):
    case = moe.moe_case(shape, torch.bfloat16, "cuda", backends=("triton", "torch"))
    for backend in ("triton", "torch"):
        check = check_case(case, backend, "bf16")
        assert check.ok, (backend, check.reason)


def test_matches_hf_mixtral_sparse_moe_block():
    mixtral = pytest.importorskip("transformers.models.mixtral.modeling_mixtral")
    from transformers import MixtralConfig

    cfg = MixtralConfig(hidden_size=32, intermediate_size=24, num_local_experts=4, num_experts_per_tok=2)
    torch.manual_seed(0)
    block = mixtral.MixtralSparseMoeBlock(cfg).double()
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x = torch.randn(1, 6, 32, dtype=torch.float64)
    with torch.no_grad():
        out = block(x)
    hf = out[0] if isinstance(out, tuple) else out
    router_w, w_gate_up, w_down = hf_mixtral_weights(block)
    (ours,) = moe.reference(x=x[0], router_w=router_w, w_gate_up=w_gate_up, w_down=w_down, top_k=2)
    # HF computes the router softmax in float32 (`.float()`), so agreement is to float32 rounding
    torch.testing.assert_close(ours, hf[0], rtol=1e-5, atol=1e-6)


def hf_mixtral_weights(block):
    """Our layout from HF's: gate (router) [E, H]; experts as stacked [E, 2F, H] gate-then-up, [E, H, F]."""
    router_w = block.gate.weight
    ex = block.experts
    if hasattr(ex, "gate_up_proj"):  # transformers 5: fused 3-D parameters
        gu, down = ex.gate_up_proj, ex.down_proj
        return router_w, gu.detach(), down.detach()
    gate = torch.stack([e.w1.weight for e in ex])
    up = torch.stack([e.w3.weight for e in ex])
    down = torch.stack([e.w2.weight for e in ex])
    return router_w, torch.cat([gate, up], 1).detach(), down.detach()


def test_moe_models_listed():
    assert {"mixtral-8x7b", "deepseek-v3", "deepseek-r1", "gpt-oss-120b", "gpt-oss-20b", "qwen3-30b-a3b"} <= set(MODELS)
    assert not math.isnan(get_model("mixtral-8x7b").expected_active_experts(3))


def test_routing_inputs_repeat_make_inputs_without_the_experts():
    s = moe.MoeShape(tokens=3, hidden=32, ffn=16, experts=6, top_k=2, shared=1)
    full = moe.make_inputs(s, torch.float32, "cpu", 7)
    light = moe.routing_inputs(s, torch.float32, "cpu", 7)
    assert set(light) == {"x", "router_w", "top_k"}
    assert torch.equal(full["x"], light["x"]) and torch.equal(full["router_w"], light["router_w"])
    assert moe.active_experts(full) == moe.active_experts(light)

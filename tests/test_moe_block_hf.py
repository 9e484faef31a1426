"""The MoE block equals transformers' own MoE modules on the same random weights and inputs, in float32, at
decode (1 and 4 tokens) and prefill (37 and 64 tokens) token counts: MixtralSparseMoeBlock,
Qwen3MoeSparseMoeBlock (with and without norm_topk_prob), DeepseekV3MoE (random non-zero
e_score_correction_bias, shared experts, scaling) and GptOssMLP (router and expert biases, its clamped
activation with a small limit so the clamps act).

Tolerance (max |ours - HF| / max |HF|) per architecture, each backend of kernels/moe_block.py (torch,
torch-gather; Triton under the interpreter at 4 and 37 tokens) and the float64 reference against HF's module
in float32. Worst measured over these cases (any backend or the reference): Mixtral 5.8e-7, Qwen3-MoE 4.6e-7,
DeepSeek-V3 4.0e-7, gpt-oss 2.8e-7 (mostly the float64 reference, which HF rounds away from); every
bound is 2e-6, ~3x above; a flipped expert would show as an O(1) error.
"""
import pytest
import torch

transformers = pytest.importorskip("transformers")

from kernels import moe_block  # noqa: E402
from kernels.hf_moe_mapping import block_shape, block_weights  # noqa: E402

TOKENS = (1, 4, 37, 64)  # decode batches, then prefill chunks
TOLERANCE = {"mixtral": 2e-6, "qwen3_moe": 2e-6, "deepseek_v3": 2e-6, "gpt_oss": 2e-6}


def _config(kind: str, **extra):
    common = dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                  vocab_size=64, experts_implementation="eager")
    if kind == "mixtral":
        from transformers import MixtralConfig
        return MixtralConfig(intermediate_size=40, num_local_experts=8, num_experts_per_tok=2, **common, **extra)
    if kind == "qwen3_moe":
        from transformers import Qwen3MoeConfig
        return Qwen3MoeConfig(moe_intermediate_size=24, num_experts=16, num_experts_per_tok=4, **common, **extra)
    if kind == "deepseek_v3":
        from transformers import DeepseekV3Config
        routing = {"routed_scaling_factor": 2.5, "norm_topk_prob": True, **extra}
        return DeepseekV3Config(moe_intermediate_size=24, n_routed_experts=16, num_experts_per_tok=4, n_group=4,
                                topk_group=2, n_shared_experts=2, intermediate_size=48, q_lora_rank=None,
                                kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=16, **common,
                                **routing)
    from transformers import GptOssConfig
    return GptOssConfig(intermediate_size=32, num_local_experts=8, num_experts_per_tok=4, swiglu_limit=0.8,
                        head_dim=16, **common, **extra)


def _block(config):
    kind = config.model_type
    if kind == "mixtral":
        from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock as Block
    elif kind == "qwen3_moe":
        from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock as Block
    elif kind == "deepseek_v3":
        from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE as Block
    else:
        from transformers.models.gpt_oss.modeling_gpt_oss import GptOssMLP as Block
    torch.manual_seed(0)
    block = Block(config).float().eval()
    with torch.no_grad():
        for name, p in block.named_parameters():
            # experts' biases and the gpt-oss router bias at 0.5 (non-trivial); weights at 1/sqrt(fan-in)
            p.normal_(0, 0.5 if p.dim() < 2 or "bias" in name else p.shape[-1] ** -0.5 if p.dim() == 2 else 0.15)
        if kind == "deepseek_v3":
            block.gate.e_score_correction_bias.normal_(0, 0.05)  # random, non-zero: choice != weights
    return block


def _hf_forward(block, x):
    with torch.no_grad():
        out = block(x[None])
    return (out[0] if isinstance(out, tuple) else out)[0]


CASES = [("mixtral", {}), ("qwen3_moe", {"norm_topk_prob": True}), ("qwen3_moe", {"norm_topk_prob": False}),
         ("deepseek_v3", {}), ("deepseek_v3", {"norm_topk_prob": False, "routed_scaling_factor": 1.0}),
         ("gpt_oss", {})]


@pytest.mark.parametrize("tokens", TOKENS)
@pytest.mark.parametrize("kind,extra", CASES, ids=lambda c: str(c))
def test_block_matches_transformers(kind, extra, tokens):
    config = _config(kind, **extra)
    block = _block(config)
    shape = block_shape(config, tokens)
    inputs = block_weights(block)
    inputs["x"] = torch.randn(tokens, config.hidden_size, generator=torch.Generator().manual_seed(tokens))
    hf = _hf_forward(block, inputs["x"])
    scale = hf.abs().max().item()
    assert scale > 0
    tol = TOLERANCE[kind]
    (ref,) = moe_block.reference(shape, inputs)
    assert (ref.float() - hf).abs().max().item() / scale < tol, "float64 reference"
    for name in ("torch", "torch-gather"):
        ours = moe_block.IMPLS[name](shape, inputs)
        err = (ours - hf).abs().max().item() / scale
        assert err < tol, f"{name}: {err:.2e}"


@pytest.mark.interpreter
@pytest.mark.parametrize("tokens", (4, 37))
@pytest.mark.parametrize("kind,extra", CASES, ids=lambda c: str(c))
def test_triton_block_matches_transformers(kind, extra, tokens):
    if torch.cuda.is_available():
        pytest.skip("interpreter test")
    config = _config(kind, **extra)
    block = _block(config)
    inputs = block_weights(block)
    inputs["x"] = torch.randn(tokens, config.hidden_size, generator=torch.Generator().manual_seed(tokens))
    hf = _hf_forward(block, inputs["x"])
    err = (moe_block.IMPLS["triton"](block_shape(config, tokens), inputs) - hf).abs().max().item()
    assert err / hf.abs().max().item() < TOLERANCE[kind]


def test_gpt_oss_clamps_act_in_the_parity_inputs():
    """The small swiglu_limit above makes the gpt-oss case exercise both clamps (else parity would not
    cover them)."""
    config = _config("gpt_oss")
    block = _block(config)
    w = block_weights(block)
    x = torch.randn(64, 64, generator=torch.Generator().manual_seed(64))
    gu = torch.einsum("th,efh->tef", x, w["w_gate_up"]) + w["b_gate_up"]
    f = config.intermediate_size
    assert (gu[..., :f] > 0.8).any() and (gu[..., f:] < -0.8).any() and (gu[..., f:] > 0.8).any()


def test_deepseek_correction_bias_changes_the_choice_not_the_weights():
    """With the bias the chosen experts differ from those of the unbiased scores for some token, and the
    weights are the unbiased sigmoid scores (so the bias really is exercised by the parity test)."""
    from kernels import moe_router

    config = _config("deepseek_v3")
    block = _block(config)
    w = block_weights(block)
    x = torch.randn(64, 64, generator=torch.Generator().manual_seed(64))
    spec = block_shape(config, 64).router
    ids_b, p_b = moe_router.route(x, w["router_w"], spec, 4, None, w["correction_bias"])
    ids_0, _ = moe_router.route(x, w["router_w"], spec, 4, None, torch.zeros_like(w["correction_bias"]))
    assert not torch.equal(ids_b.sort(1).values, ids_0.sort(1).values)
    s = torch.sigmoid(x @ w["router_w"].T).gather(1, ids_b)
    torch.testing.assert_close(p_b, 2.5 * s / s.sum(1, keepdim=True))

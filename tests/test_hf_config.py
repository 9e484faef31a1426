"""Hugging Face config.json files as models: every catalog file (real and tiny) against transformers' own model
built on the meta device (parameter count and per-layer structure), the refusals, the KV-cache figures, the
`models` command, and --model PATH in run and workload."""
import json
import os
import re
import warnings

import pytest

from bench.cli import main
from bench.configs.hf_config import ARCHITECTURES, parse_config
from bench.configs.model_configs import MODELS, get_model
from bench.errors import UserError

DATA = os.path.join(os.path.dirname(__file__), "..", "bench", "data", "models")

# transformers' own counts for the published configs (AutoModelForCausalLM.from_config on the meta device)
PUBLISHED = {"deepseek-v3": 671_026_404_352, "gpt-oss-120b": 116_829_156_672, "gpt-oss-20b": 20_914_757_184,
             "qwen3-30b-a3b": 30_532_122_624, "qwen3-8b": 8_190_735_360}


def config_of(name: str) -> dict:
    with open(os.path.join(DATA, f"{name}.json")) as f:
        return json.load(f)


def transformers_model(cfg: dict):
    """transformers' model for the config dict, built on the meta device (no memory, no weights)."""
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM

    transformers.logging.set_verbosity_error()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf_cfg = AutoConfig.for_model(cfg["model_type"], **{k: v for k, v in cfg.items() if k != "model_type"})
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(hf_cfg)


def numel(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", list(MODELS))
def test_catalog_counts_and_layers_equal_transformers(name):
    cfg = config_of(name)
    hf = transformers_model(cfg)
    m = get_model(name)
    assert m.params == numel(hf)
    assert type(hf).__name__ == m.architecture == cfg["architectures"][0]
    hf_cfg = hf.config
    for i, (ours, theirs) in enumerate(zip(m.spec.layers, hf.model.layers, strict=True)):
        attn, a = ours.attention, theirs.self_attn
        window = getattr(a, "sliding_window", getattr(hf_cfg, "sliding_window", None)) or 0
        assert attn.window == window, i
        assert attn.qk_norm == hasattr(a, "q_norm") and attn.sinks == hasattr(a, "sinks")
        assert ours.mlp.kind == ("moe" if hasattr(theirs.mlp, "experts") else "dense"), i
        assert attn.o_bias == (a.o_proj.bias is not None)
        assert attn.softmax_scale == pytest.approx(a.scaling, rel=1e-12)
        assert ours.params() == numel(theirs), i  # per layer, not only in total


@pytest.mark.parametrize("name,total", PUBLISHED.items())
def test_published_totals(name, total):
    assert get_model(name).params == total


def test_kv_bytes_per_token_by_layer_type():
    v3 = get_model("deepseek-v3")
    assert v3.kv_bytes_per_token("bf16") == 61 * (512 + 64) * 2  # MLA's latent, every layer
    assert v3.kv_cache_bytes(3, 1000, "bf16") == 3 * 1000 * 61 * 576 * 2
    oss = get_model("gpt-oss-120b")  # 18 sliding (128) and 18 full layers, 8 KV heads of 64
    per_layer = 2 * 8 * 64 * 2
    assert oss.kv_bytes_per_token("bf16") == 36 * per_layer
    assert oss.kv_cache_bytes(1, 4096, "bf16") == 18 * 128 * per_layer + 18 * 4096 * per_layer
    assert oss.kv_cache_bytes(1, 100, "bf16") == 36 * 100 * per_layer  # inside the window both hold everything
    assert get_model("qwen3-8b").kv_bytes_per_token("bf16") == 36 * 2 * 8 * 128 * 2


def test_each_architecture_parsed():
    labels = {n: [(layer.label, k) for layer, k in MODELS[n].spec.groups] for n in MODELS if n.startswith("tiny")}
    assert {MODELS[n].architecture for n in labels} == set(ARCHITECTURES)
    assert labels["tiny-qwen2"] == [("full, dense 176", 1), ("sliding 8, dense 176", 1)]  # max_window_layers 1
    assert labels["tiny-gpt-oss"] == [("sliding 8, moe 8 top-2 x48", 1), ("full, moe 8 top-2 x48", 1)]
    assert labels["tiny-qwen3-moe"][0] == ("full, dense 176", 1)  # mlp_only_layers [0]
    v3 = MODELS["deepseek-v3"].spec
    mla, moe = v3.layers[-1].attention, v3.layers[-1].mlp
    assert (mla.q_lora_rank, mla.kv_lora_rank, mla.qk_nope_head_dim, mla.qk_rope_head_dim, mla.v_head_dim) == \
        (1536, 512, 128, 64, 128)
    assert mla.rope.kind == "yarn" and mla.rope.mscale_all_dim == 1.0 and mla.rope.interleaved
    assert (moe.router, moe.n_group, moe.topk_group, moe.routed_scaling_factor, moe.correction_bias) == \
        ("deepseek_group_sigmoid", 8, 4, 2.5, True)
    assert (moe.shared_experts, moe.shared_ffn, v3.layers[2].mlp.kind, v3.layers[3].mlp.kind) == (1, 2048, "dense", "moe")
    oss = MODELS["gpt-oss-20b"].spec.layers[0]
    assert (oss.mlp.router, oss.mlp.activation, oss.mlp.swiglu_limit, oss.mlp.swiglu_alpha, oss.mlp.expert_bias) == \
        ("gptoss", "gptoss_swiglu", 7.0, 1.702, True)
    assert oss.attention.qkv_bias and oss.attention.sinks and oss.attention.rope.kind == "yarn"
    q3 = MODELS["qwen3-30b-a3b"].spec.layers[0].mlp
    assert q3.router == "softmax_topk" and q3.norm_topk_prob and (q3.experts, q3.top_k, q3.ffn) == (128, 8, 768)
    assert MODELS["llama-3.1-8b"].spec.layers[0].attention.rope.kind == "llama3"
    assert "multi-token-prediction" in MODELS["deepseek-v3"].notes


@pytest.mark.parametrize("cls", ["LlamaConfig", "MistralConfig", "Qwen2Config", "Qwen3Config", "Qwen3MoeConfig",
                                 "MixtralConfig", "DeepseekV3Config", "GptOssConfig"])
def test_every_field_transformers_writes_is_read_and_defaults_agree(cls):
    # a config as transformers itself writes it (every field of its class, defaults, rope_parameters): tokenbench
    # knows every key, and its count of the defaults' model is transformers'
    import transformers

    hf_cfg = getattr(transformers, cls)()
    d = hf_cfg.to_dict()
    arch = cls.replace("Config", "ForCausalLM")
    d["architectures"] = [arch]
    parsed = parse_config(d, cls)
    assert parsed.spec.params() == numel(transformers_model(d))


@pytest.mark.parametrize("change,expect", [
    ({"architectures": ["BertForMaskedLM"]}, "architecture 'BertForMaskedLM' is not modelled"),
    ({"mlp_bias": True}, "LlamaForCausalLM field mlp_bias = true"),
    ({"hidden_act": "gelu"}, "field hidden_act = 'gelu' is not modelled"),
    ({"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}, "type 'dynamic' is not modelled"),
    ({"partial_rotary_factor": 0.5}, "partial_rotary_factor"),
    ({"sliding_windows": 4}, "field(s) sliding_windows not known to tokenbench"),
    ({"num_key_value_heads": 3}, "num_key_value_heads = 3 does not divide"),
])
def test_unmodelled_llama_fields_are_refused(change, expect):
    cfg = {**config_of("tiny"), **change}
    with pytest.raises(UserError, match=re.escape(expect)):
        parse_config(cfg, "tiny.json")


@pytest.mark.parametrize("name,change,expect", [
    ("tiny-deepseek-v3", {"scoring_func": "softmax"}, "scoring_func = 'softmax' is not modelled"),
    ("tiny-deepseek-v3", {"topk_method": "greedy"}, "topk_method = 'greedy'"),
    ("tiny-deepseek-v3", {"moe_layer_freq": 2}, "moe_layer_freq = 2"),
    ("tiny-deepseek-v3", {"num_key_value_heads": 2}, "differs from num_attention_heads"),
    ("tiny-gpt-oss", {"experts_per_token": 3}, "experts_per_token = 3 disagrees with num_experts_per_tok = 2"),
    ("tiny-gpt-oss", {"layer_types": ["chunked_attention", "full_attention"]}, "'chunked_attention' is not"),
    ("tiny-qwen3-moe", {"num_local_experts": 4}, "num_experts = 8 disagrees with num_local_experts = 4"),
    ("tiny-mistral", {"layer_types": ["full_attention"] * 2}, "layer_types is not read by MistralForCausalLM"),
])
def test_unmodelled_values_of_other_architectures_are_refused(name, change, expect):
    with pytest.raises(UserError, match=re.escape(expect)):
        parse_config({**config_of(name), **change}, f"{name}.json")


def test_model_path_file_or_folder(tmp_path):
    folder = tmp_path / "My-Llama"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config_of("llama-3.2-1b")))
    by_folder, by_file = get_model(str(folder)), get_model(str(folder / "config.json"))
    assert by_folder.name == by_file.name == "My-Llama" and by_folder.params == MODELS["llama-3.2-1b"].params
    assert by_folder.ref == str(folder.resolve())
    (tmp_path / "other.json").write_text(json.dumps(config_of("tiny-gpt-oss")))
    assert get_model(str(tmp_path / "other.json")).name == "other"


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tokenbench: error:"), err
    return err[0]


def test_bad_paths_are_one_line(tmp_path, capsys):
    assert main(["models", str(tmp_path / "missing")]) == 2
    assert "cannot read model config" in one_error_line(capsys)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["models", str(bad)]) == 2
    assert "not valid JSON" in one_error_line(capsys)
    bad.write_text(json.dumps({**config_of("tiny"), "architectures": ["T5ForConditionalGeneration"]}))
    assert main(["models", str(bad)]) == 2
    assert "architecture 'T5ForConditionalGeneration' is not modelled" in one_error_line(capsys)


def test_models_path_json(tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config_of("deepseek-v3")))
    assert main(["models", str(path), "gpt-oss-120b", "--json", "--context", "4096"]) == 0
    out = json.loads(capsys.readouterr().out)
    v3, oss = out[0]["summary"], out[1]["summary"]
    assert v3["params"] == 671_026_404_352 and v3["architecture"] == "DeepseekV3ForCausalLM"
    assert v3["kv_bytes_per_token"] == 61 * 576 * 2 and v3["layer_types"][1]["kv_bytes_per_token"] == 576 * 2
    assert [t["kv_bound"] for t in oss["layer_types"]] == ["window 128 tokens", "context"]
    assert oss["kv_cache_bytes_at_context"] == 18 * (128 + 4096) * 2 * 8 * 64 * 2
    # FLOPs per token: 2 per weight multiplied + attention (GQA 4 x heads x head_dim per entry, window-bounded)
    spec = get_model("gpt-oss-120b").spec
    weights = sum(k * layer.matmul_params() for layer, k in spec.groups) + 201088 * 2880
    assert oss["flops_per_token"] == 2 * weights + 18 * 4 * 64 * 64 * (128 + 4096)


def test_models_table_fits_80_columns(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["models", "deepseek-v3", "gpt-oss-120b", "qwen3-30b-a3b", "tiny-qwen2"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80
    for number in ("671,026,404,352", "116,829,156,672", "30,532,122,624", "window 128 tokens", "1,152 B"):
        assert number in out


def test_flops_per_token_agrees_with_the_dense_step_count():
    m = get_model("llama-3.1-8b")  # the step's own count adds the elementwise work the summary leaves out
    assert m.spec.decode_flops_per_token(2048) == pytest.approx(m.decode_flops(context=2048), rel=0.002)


def test_dense_figures_unchanged_by_the_config_files():
    # the flat ModelConfig the catalog used to build in code gives the same figures as its config file
    from bench.configs.model_configs import ModelConfig

    flat = ModelConfig("llama-3.1-8b", hidden=4096, layers=32, heads=32, kv_heads=8, ffn=14336, vocab=128256)
    m = get_model("llama-3.1-8b")
    assert (m.params, m.kv_bytes_per_token(), m.layer_dims) == (flat.params, flat.kv_bytes_per_token(), flat.layer_dims)
    assert m.decode_weight_bytes("bf16", 8) == flat.decode_weight_bytes("bf16", 8)


@pytest.mark.parametrize("command", ["run", "verify", "fp8", "tp"])
def test_dense_commands_refuse_unmodelled_attention(command, capsys):
    assert main([command, "--model", "tiny-deepseek-v3", "--device", "cpu"]) == 2
    line = one_error_line(capsys)
    assert "multi-head latent attention (MLA) and a mixture of experts: not yet measured by" in line


@pytest.mark.parametrize("name,router,activation,expert_bias", [
    ("deepseek-v3", "deepseek_group_sigmoid", "swiglu", False), ("gpt-oss-20b", "gptoss", "gptoss_swiglu", True),
    ("qwen3-30b-a3b", "softmax_topk", "swiglu", False), ("mixtral-8x7b", "softmax_topk", "swiglu", False)])
def test_moe_block_is_the_configs_own(name, router, activation, expert_bias):
    from bench.sweeps.moe_sweep import own_block

    kind = own_block(get_model(name))
    assert (kind.router.kind, kind.activation, kind.expert_bias) == (router, activation, expert_bias)
    if router == "deepseek_group_sigmoid":
        r = kind.router
        assert (r.n_group, r.topk_group, r.routed_scaling_factor, r.norm_topk_prob) == (8, 4, 2.5, True)
    assert kind.limit == (7.0 if activation == "gptoss_swiglu" else 0.0)
    assert own_block(get_model("tiny")) is None


def test_run_and_workload_take_a_config_folder(tmp_path, capsys):
    folder = tmp_path / "tiny-llama"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config_of("tiny")))
    out = tmp_path / "out"
    assert main(["run", "--model", str(folder), "--device", "cpu", "--batch", "1", "--context", "9", "--layer-only",
                 "--budget-s", "0.02", "--out", str(out)]) == 0
    record = json.loads(next(out.glob("*.json")).read_text())
    assert record["model"]["name"] == "tiny-llama" and record["model"]["params"] == MODELS["tiny"].params
    assert all(r["valid"] for r in record["rows"] if "valid" in r)
    out2 = tmp_path / "out2"
    assert main(["workload", "--model", str(folder / "config.json"), "--device", "cpu", "--budget-s", "0.02",
                 "--isl", "8", "--osl", "2", "--concurrency", "1", "--out", str(out2)]) == 0
    assert json.loads(next(out2.glob("*.json")).read_text())["model"]["name"] == "tiny-llama"

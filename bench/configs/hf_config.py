"""A Hugging Face config.json read into the model description (kernels.layer_spec.ModelSpec), offline.

Each architecture reads the fields transformers' own config and model classes read (transformers 5.x, the
`configuration_*.py` and `modeling_*.py` of llama, mistral, qwen2, qwen3, qwen3_moe, mixtral, deepseek_v3,
gpt_oss), with the class defaults where the file leaves a field out. A field is either modelled, or inert
(metadata, training-only: ids, dropout, auxiliary losses, initialisation), or refused: a value that changes the
computation and is not modelled, an unknown architecture, or a field tokenbench does not know, each in one line
naming it. Nothing is approximated. Noted, not refused: DeepSeek's multi-token-prediction module
(num_nextn_predict_layers) is not built by transformers' DeepseekV3ForCausalLM and is not counted here either (it
serves speculative decoding, which tokenbench does not model); a checkpoint's quantization_config (FP8 blocks,
MXFP4 experts) says how the published weights are stored, while tokenbench's byte figures are at the dtype a
command states.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bench.errors import UserError
from kernels.layer_spec import AttentionSpec, LayerSpec, MlpSpec, ModelSpec, RopeSpec

# keys every config may carry that do not change the forward computation at inference
_INERT = frozenset({
    "architectures", "model_type", "transformers_version", "torch_dtype", "dtype", "bos_token_id", "eos_token_id",
    "pad_token_id", "initializer_range", "use_cache", "attention_dropout", "output_router_logits",
    "router_aux_loss_coef", "_name_or_path", "id2label", "label2id", "num_labels", "return_dict",
    "output_hidden_states", "output_attentions", "torchscript", "use_bfloat16", "tokenizer_class", "prefix",
    "sep_token_id", "decoder_start_token_id", "task_specific_params", "problem_type", "_commit_hash",
    "finetuning_task", "max_position_embeddings", "quantization_config", "chunk_size_feed_forward",
    "is_encoder_decoder", "add_cross_attention", "tie_encoder_decoder", "tf_legacy_loss",
    # generation defaults older files carry: they steer sampling, not the forward pass
    "max_length", "min_length", "do_sample", "early_stopping", "num_beams", "num_beam_groups", "diversity_penalty",
    "temperature", "top_k", "top_p", "typical_p", "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
    "encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences", "output_scores",
    "return_dict_in_generate", "forced_bos_token_id", "forced_eos_token_id", "remove_invalid_values",
    "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens",
})
# per architecture: further inert keys (training-only, or not read by that transformers class)
_ARCH_INERT = {
    "LlamaForCausalLM": {"pretraining_tp"},  # transformers 5 computes the same product whatever its value
    "MistralForCausalLM": set(),
    "Qwen2ForCausalLM": {"attention_bias"},  # Qwen2 always biases q, k, v and never o, whatever this says
    "Qwen3ForCausalLM": set(),
    "Qwen3MoeForCausalLM": {"max_window_layers"},  # not read: use_sliding_window applies to every layer
    "MixtralForCausalLM": {"router_jitter_noise"},  # training only
    "DeepseekV3ForCausalLM": {"aux_loss_alpha", "seq_aux", "ep_size", "auto_map", "pretraining_tp", "head_dim",
                              "qk_head_dim"},  # losses, parallel layout, remote-code pointers, derived sizes
    "GptOssForCausalLM": {"initial_context_length", "hidden_act"},  # not read (its experts have their own gate)
}
_DEFAULT_THETA = {"MixtralForCausalLM": 1000000.0, "GptOssForCausalLM": 150000.0}
_ROPE_KEYS = {"rope_type", "type", "rope_theta", "factor", "original_max_position_embeddings", "low_freq_factor",
              "high_freq_factor", "beta_fast", "beta_slow", "mscale", "mscale_all_dim", "attention_factor",
              "truncate"}
_GPTOSS_DEFAULT_ROPE = {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False,
                        "original_max_position_embeddings": 4096}


@dataclass(frozen=True)
class ParsedConfig:
    """A config.json read: the model, its architecture, and what was noted but not counted."""

    spec: ModelSpec
    architecture: str
    notes: tuple[str, ...]


class _Fields:
    """The config's fields, read with the class defaults; remembers which keys were read."""

    def __init__(self, cfg: dict, arch: str, where: str):
        self.cfg, self.arch, self.where, self.read = cfg, arch, where, set()

    def get(self, key: str, default=None):
        self.read.add(key)
        return self.cfg.get(key, default)

    def int(self, key: str, default=None, minimum: int = 1) -> int:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.refuse(key, f"must be an integer >= {minimum}, got {value!r}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if value is None:
            return False
        if not isinstance(value, bool):
            self.refuse(key, f"must be true or false, got {value!r}")
        return value

    def number(self, key: str, default) -> float:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.refuse(key, f"must be a number, got {value!r}")
        return float(value)

    def expect(self, key: str, default, allowed: tuple, why: str = "not modelled"):
        value = self.get(key, default)
        if value not in allowed:
            self.refuse(key, f"= {value!r} is {why} (tokenbench models {' or '.join(map(repr, allowed))})")
        return value

    def alias(self, key: str, other: str, default):
        """A field transformers also accepts under another name (its attribute_map)."""
        a, b = self.get(key), self.get(other)
        if a is not None and b is not None and a != b:
            self.refuse(key, f"= {a!r} disagrees with {other} = {b!r}")
        return a if a is not None else (b if b is not None else default)

    def refuse(self, key: str, why: str):
        raise UserError(f"{self.where}: {self.arch} field {key} {why}")

    def check_all_read(self):
        unknown = sorted(set(self.cfg) - self.read - _INERT - _ARCH_INERT[self.arch])
        if unknown:
            raise UserError(f"{self.where}: {self.arch} field(s) {', '.join(unknown)} not known to tokenbench "
                            "(not modelled; remove them if the model does not use them)")


def _rope(f: _Fields, interleaved: bool = False) -> RopeSpec:
    theta_default = _DEFAULT_THETA.get(f.arch, 10000.0)
    params = f.get("rope_scaling") or f.get("rope_parameters")
    if params is None and f.arch == "GptOssForCausalLM":
        params = dict(_GPTOSS_DEFAULT_ROPE)
    params = dict(params or {})
    if not isinstance(params, dict):
        f.refuse("rope_scaling", f"must be an object, got {params!r}")
    if "partial_rotary_factor" in f.cfg or "partial_rotary_factor" in params:
        f.refuse("partial_rotary_factor", "(rotary embedding over part of the head) is not modelled")
    unknown = sorted(set(params) - _ROPE_KEYS)
    if unknown:
        f.refuse("rope_scaling", f"keys {', '.join(unknown)} are not modelled")
    theta = params.get("rope_theta", f.get("rope_theta", theta_default))
    kind = params.get("rope_type", params.get("type", "default"))
    if kind not in ("default", "linear", "llama3", "yarn"):
        f.refuse("rope_scaling", f"type {kind!r} is not modelled (tokenbench models default, linear, llama3, yarn)")

    if kind in ("linear", "llama3", "yarn") and params.get("factor") is None:
        f.refuse("rope_scaling", f"type {kind!r} without a factor is not modelled")

    def num(key):
        value = params.get(key)
        return 0.0 if value is None else float(value)

    return RopeSpec(theta=float(theta), kind=kind, factor=num("factor") or 1.0,
                    original_max_positions=int(num("original_max_position_embeddings")),
                    low_freq_factor=num("low_freq_factor"), high_freq_factor=num("high_freq_factor"),
                    beta_fast=num("beta_fast"), beta_slow=num("beta_slow"), mscale=num("mscale"),
                    mscale_all_dim=num("mscale_all_dim"), attention_factor=num("attention_factor"),
                    truncate=bool(params.get("truncate", True)), interleaved=interleaved)


def _common(f: _Fields, defaults: dict) -> dict:
    hidden = f.int("hidden_size", defaults["hidden_size"])
    heads = f.int("num_attention_heads", defaults["num_attention_heads"])
    kv = f.get("num_key_value_heads", defaults.get("num_key_value_heads"))
    kv = heads if kv is None else f.int("num_key_value_heads", kv)
    if f.arch != "GptOssForCausalLM":
        f.expect("hidden_act", "silu", ("silu",))
    return dict(hidden=hidden, heads=heads, kv_heads=kv, layers=f.int("num_hidden_layers", defaults["layers"]),
                vocab=f.int("vocab_size", defaults["vocab_size"]), ffn=f.int("intermediate_size", defaults["ffn"]),
                eps=f.number("rms_norm_eps", defaults["eps"]), tied=f.flag("tie_word_embeddings", False))


def _head_dim(f: _Fields, c: dict, default=None) -> int:
    value = f.get("head_dim", default)
    return c["hidden"] // c["heads"] if value is None else f.int("head_dim", value)


def _window(f: _Fields, key="sliding_window", default=None) -> int:
    value = f.get(key, default)
    return 0 if value is None else f.int(key, value)


def _qwen_window(f: _Fields) -> int:
    """Qwen2/Qwen3/Qwen3-MoE: sliding_window counts only when use_sliding_window is true."""
    window = _window(f, default=4096)
    return window if f.flag("use_sliding_window", False) else 0


def _qwen_layer_windows(f: _Fields, layers: int, window: int) -> list[int]:
    """Qwen2/Qwen3: layer_types as given, else sliding from layer max_window_layers on (when the window is on)."""
    types = f.get("layer_types")
    if types is None:
        first = f.int("max_window_layers", 28, minimum=0)
        types = ["sliding_attention" if window and i >= first else "full_attention" for i in range(layers)]
    else:
        f.get("max_window_layers")
    return _windows_from_types(f, types, layers, window)


def _windows_from_types(f: _Fields, types, layers: int, window: int) -> list[int]:
    if not isinstance(types, list) or len(types) != layers:
        f.refuse("layer_types", f"must list one type per layer ({layers}), got {types!r}")
    out = []
    for t in types:
        if t not in ("full_attention", "sliding_attention"):
            f.refuse("layer_types", f"entry {t!r} is not modelled (full_attention or sliding_attention)")
        out.append(window if t == "sliding_attention" else 0)
    return out


def _dense(ffn: int) -> MlpSpec:
    return MlpSpec(kind="dense", ffn=ffn)


def _gqa_layers(f: _Fields, c: dict, head_dim: int, windows: list[int], mlps: list[MlpSpec], rope: RopeSpec,
                qkv_bias=False, o_bias=False, qk_norm=False, sinks=False) -> tuple[LayerSpec, ...]:
    specs = {}
    out = []
    for window, mlp in zip(windows, mlps):
        key = (window, mlp)
        if key not in specs:
            attn = AttentionSpec(kind="gqa", hidden=c["hidden"], heads=c["heads"], kv_heads=c["kv_heads"],
                                 head_dim=head_dim, rope=rope, qkv_bias=qkv_bias, o_bias=o_bias, qk_norm=qk_norm,
                                 norm_eps=c["eps"], window=window, sinks=sinks)
            specs[key] = LayerSpec(hidden=c["hidden"], attention=attn, mlp=mlp, norm_eps=c["eps"])
        out.append(specs[key])
    return tuple(out)


def _check_heads(f: _Fields, c: dict):
    if c["heads"] % c["kv_heads"]:
        f.refuse("num_key_value_heads", f"= {c['kv_heads']} does not divide num_attention_heads = {c['heads']}")


def _llama(f: _Fields):
    c = _common(f, dict(hidden_size=4096, num_attention_heads=32, layers=32, vocab_size=32000, ffn=11008, eps=1e-6))
    _check_heads(f, c)
    if f.flag("mlp_bias", False):
        f.refuse("mlp_bias", "= true (biases on the MLP projections) is not modelled")
    bias = f.flag("attention_bias", False)
    n = c["layers"]
    layers = _gqa_layers(f, c, _head_dim(f, c), [0] * n, [_dense(c["ffn"])] * n, _rope(f), qkv_bias=bias, o_bias=bias)
    return c, layers, ()


def _mistral(f: _Fields):
    c = _common(f, dict(hidden_size=4096, num_attention_heads=32, num_key_value_heads=8, layers=32,
                        vocab_size=32000, ffn=14336, eps=1e-6))
    _check_heads(f, c)
    if "layer_types" in f.cfg:
        f.refuse("layer_types", "is not read by MistralForCausalLM (its sliding_window applies to every layer)")
    n = c["layers"]
    window = _window(f, default=4096)
    return c, _gqa_layers(f, c, _head_dim(f, c), [window] * n, [_dense(c["ffn"])] * n, _rope(f)), ()


def _qwen2(f: _Fields):
    c = _common(f, dict(hidden_size=4096, num_attention_heads=32, num_key_value_heads=32, layers=32,
                        vocab_size=151936, ffn=22016, eps=1e-6))
    _check_heads(f, c)
    if f.flag("use_mrope", False):
        f.refuse("use_mrope", "= true (multimodal rotary sections) is not modelled")
    window = _qwen_window(f)
    n = c["layers"]
    windows = _qwen_layer_windows(f, n, window)
    return c, _gqa_layers(f, c, _head_dim(f, c), windows, [_dense(c["ffn"])] * n, _rope(f), qkv_bias=True), ()


def _qwen3(f: _Fields):
    c = _common(f, dict(hidden_size=4096, num_attention_heads=32, num_key_value_heads=32, layers=32,
                        vocab_size=151936, ffn=22016, eps=1e-6))
    _check_heads(f, c)
    window = _qwen_window(f)
    n = c["layers"]
    windows = _qwen_layer_windows(f, n, window)
    bias = f.flag("attention_bias", False)
    layers = _gqa_layers(f, c, _head_dim(f, c, 128), windows, [_dense(c["ffn"])] * n, _rope(f), qkv_bias=bias,
                         o_bias=bias, qk_norm=True)
    return c, layers, ()


def _qwen3_moe(f: _Fields):
    c = _common(f, dict(hidden_size=2048, num_attention_heads=32, num_key_value_heads=4, layers=24,
                        vocab_size=151936, ffn=6144, eps=1e-6))
    _check_heads(f, c)
    window = _qwen_window(f)
    experts = f.alias("num_experts", "num_local_experts", 128)
    step = f.int("decoder_sparse_step", 1)
    dense_only = f.get("mlp_only_layers") or []
    if not isinstance(dense_only, list) or not all(isinstance(i, int) for i in dense_only):
        f.refuse("mlp_only_layers", f"must be a list of layer indices, got {dense_only!r}")
    moe = MlpSpec(kind="moe", ffn=f.int("moe_intermediate_size", 768), experts=experts,
                  top_k=f.int("num_experts_per_tok", 8), router="softmax_topk",
                  norm_topk_prob=f.flag("norm_topk_prob", False)) if experts else None
    n = c["layers"]
    mlps = [moe if moe and i not in dense_only and (i + 1) % step == 0 else _dense(c["ffn"]) for i in range(n)]
    bias = f.flag("attention_bias", False)
    layers = _gqa_layers(f, c, _head_dim(f, c), [window] * n, mlps, _rope(f), qkv_bias=bias, o_bias=bias,
                         qk_norm=True)
    return c, layers, ()


def _mixtral(f: _Fields):
    c = _common(f, dict(hidden_size=4096, num_attention_heads=32, num_key_value_heads=8, layers=32,
                        vocab_size=32000, ffn=14336, eps=1e-5))
    _check_heads(f, c)
    moe = MlpSpec(kind="moe", ffn=c["ffn"], experts=f.alias("num_local_experts", "num_experts", 8),
                  top_k=f.int("num_experts_per_tok", 2), router="softmax_topk", norm_topk_prob=True)
    n = c["layers"]
    return c, _gqa_layers(f, c, _head_dim(f, c), [_window(f)] * n, [moe] * n, _rope(f)), ()


def _deepseek_v3(f: _Fields):
    c = _common(f, dict(hidden_size=7168, num_attention_heads=128, num_key_value_heads=128, layers=61,
                        vocab_size=129280, ffn=18432, eps=1e-6))
    if c["kv_heads"] != c["heads"]:
        f.refuse("num_key_value_heads", f"= {c['kv_heads']} differs from num_attention_heads = {c['heads']} "
                                        "(MLA expands K/V per query head)")
    f.expect("moe_layer_freq", 1, (1,))
    f.expect("scoring_func", "sigmoid", ("sigmoid",))
    f.expect("topk_method", "noaux_tc", ("noaux_tc",))
    notes = []
    mtp = f.alias("num_nextn_predict_layers", "num_mtp_layers", 1)
    if mtp:
        notes.append(f"num_nextn_predict_layers = {mtp}: the multi-token-prediction module is not counted "
                     "(transformers does not build it, and it serves speculative decoding)")
    q_lora = f.get("q_lora_rank", 1536)
    q_lora = 0 if q_lora is None else f.int("q_lora_rank", q_lora)
    nope, rope_dim = f.int("qk_nope_head_dim", 128, minimum=0), f.int("qk_rope_head_dim", 64)
    bias = f.flag("attention_bias", False)
    attn = AttentionSpec(kind="mla", hidden=c["hidden"], heads=c["heads"], kv_heads=c["heads"],
                         head_dim=nope + rope_dim, rope=_rope(f, interleaved=f.flag("rope_interleave", True)),
                         qkv_bias=bias, o_bias=bias, norm_eps=1e-6,  # transformers' q_a/kv_a norms keep eps 1e-6
                         q_lora_rank=q_lora, kv_lora_rank=f.int("kv_lora_rank", 512), qk_nope_head_dim=nope,
                         qk_rope_head_dim=rope_dim, v_head_dim=f.int("v_head_dim", 128))
    experts = f.alias("n_routed_experts", "num_local_experts", 256)
    moe_ffn = f.int("moe_intermediate_size", 2048)
    shared = f.int("n_shared_experts", 1, minimum=0)
    moe = MlpSpec(kind="moe", ffn=moe_ffn, experts=experts, top_k=f.int("num_experts_per_tok", 8),
                  router="deepseek_group_sigmoid", norm_topk_prob=f.flag("norm_topk_prob", True),
                  n_group=f.int("n_group", 8), topk_group=f.int("topk_group", 4),
                  routed_scaling_factor=f.number("routed_scaling_factor", 2.5), correction_bias=True,
                  shared_experts=shared, shared_ffn=moe_ffn * shared)
    first_dense = f.int("first_k_dense_replace", 3, minimum=0)
    dense = LayerSpec(hidden=c["hidden"], attention=attn, mlp=_dense(c["ffn"]), norm_eps=c["eps"])
    sparse = LayerSpec(hidden=c["hidden"], attention=attn, mlp=moe, norm_eps=c["eps"])
    return c, tuple(dense if i < first_dense else sparse for i in range(c["layers"])), tuple(notes)


def _gpt_oss(f: _Fields):
    c = _common(f, dict(hidden_size=2880, num_attention_heads=64, num_key_value_heads=8, layers=36,
                        vocab_size=201088, ffn=2880, eps=1e-5))
    _check_heads(f, c)
    k = f.int("num_experts_per_tok", 4)
    other = f.get("experts_per_token")
    if other is not None and other != k:
        f.refuse("experts_per_token", f"= {other!r} disagrees with num_experts_per_tok = {k} (transformers reads "
                                      "num_experts_per_tok)")
    n = c["layers"]
    window = _window(f, default=128)
    types = f.get("layer_types")
    if types is None:
        types = ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(n)]
    windows = _windows_from_types(f, types, n, window)
    moe = MlpSpec(kind="moe", ffn=c["ffn"], experts=f.alias("num_local_experts", "num_experts", 128), top_k=k,
                  router="gptoss", router_bias=True, expert_bias=True, activation="gptoss_swiglu",
                  swiglu_alpha=f.number("swiglu_alpha", 1.702), swiglu_limit=f.number("swiglu_limit", 7.0))
    bias = f.flag("attention_bias", True)
    layers = _gqa_layers(f, c, _head_dim(f, c, 64), windows, [moe] * n, _rope(f), qkv_bias=bias, o_bias=bias,
                         sinks=True)
    return c, layers, ()


ARCHITECTURES = {
    "LlamaForCausalLM": _llama,
    "MistralForCausalLM": _mistral,
    "Qwen2ForCausalLM": _qwen2,
    "Qwen3ForCausalLM": _qwen3,
    "Qwen3MoeForCausalLM": _qwen3_moe,
    "MixtralForCausalLM": _mixtral,
    "DeepseekV3ForCausalLM": _deepseek_v3,
    "GptOssForCausalLM": _gpt_oss,
}


def parse_config(cfg: dict, where: str) -> ParsedConfig:
    """The model a config.json describes; `where` names the file in every refusal."""
    if not isinstance(cfg, dict):
        raise UserError(f"{where}: a config.json holds one JSON object")
    archs = cfg.get("architectures")
    if not isinstance(archs, list) or len(archs) != 1:
        raise UserError(f"{where}: architectures must name one class, got {archs!r}")
    arch = archs[0]
    if arch not in ARCHITECTURES:
        raise UserError(f"{where}: architecture {arch!r} is not modelled; tokenbench models: "
                        f"{', '.join(ARCHITECTURES)}")
    f = _Fields(cfg, arch, where)
    c, layers, notes = ARCHITECTURES[arch](f)
    f.check_all_read()
    quant = cfg.get("quantization_config")
    if isinstance(quant, dict) and quant.get("quant_method"):
        notes = notes + (f"the published checkpoint stores weights as {quant['quant_method']} "
                         "(quantization_config), while byte figures here are at the dtype stated",)
    spec = ModelSpec(hidden=c["hidden"], vocab=c["vocab"], tied_embeddings=c["tied"], norm_eps=c["eps"],
                     layers=layers)
    return ParsedConfig(spec=spec, architecture=arch, notes=notes)


def read_config_file(path: str) -> tuple[dict, Path]:
    """The JSON object of a config.json, given the file or a folder holding one."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    try:
        text = p.read_text()
    except OSError as exc:
        raise UserError(f"cannot read model config {p}: {exc.strerror or exc}") from None
    try:
        return json.loads(text), p
    except json.JSONDecodeError as exc:
        raise UserError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno})") from None

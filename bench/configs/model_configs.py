"""Model configs, with every size derived from the shapes (gpt-fast style).

The catalog is the Hugging Face config.json files under bench/data/models/ (each with its source repository in
sources.json), read by bench.configs.hf_config; `--model` also takes the path of any such file or of a folder
holding one. A ModelConfig keeps the flat fields the dense-layer commands read (hidden, heads, ffn, experts, ...)
and the full per-layer description (`spec`, kernels.layer_spec.ModelSpec) every size is derived from.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from bench.errors import UserError
from kernels.head_sizes import HeadSizes
from kernels.layer_spec import AttentionSpec, LayerSpec, MlpSpec, ModelSpec, RopeSpec

BYTES_PER_ELEMENT = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1}


@dataclass(frozen=True)
class ModelConfig(HeadSizes):
    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    head_dim: int = 0  # 0: hidden // heads
    tied_embeddings: bool = False
    qkv_bias: bool = False
    rope_theta: float = 500000.0
    norm_eps: float = 1e-5
    source: str = ""
    # Mixture of experts (all 0: a dense model). Each MoE layer's MLP is `experts` experts of width `moe_ffn`,
    # of which a router picks `experts_per_token`, plus `shared_experts` every token runs; `dense_layers` layers
    # keep a dense MLP of width `ffn` (the first ones in a config built in code, as DeepSeek-V3's
    # first_k_dense_replace; a config file's `spec` says which). For MLA, heads/head_dim are the query's.
    experts: int = 0
    experts_per_token: int = 0
    moe_ffn: int = 0
    shared_experts: int = 0
    dense_layers: int = 0
    notes: str = ""
    architecture: str = ""  # the Hugging Face class the config names ("" for a config built in code)
    ref: str = field(default="", compare=False)  # what --model was given: a catalog name or a config path
    # every layer as the model holds it; built from the flat fields above when not given
    spec: ModelSpec | None = field(default=None, compare=False, repr=False)
    derived: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if self.head_dim == 0:
            object.__setattr__(self, "head_dim", self.hidden // self.heads)
        if self.heads % self.kv_heads:
            raise ValueError(f"{self.name}: heads {self.heads} not a multiple of kv_heads {self.kv_heads}")
        if self.experts and not (0 < self.experts_per_token <= self.experts and self.moe_ffn > 0):
            raise ValueError(f"{self.name}: MoE needs 0 < experts_per_token <= experts and moe_ffn > 0")
        if self.spec is None:
            object.__setattr__(self, "spec", self._flat_spec())
        if not self.ref:
            object.__setattr__(self, "ref", self.name)

    def _flat_spec(self) -> ModelSpec:
        """The Llama-shaped layers the flat fields describe (MoE: Mixtral's softmax top-k router)."""
        attn = AttentionSpec(kind="gqa", hidden=self.hidden, heads=self.heads, kv_heads=self.kv_heads,
                             head_dim=self.head_dim, rope=RopeSpec(theta=self.rope_theta), qkv_bias=self.qkv_bias,
                             norm_eps=self.norm_eps)
        dense = LayerSpec(self.hidden, attn, MlpSpec(kind="dense", ffn=self.ffn), self.norm_eps)
        layers = [dense] * self.layers
        if self.is_moe:
            moe = MlpSpec(kind="moe", ffn=self.moe_ffn, experts=self.experts, top_k=self.experts_per_token,
                          router="softmax_topk", norm_topk_prob=True, shared_experts=self.shared_experts,
                          shared_ffn=self.shared_experts * self.moe_ffn)
            layers = [dense] * self.dense_layers + [LayerSpec(self.hidden, attn, moe, self.norm_eps)] * self.moe_layers
        return ModelSpec(hidden=self.hidden, vocab=self.vocab, tied_embeddings=self.tied_embeddings,
                         norm_eps=self.norm_eps, layers=tuple(layers))

    def unmodelled_features(self) -> list[str]:
        """What the dense Llama-shaped layer (kernels.layer) does not compute, besides mixture of experts."""
        out = []
        attns = [layer.attention for layer, _ in self.spec.groups]
        checks = [("multi-head latent attention (MLA)", any(a.kind == "mla" for a in attns)),
                  ("sliding-window attention", any(a.window for a in attns)),
                  ("attention sinks", any(a.sinks for a in attns)),
                  ("q/k norm", any(a.qk_norm for a in attns)),
                  ("an output-projection bias", any(a.o_bias for a in attns))]
        return [what for what, present in checks if present]

    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    @property
    def moe_layers(self) -> int:
        return self.layers - self.dense_layers if self.is_moe else 0

    @property
    def attn_params(self) -> int:
        """One layer's attention (every layer's attention has the same weights in the architectures read)."""
        return self.spec.layers[0].attention.params()

    @property
    def layer_params(self) -> int:
        """A dense layer: attention, SwiGLU MLP of width `ffn`, two norms."""
        return self.attn_params + 3 * self.hidden * self.ffn + 2 * self.hidden

    def moe_layer_params(self, active: float | None = None) -> float:
        """An MoE layer: attention, router, `active` routed experts (all of them when None), shared experts."""
        layer = next(layer for layer, _ in self.spec.groups if layer.mlp.kind == "moe")
        return layer.params(active)

    def expected_active_experts(self, batch: int) -> float:
        """Routed experts a step touches when `batch` tokens each pick k of E uniformly at random:
        E * (1 - (1 - k/E)^B) (each expert is missed by one token with probability 1 - k/E)."""
        if not self.is_moe:
            return 0.0
        e, k = self.experts, self.experts_per_token
        return e * (1.0 - (1.0 - k / e) ** batch)

    def all_layer_params(self, active: float | None = None) -> float:
        """Every layer, MoE layers with `active` routed experts each (all of them when None)."""
        return sum(n * layer.params(active if layer.mlp.kind == "moe" else None) for layer, n in self.spec.groups)

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def params(self) -> int:
        return self.spec.params()

    @property
    def active_params(self) -> int:
        """Parameters one token uses (top-k routed experts + shared); equals `params` for a dense model."""
        return self.spec.active_params()

    def weight_bytes(self, dtype: str = "bf16") -> int:
        return self.params * BYTES_PER_ELEMENT[dtype]

    def decode_weight_bytes(self, dtype: str = "bf16", batch: int = 1) -> int:
        """Weights one decode step must read: everything but the embedding table (only B rows of it).
        For an MoE model, only the experts `batch` tokens are expected to activate (uniform routing)."""
        active = self.expected_active_experts(batch) if self.is_moe else None
        read = self.all_layer_params(active) + self.hidden + self.vocab * self.hidden
        return int(read * BYTES_PER_ELEMENT[dtype])

    def kv_bytes_per_token(self, dtype: str = "bf16") -> int:
        """The cache one token adds, all layers (K and V; MLA's latent)."""
        return self.spec.kv_bytes_per_token(BYTES_PER_ELEMENT[dtype])

    def kv_cache_bytes(self, batch: int, context: int, dtype: str = "bf16") -> int:
        """The cache of `batch` sequences of `context` tokens (a sliding-window layer holds at most its window)."""
        return self.spec.kv_cache_bytes(batch, context, BYTES_PER_ELEMENT[dtype])

    @property
    def layer_dims(self):
        from kernels.layer import LayerDims

        return LayerDims(hidden=self.hidden, heads=self.heads, kv_heads=self.kv_heads, head_dim=self.head_dim,
                         ffn=self.ffn, vocab=self.vocab, qkv_bias=self.qkv_bias, norm_eps=self.norm_eps,
                         rope_theta=self.rope_theta)

    def decode_flops(self, context: int, batch: int = 1) -> int:
        """FLOPs of one decode step for `batch` sequences attending to `context` entries each."""
        from kernels.layer import layer_flops, model_op_shapes

        model_ops = sum(mod.flops(shape) for _, mod, shape in model_op_shapes(self.layer_dims, batch).values())
        if not self.is_moe:
            return self.layers * layer_flops(self.layer_dims, batch, context) + model_ops
        from dataclasses import replace

        from kernels import moe

        attn_only = layer_flops(replace(self.layer_dims, ffn=0), batch, context)  # norms + attention half
        return (self.dense_layers * layer_flops(self.layer_dims, batch, context)
                + self.moe_layers * (attn_only + moe.flops(self.moe_shape(batch))) + model_ops)

    def moe_shape(self, batch: int):
        """The MoE MLP of one layer at decode batch `batch` (kernels.moe.MoeShape)."""
        from kernels.moe import MoeShape

        if not self.is_moe:
            raise ValueError(f"{self.name} is a dense model")
        return MoeShape(tokens=batch, hidden=self.hidden, ffn=self.moe_ffn, experts=self.experts,
                        top_k=self.experts_per_token, shared=self.shared_experts)

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("derived", "spec", "ref"):  # spec: summarised below; ref may be a local path
            d.pop(key)
        d["layer_types"] = [{"layer": layer.label, "count": n} for layer, n in self.spec.groups]
        d.update(
            params=self.params,
            active_params=self.active_params,
            weight_bytes=self.weight_bytes("bf16"),
            kv_bytes_per_token=self.kv_bytes_per_token("bf16"),
        )
        return d


def from_config(name: str, cfg: dict, where: str, source: str, ref: str = "") -> ModelConfig:
    """The ModelConfig of a Hugging Face config.json: the full description, and the flat fields taken from it
    (heads and widths of the first layer's attention, the dense and expert widths, the counts of each)."""
    from bench.configs.hf_config import parse_config

    parsed = parse_config(cfg, where)
    spec = parsed.spec
    attn = spec.layers[0].attention
    moe = next((layer.mlp for layer, _ in spec.groups if layer.mlp.kind == "moe"), None)
    dense_ffn = next((layer.mlp.ffn for layer, _ in spec.groups if layer.mlp.kind == "dense"), None)
    n_moe = sum(n for layer, n in spec.groups if layer.mlp.kind == "moe")
    return ModelConfig(
        name, hidden=spec.hidden, layers=len(spec.layers), heads=attn.heads, kv_heads=attn.kv_heads,
        head_dim=attn.head_dim, ffn=dense_ffn if dense_ffn is not None else moe.ffn, vocab=spec.vocab,
        tied_embeddings=spec.tied_embeddings, qkv_bias=attn.qkv_bias, rope_theta=attn.rope.theta,
        norm_eps=spec.norm_eps, source=source, experts=moe.experts if moe else 0,
        experts_per_token=moe.top_k if moe else 0, moe_ffn=moe.ffn if moe else 0,
        shared_experts=moe.shared_experts if moe else 0, dense_layers=len(spec.layers) - n_moe,
        notes="; ".join(parsed.notes), architecture=parsed.architecture, ref=ref or name, spec=spec)


@lru_cache(maxsize=1)
def _catalog() -> dict[str, ModelConfig]:
    folder = resources.files("bench").joinpath("data/models")
    sources = json.loads(folder.joinpath("sources.json").read_text())["models"]
    out = {}
    for name, src in sources.items():
        where = f"bench/data/models/{name}.json"
        cfg = json.loads(folder.joinpath(f"{name}.json").read_text())
        source = f"{src['repository']} {src['file']}" if src["repository"] else src.get("note", "")
        out[name] = from_config(name, cfg, where, source)
    return out


MODELS: dict[str, ModelConfig] = _catalog()


def load_model_file(path: str) -> ModelConfig:
    """The model of a config.json, given the file or a folder holding one. Its name is the folder's name for
    a file called config.json, else the file's stem."""
    from bench.configs.hf_config import read_config_file

    cfg, file = read_config_file(path)
    name = file.parent.resolve().name if file.name == "config.json" else file.stem
    return from_config(name, cfg, str(file), source=str(file), ref=str(Path(path).resolve()))


def get_model(name: str) -> ModelConfig:
    """A catalog model by name, or the model of a Hugging Face config.json (the file, or a folder holding one)."""
    if name in MODELS:
        return MODELS[name]
    if Path(name).exists() or name.endswith(".json") or "/" in name:
        return load_model_file(name)
    raise UserError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}, or give the path of a Hugging "
                    "Face config.json (or of a folder holding one)")


def refuse_moe(model, what: str) -> None:
    """A command whose layer is the dense Llama-shaped one refuses a model it would mislabel: a mixture of
    experts (its MLP would be one expert) or attention the dense layer does not compute (MLA, sliding windows,
    sinks, q/k norm, an output bias). One message, used by run, verify, fp8, tp and workload."""
    features = model.unmodelled_features()
    hint = "; time its MoE MLP with `tokenbench moe`" if model.is_moe else ""
    if features:
        moe = " and a mixture of experts" if model.is_moe else ""
        raise UserError(f"{model.name} has {', '.join(features)}{moe}: not yet measured by {what}, which covers "
                        f"dense Llama-shaped layers{hint}")
    if model.is_moe:
        raise UserError(f"{model.name} is a mixture of experts: {what} covers dense layers (top-k routing and "
                        f"expert parallelism are not modelled there){hint}")

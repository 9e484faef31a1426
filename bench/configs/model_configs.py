"""Model configs as data, with every size derived from the shapes (gpt-fast style).

Shapes from the models' Hugging Face config.json files, listed in docs/sources.md.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from bench.errors import UserError
from kernels.head_sizes import HeadSizes

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
    # Mixture of experts (all 0: a dense model). Each MoE layer's MLP is `experts` SwiGLU experts of width
    # `moe_ffn`, of which a router picks `experts_per_token`, plus `shared_experts` every token runs;
    # the first `dense_layers` layers keep a dense MLP of width `ffn` (DeepSeek-V3's first_k_dense_replace).
    experts: int = 0
    experts_per_token: int = 0
    moe_ffn: int = 0
    shared_experts: int = 0
    dense_layers: int = 0
    notes: str = ""
    derived: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if self.head_dim == 0:
            object.__setattr__(self, "head_dim", self.hidden // self.heads)
        if self.heads % self.kv_heads:
            raise ValueError(f"{self.name}: heads {self.heads} not a multiple of kv_heads {self.kv_heads}")
        if self.experts and not (0 < self.experts_per_token <= self.experts and self.moe_ffn > 0):
            raise ValueError(f"{self.name}: MoE needs 0 < experts_per_token <= experts and moe_ffn > 0")

    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    @property
    def moe_layers(self) -> int:
        return self.layers - self.dense_layers if self.is_moe else 0

    @property
    def attn_params(self) -> int:
        attn = self.hidden * self.qkv_size + self.q_size * self.hidden
        return attn + (self.qkv_size if self.qkv_bias else 0)

    @property
    def layer_params(self) -> int:
        """A dense layer: attention, SwiGLU MLP of width `ffn`, two norms."""
        return self.attn_params + 3 * self.hidden * self.ffn + 2 * self.hidden

    def moe_layer_params(self, active: float | None = None) -> float:
        """An MoE layer: attention, router, `active` routed experts (all of them when None), shared experts."""
        routed = self.experts if active is None else active
        expert = 3 * self.hidden * self.moe_ffn
        return (self.attn_params + self.hidden * self.experts + (routed + self.shared_experts) * expert
                + 2 * self.hidden)

    def expected_active_experts(self, batch: int) -> float:
        """Routed experts a step touches when `batch` tokens each pick k of E uniformly at random:
        E * (1 - (1 - k/E)^B) (each expert is missed by one token with probability 1 - k/E)."""
        if not self.is_moe:
            return 0.0
        e, k = self.experts, self.experts_per_token
        return e * (1.0 - (1.0 - k / e) ** batch)

    def all_layer_params(self, active: float | None = None) -> float:
        if not self.is_moe:
            return self.layers * self.layer_params
        return self.dense_layers * self.layer_params + self.moe_layers * self.moe_layer_params(active)

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def params(self) -> int:
        lm_head = 0 if self.tied_embeddings else self.vocab * self.hidden
        return int(self.embedding_params + self.all_layer_params() + self.hidden + lm_head)

    @property
    def active_params(self) -> int:
        """Parameters one token uses (top-k routed experts + shared); equals `params` for a dense model."""
        if not self.is_moe:
            return self.params
        lm_head = 0 if self.tied_embeddings else self.vocab * self.hidden
        return int(self.embedding_params + self.all_layer_params(self.experts_per_token) + self.hidden + lm_head)

    def weight_bytes(self, dtype: str = "bf16") -> int:
        return self.params * BYTES_PER_ELEMENT[dtype]

    def decode_weight_bytes(self, dtype: str = "bf16", batch: int = 1) -> int:
        """Weights one decode step must read: everything but the embedding table (only B rows of it).
        For an MoE model, only the experts `batch` tokens are expected to activate (uniform routing)."""
        active = self.expected_active_experts(batch) if self.is_moe else None
        read = self.all_layer_params(active) + self.hidden + self.vocab * self.hidden
        return int(read * BYTES_PER_ELEMENT[dtype])

    def kv_bytes_per_token(self, dtype: str = "bf16") -> int:
        """K and V for one token, all layers."""
        return 2 * self.layers * self.kv_size * BYTES_PER_ELEMENT[dtype]

    def kv_cache_bytes(self, batch: int, context: int, dtype: str = "bf16") -> int:
        return batch * context * self.kv_bytes_per_token(dtype)

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
        d.pop("derived")
        d.update(
            params=self.params,
            active_params=self.active_params,
            weight_bytes=self.weight_bytes("bf16"),
            kv_bytes_per_token=self.kv_bytes_per_token("bf16"),
        )
        return d


MODELS: dict[str, ModelConfig] = {
    m.name: m
    for m in [
        ModelConfig("llama-3.1-8b", hidden=4096, layers=32, heads=32, kv_heads=8, ffn=14336, vocab=128256,
                    source="meta-llama/Llama-3.1-8B config.json"),
        ModelConfig("llama-3.1-70b", hidden=8192, layers=80, heads=64, kv_heads=8, ffn=28672, vocab=128256,
                    source="meta-llama/Llama-3.1-70B config.json"),
        ModelConfig("llama-3.1-405b", hidden=16384, layers=126, heads=128, kv_heads=8, ffn=53248, vocab=128256,
                    source="meta-llama/Llama-3.1-405B config.json"),
        ModelConfig("llama-3.2-1b", hidden=2048, layers=16, heads=32, kv_heads=8, head_dim=64, ffn=8192,
                    vocab=128256, tied_embeddings=True, source="meta-llama/Llama-3.2-1B config.json"),
        ModelConfig("llama-3.2-3b", hidden=3072, layers=28, heads=24, kv_heads=8, head_dim=128, ffn=8192,
                    vocab=128256, tied_embeddings=True, source="meta-llama/Llama-3.2-3B config.json"),
        ModelConfig("qwen2.5-7b", hidden=3584, layers=28, heads=28, kv_heads=4, ffn=18944, vocab=152064,
                    qkv_bias=True, rope_theta=1000000.0, norm_eps=1e-6, source="Qwen/Qwen2.5-7B config.json"),
        ModelConfig("mistral-7b", hidden=4096, layers=32, heads=32, kv_heads=8, ffn=14336, vocab=32768,
                    rope_theta=1000000.0, source="mistralai/Mistral-7B-v0.3 config.json"),
        # Mixtures of experts. Attention is modelled as GQA throughout (see each config's notes).
        ModelConfig("mixtral-8x7b", hidden=4096, layers=32, heads=32, kv_heads=8, ffn=14336, vocab=32000,
                    rope_theta=1000000.0, experts=8, experts_per_token=2, moe_ffn=14336,
                    source="mistralai/Mixtral-8x7B-v0.1 config.json"),
        ModelConfig("deepseek-v3-style", hidden=7168, layers=61, heads=128, kv_heads=2, head_dim=128,
                    ffn=18432, vocab=129280, norm_eps=1e-6, experts=256, experts_per_token=8, moe_ffn=2048,
                    shared_experts=1, dense_layers=3,
                    source="deepseek-ai/DeepSeek-V3 config.json: hidden 7168, 61 layers (first 3 dense, "
                           "intermediate 18432), 256 routed experts + 1 shared, top-8, moe_intermediate 2048, "
                           "vocab 129280",
                    notes="DeepSeek-V3 uses multi-head latent attention (MLA); tokenbench models it as GQA with "
                          "128 query heads of 128 (MLA's 128 heads, v_head_dim 128) and 2 KV heads of 128, so "
                          "the KV cache is 512 elements per token per layer, near MLA's 576 (kv_lora 512 + "
                          "rope 64). Attention weights come out ~27% above MLA's; total params ~674B against "
                          "the published 671B. The router is modelled as Mixtral's softmax top-k, not "
                          "V3's sigmoid group-limited routing; the multi-token-prediction module is left out."),
        ModelConfig("gpt-oss-120b-style", hidden=2880, layers=36, heads=64, kv_heads=8, head_dim=64, ffn=2880,
                    vocab=201088, qkv_bias=True, rope_theta=150000.0, experts=128, experts_per_token=4,
                    moe_ffn=2880,
                    source="openai/gpt-oss-120b config.json: hidden 2880, 36 layers, 128 experts top-4, "
                           "intermediate 2880, 64 heads, 8 KV heads, head dim 64, vocab 201088",
                    notes="Modelled as full GQA attention in every layer (gpt-oss alternates 128-token sliding "
                          "windows and adds attention sinks), without the o_proj and expert biases and without "
                          "MXFP4 weights; total params ~116.8B as published."),
        # Small enough for unit tests and the Triton interpreter; GQA ratio 2, odd FFN width on purpose.
        ModelConfig("tiny", hidden=64, layers=2, heads=4, kv_heads=2, ffn=176, vocab=512, qkv_bias=False,
                    rope_theta=10000.0, source="tokenbench test config"),
        ModelConfig("tiny-moe", hidden=64, layers=2, heads=4, kv_heads=2, ffn=48, vocab=512, rope_theta=10000.0,
                    experts=8, experts_per_token=2, moe_ffn=48, shared_experts=1,
                    source="tokenbench test config (MoE)"),
    ]
}


def get_model(name: str) -> ModelConfig:
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name]


def refuse_moe(model, what: str) -> None:
    """A command whose layer is dense refuses a mixture-of-experts model (its MLP would be one expert,
    mislabelled as the model's): one message, used by run, verify, fp8 and tp."""
    if model.is_moe:
        from bench.errors import UserError

        raise UserError(f"{model.name} is a mixture of experts: {what} covers dense layers (top-k routing and "
                        "expert parallelism are not modelled there); time its MoE MLP with `tokenbench moe`")

"""Model configs as data, with every size derived from the shapes (gpt-fast style).

Shapes from the models' Hugging Face config.json files, as collected in GUIDE.md section 4.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from bench.errors import UserError

BYTES_PER_ELEMENT = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1}


@dataclass(frozen=True)
class ModelConfig:
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
    derived: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if self.head_dim == 0:
            object.__setattr__(self, "head_dim", self.hidden // self.heads)
        if self.heads % self.kv_heads:
            raise ValueError(f"{self.name}: heads {self.heads} not a multiple of kv_heads {self.kv_heads}")

    @property
    def q_size(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def qkv_size(self) -> int:
        return self.q_size + 2 * self.kv_size

    @property
    def layer_params(self) -> int:
        attn = self.hidden * self.qkv_size + self.q_size * self.hidden
        if self.qkv_bias:
            attn += self.qkv_size
        mlp = 3 * self.hidden * self.ffn
        norms = 2 * self.hidden
        return attn + mlp + norms

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def params(self) -> int:
        lm_head = 0 if self.tied_embeddings else self.vocab * self.hidden
        return self.embedding_params + self.layers * self.layer_params + self.hidden + lm_head

    def weight_bytes(self, dtype: str = "bf16") -> int:
        return self.params * BYTES_PER_ELEMENT[dtype]

    def decode_weight_bytes(self, dtype: str = "bf16") -> int:
        """Weights one decode step must read: everything but the embedding table (only B rows of it)."""
        read = self.layers * self.layer_params + self.hidden + self.vocab * self.hidden
        return read * BYTES_PER_ELEMENT[dtype]

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
        return self.layers * layer_flops(self.layer_dims, batch, context) + model_ops

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("derived")
        d.update(
            params=self.params,
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
        # Small enough for unit tests and the Triton interpreter; GQA ratio 2, odd FFN width on purpose.
        ModelConfig("tiny", hidden=64, layers=2, heads=4, kv_heads=2, ffn=176, vocab=512, qkv_bias=False,
                    rope_theta=10000.0, source="tokenbench test config"),
    ]
}


def get_model(name: str) -> ModelConfig:
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name]

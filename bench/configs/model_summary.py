"""What `tokenbench models` says about a model: exact parameter counts, the KV cache per layer type and the FLOPs
of one decode token at a stated context, from its per-layer description (kernels.layer_spec, whose docstring
gives the conventions)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from bench.configs.model_configs import BYTES_PER_ELEMENT, ModelConfig


@dataclass(frozen=True)
class LayerTypeSummary:
    layer: str  # e.g. "sliding 128, moe 128 top-4 x2880"
    count: int
    attention: str  # "gqa" or "mla"
    window: int  # 0: full attention
    kv_bytes_per_token: int  # what one token adds to one such layer's cache
    kv_bound: str  # what bounds the cache: "context" or "window W tokens"
    params: int  # one such layer, all experts


@dataclass(frozen=True)
class ModelSummary:
    name: str
    architecture: str
    source: str
    dtype: str
    params: int
    active_params: int
    weight_bytes: int
    kv_bytes_per_token: int  # all layers, each token while it is inside every window
    context: int
    kv_cache_bytes_at_context: int  # one sequence of `context` tokens, windows applied
    flops_per_token: int  # one decode token at `context`
    layer_types: tuple[LayerTypeSummary, ...]
    notes: tuple[str, ...]

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(model: ModelConfig, context: int, dtype: str = "bf16") -> ModelSummary:
    spec, eb = model.spec, BYTES_PER_ELEMENT[dtype]
    types = tuple(
        LayerTypeSummary(layer=layer.label, count=n, attention=layer.attention.kind, window=layer.attention.window,
                         kv_bytes_per_token=layer.attention.cache_elements_per_token * eb,
                         kv_bound=f"window {layer.attention.window} tokens" if layer.attention.window else "context",
                         params=int(layer.params()))
        for layer, n in spec.groups)
    notes = tuple(n for n in model.notes.split("; ") if n) if model.notes else ()
    return ModelSummary(name=model.name, architecture=model.architecture, source=model.source, dtype=dtype,
                        params=spec.params(), active_params=spec.active_params(), weight_bytes=spec.params() * eb,
                        kv_bytes_per_token=spec.kv_bytes_per_token(eb), context=context,
                        kv_cache_bytes_at_context=spec.kv_cache_bytes(1, context, eb),
                        flops_per_token=spec.decode_flops_per_token(context), layer_types=types, notes=notes)

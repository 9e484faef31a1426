"""The attention projection sizes of a config with `heads` query heads and `kv_heads` KV heads of `head_dim`
each, shared by kernels.layer.LayerDims (one layer's shapes, or one rank's shard of them) and
bench.configs.model_configs.ModelConfig (a model). No torch here: a model config stays importable without it.
"""
from __future__ import annotations


class HeadSizes:
    """For a dataclass with `heads`, `kv_heads` and `head_dim` fields."""

    @property
    def q_size(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def qkv_size(self) -> int:
        """Rows of the fused qkv projection: q, k, v."""
        return self.q_size + 2 * self.kv_size

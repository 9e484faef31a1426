"""A model as typed records: each decoder layer's attention and MLP (AttentionSpec, MlpSpec, LayerSpec) and the
model as its layers in order (ModelSpec, grouped by type for composing a step by count). No torch and no bench
imports: the kernels read these, and bench.configs.hf_config builds them from a Hugging Face config.json.

Counts follow the model exactly as transformers builds it (every nn.Parameter: weights, biases, norm scales,
attention sinks; DeepSeek's e_score_correction_bias is a buffer there, so it is not a parameter here either).
Per-token figures:
- KV cache: GQA holds K and V, 2 x kv_heads x head_dim elements per token per layer; MLA holds the latent,
  kv_lora_rank + qk_rope_head_dim elements per token per layer (as the serving engines cache it; transformers'
  own cache holds the same latent). A sliding-window layer holds at most `window` tokens: transformers' mask
  lets position q see positions q - window + 1 .. q, the window including the token itself.
- FLOPs per decode token at context C (the entries attended, the new one included): 2 per weight multiplied
  (routed top-k experts, shared experts, router, LM head; not the embedding gather) plus attention:
  GQA 4 x heads x head_dim x min(C, window); MLA as the engines decode it, with W_UK absorbed into the query and
  W_UV into the output (the absorbed products use the same kv_b_proj weights once per token, so they stay in the
  2-per-weight term), scores over the latent 2 x heads x (kv_lora_rank + qk_rope_head_dim) x C and values
  2 x heads x kv_lora_rank x C. Elementwise work (norms, RoPE, activations, softmax) is left out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

ATTENTION_KINDS = ("gqa", "mla")
MLP_KINDS = ("dense", "moe")
ROUTERS = ("softmax_topk", "deepseek_group_sigmoid", "gptoss")
ACTIVATIONS = ("swiglu", "gptoss_swiglu")
ROPE_KINDS = ("default", "linear", "llama3", "yarn")


@dataclass(frozen=True)
class RopeSpec:
    """Rotary embedding: base `theta` and the frequency scaling the config names (transformers' rope_type).
    The scaling changes the frequency table, computed once per position, not the work per token."""

    theta: float
    kind: str = "default"
    factor: float = 1.0  # linear, llama3, yarn
    original_max_positions: int = 0  # llama3, yarn
    low_freq_factor: float = 0.0  # llama3
    high_freq_factor: float = 0.0  # llama3
    beta_fast: float = 0.0  # yarn (0: transformers' default, 32)
    beta_slow: float = 0.0  # yarn (0: transformers' default, 1)
    mscale: float = 0.0  # yarn, DeepSeek (0: not given)
    mscale_all_dim: float = 0.0  # yarn, DeepSeek: also scales the attention softmax by mscale^2
    attention_factor: float = 0.0  # yarn (0: not given, derived from factor)
    truncate: bool = True  # yarn (gpt-oss: False)
    interleaved: bool = False  # DeepSeek's rope_interleave: rotates pairs (x0, x1), (x2, x3), ...

    def __post_init__(self):
        if self.kind not in ROPE_KINDS:
            raise ValueError(f"rope kind {self.kind!r} is not one of {', '.join(ROPE_KINDS)}")


@dataclass(frozen=True)
class AttentionSpec:
    """One layer's attention. GQA: `heads` query heads and `kv_heads` K/V heads of `head_dim`. MLA (DeepSeek):
    q = W_qb norm(W_qa x) (or W_q x when q_lora_rank is 0), latent = norm(W_kva x)[:kv_lora_rank] with a
    shared rotary key of qk_rope_head_dim, K/V per head from W_kvb latent; `head_dim` is then the query/key
    width qk_nope_head_dim + qk_rope_head_dim and `kv_heads` equals `heads`."""

    kind: str
    hidden: int  # the model width the projections read and write
    heads: int
    kv_heads: int
    head_dim: int
    rope: RopeSpec
    qkv_bias: bool = False  # biases on q, k, v (MLA: on q_a_proj and kv_a_proj)
    o_bias: bool = False
    qk_norm: bool = False  # RMSNorm over head_dim on q and k before RoPE (Qwen3)
    norm_eps: float = 1e-6  # of the q/k norms, or of MLA's q_a and kv_a norms
    window: int = 0  # 0: full attention; else a sliding window of this many positions
    sinks: bool = False  # a learned logit per head joining the softmax (gpt-oss)
    q_lora_rank: int = 0  # MLA; 0 = q projected directly
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0

    def __post_init__(self):
        if self.kind not in ATTENTION_KINDS:
            raise ValueError(f"attention kind {self.kind!r} is not one of {', '.join(ATTENTION_KINDS)}")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads {self.heads} not a multiple of kv_heads {self.kv_heads}")
        if self.kind == "mla":
            if not (self.kv_lora_rank > 0 and self.qk_rope_head_dim > 0 and self.v_head_dim > 0):
                raise ValueError("MLA needs kv_lora_rank, qk_rope_head_dim and v_head_dim > 0")
            if self.head_dim != self.qk_nope_head_dim + self.qk_rope_head_dim or self.kv_heads != self.heads:
                raise ValueError("MLA: head_dim must be qk_nope + qk_rope and kv_heads must equal heads")

    @property
    def label(self) -> str:
        """Short name of the layer type: 'full', 'sliding 128', 'mla'."""
        if self.kind == "mla":
            return "mla"
        return f"sliding {self.window}" if self.window else "full"

    @property
    def softmax_scale(self) -> float:
        """The scores' scale, as transformers applies it: 1 / sqrt(query-key width); MLA under a scaled RoPE
        with mscale_all_dim multiplies it by (0.1 mscale_all_dim ln(factor) + 1)^2 (DeepSeek's yarn)."""
        scale = self.head_dim ** -0.5
        r = self.rope
        if self.kind == "mla" and r.kind != "default" and r.mscale_all_dim and r.factor > 1:
            scale *= (0.1 * r.mscale_all_dim * math.log(r.factor) + 1.0) ** 2
        return scale

    def matmul_params(self) -> int:
        """Weights multiplied once per token (projections; not biases, norm scales or sinks)."""
        h = self.hidden
        if self.kind == "gqa":
            q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
            return h * (q + 2 * kv) + q * h
        q_out = self.heads * self.head_dim
        q = h * q_out if not self.q_lora_rank else h * self.q_lora_rank + self.q_lora_rank * q_out
        kv_a = h * (self.kv_lora_rank + self.qk_rope_head_dim)
        kv_b = self.kv_lora_rank * self.heads * (self.qk_nope_head_dim + self.v_head_dim)
        return q + kv_a + kv_b + self.heads * self.v_head_dim * h

    def params(self) -> int:
        n = self.matmul_params()
        if self.kind == "gqa":
            q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
            n += (q + 2 * kv) if self.qkv_bias else 0
            n += 2 * self.head_dim if self.qk_norm else 0
        else:
            # transformers: attention_bias puts biases on q_a_proj (not on a direct q_proj) and kv_a_proj
            n += (self.q_lora_rank + self.kv_lora_rank + self.qk_rope_head_dim) if self.qkv_bias else 0
            n += self.q_lora_rank + self.kv_lora_rank  # q_a and kv_a RMSNorm scales
        n += self.hidden if self.o_bias else 0
        n += self.heads if self.sinks else 0
        return n

    @property
    def cache_elements_per_token(self) -> int:
        """Cache elements one token adds to this layer."""
        if self.kind == "mla":
            return self.kv_lora_rank + self.qk_rope_head_dim
        return 2 * self.kv_heads * self.head_dim

    def cached_tokens(self, context: int) -> int:
        """Tokens this layer's cache holds at `context` (a window bounds it)."""
        return min(context, self.window) if self.window else context

    def attention_flops(self, context: int) -> int:
        """FLOPs of one query token's scores and weighted values over `context` entries (module docstring)."""
        n = self.cached_tokens(context)
        if self.kind == "mla":
            return 2 * self.heads * (self.kv_lora_rank + self.qk_rope_head_dim) * n + 2 * self.heads * self.kv_lora_rank * n
        return 4 * self.heads * self.head_dim * n


@dataclass(frozen=True)
class MlpSpec:
    """One layer's MLP. Dense: a SwiGLU MLP of width `ffn`. MoE: `experts` routed experts of width `ffn`, of which
    the router picks `top_k` per token, plus `shared_experts` that every token runs (one MLP of `shared_ffn`).
    Routers: 'softmax_topk' (softmax over all experts, top-k, renormalised over the k when norm_topk_prob:
    Mixtral always, Qwen3-MoE by its flag); 'deepseek_group_sigmoid' (sigmoid scores; the correction bias is
    added for choosing only: best n_group groups by their top-2 sum, keep topk_group groups, top-k inside them;
    weights are the unbiased scores, renormalised when norm_topk_prob, times routed_scaling_factor); 'gptoss'
    (logits with a learned bias, top-k, softmax over the k). Activations: 'swiglu' silu(gate) * up; 'gptoss_swiglu'
    gate clamped above at `swiglu_limit`, up clamped to +-limit, (up + 1) * gate * sigmoid(swiglu_alpha * gate),
    gate and up interleaved in the fused projection."""

    kind: str
    ffn: int
    experts: int = 0
    top_k: int = 0
    router: str = ""
    norm_topk_prob: bool = False
    n_group: int = 0
    topk_group: int = 0
    routed_scaling_factor: float = 1.0
    router_bias: bool = False  # gpt-oss: a learned bias on the router logits (a parameter)
    correction_bias: bool = False  # DeepSeek: e_score_correction_bias (a buffer, not a parameter)
    shared_experts: int = 0
    shared_ffn: int = 0
    expert_bias: bool = False  # gpt-oss: biases on each expert's gate_up and down projections
    activation: str = "swiglu"
    swiglu_alpha: float = 0.0
    swiglu_limit: float = 0.0

    def __post_init__(self):
        if self.kind not in MLP_KINDS:
            raise ValueError(f"MLP kind {self.kind!r} is not one of {', '.join(MLP_KINDS)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} is not one of {', '.join(ACTIVATIONS)}")
        if self.kind == "moe":
            if self.router not in ROUTERS:
                raise ValueError(f"router {self.router!r} is not one of {', '.join(ROUTERS)}")
            if not 0 < self.top_k <= self.experts:
                raise ValueError(f"MoE needs 0 < top_k ({self.top_k}) <= experts ({self.experts})")
            if self.router == "deepseek_group_sigmoid" and (
                    self.n_group <= 0 or self.experts % self.n_group or not 0 < self.topk_group <= self.n_group):
                raise ValueError("DeepSeek routing needs n_group dividing experts and 0 < topk_group <= n_group")

    @property
    def label(self) -> str:
        if self.kind == "dense":
            return f"dense {self.ffn}"
        shared = f"+{self.shared_experts}" if self.shared_experts else ""
        return f"moe {self.experts}{shared} top-{self.top_k} x{self.ffn}"

    def _expert_params(self, width: int, hidden: int) -> int:
        return 3 * hidden * width + ((2 * width + hidden) if self.expert_bias else 0)

    def router_params(self, hidden: int) -> int:
        if self.kind != "moe":
            return 0
        return hidden * self.experts + (self.experts if self.router_bias else 0)

    def params(self, hidden: int, routed: float | None = None) -> float:
        """Parameters of the MLP with `routed` routed experts counted (all of them when None)."""
        if self.kind == "dense":
            return 3 * hidden * self.ffn
        routed = self.experts if routed is None else routed
        shared = self._expert_params(self.shared_ffn, hidden) if self.shared_experts else 0
        return routed * self._expert_params(self.ffn, hidden) + shared + self.router_params(hidden)

    def matmul_params(self, hidden: int) -> int:
        """Weights one token multiplies: its top-k experts, the shared experts and the router."""
        if self.kind == "dense":
            return 3 * hidden * self.ffn
        shared = 3 * hidden * self.shared_ffn if self.shared_experts else 0
        return self.top_k * 3 * hidden * self.ffn + shared + hidden * self.experts


@dataclass(frozen=True)
class LayerSpec:
    """One decoder layer: pre-norm attention and MLP, each with an RMSNorm of `hidden` scales (eps norm_eps)."""

    hidden: int
    attention: AttentionSpec
    mlp: MlpSpec
    norm_eps: float

    def __post_init__(self):
        if self.attention.hidden != self.hidden:
            raise ValueError(f"attention reads width {self.attention.hidden}, the layer's is {self.hidden}")

    @property
    def label(self) -> str:
        return f"{self.attention.label}, {self.mlp.label}"

    def params(self, routed: float | None = None) -> float:
        return self.attention.params() + self.mlp.params(self.hidden, routed) + 2 * self.hidden

    def matmul_params(self) -> int:
        return self.attention.matmul_params() + self.mlp.matmul_params(self.hidden)


@dataclass(frozen=True)
class ModelSpec:
    """A decoder-only model: token embedding, `layers` in order, a final RMSNorm, the LM head (or the embedding
    table again when tied)."""

    hidden: int
    vocab: int
    tied_embeddings: bool
    norm_eps: float
    layers: tuple[LayerSpec, ...]

    @property
    def groups(self) -> tuple[tuple[LayerSpec, int], ...]:
        """The layers grouped by type, (layer, count), in the order each type first appears."""
        counts: dict[LayerSpec, int] = {}
        for layer in self.layers:
            counts[layer] = counts.get(layer, 0) + 1
        return tuple(counts.items())

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def lm_head_params(self) -> int:
        return 0 if self.tied_embeddings else self.vocab * self.hidden

    def params(self) -> int:
        layers = sum(n * layer.params() for layer, n in self.groups)
        return int(self.embedding_params + layers + self.hidden + self.lm_head_params)

    def active_params(self) -> int:
        """Parameters one token uses: every layer with its top-k routed experts only (embedding table and LM head
        included, as `params` counts them)."""
        layers = sum(n * layer.params(layer.mlp.top_k if layer.mlp.kind == "moe" else None)
                     for layer, n in self.groups)
        return int(self.embedding_params + layers + self.hidden + self.lm_head_params)

    def kv_bytes_per_token(self, element_bytes: int) -> int:
        """Cache bytes one token adds across all layers (a sliding layer drops its oldest token beyond the window)."""
        return sum(n * layer.attention.cache_elements_per_token for layer, n in self.groups) * element_bytes

    def kv_cache_bytes(self, batch: int, context: int, element_bytes: int) -> int:
        """Cache of `batch` sequences of `context` tokens, each sliding layer holding at most its window."""
        per_seq = sum(n * layer.attention.cached_tokens(context) * layer.attention.cache_elements_per_token
                      for layer, n in self.groups)
        return batch * per_seq * element_bytes

    def decode_flops_per_token(self, context: int) -> int:
        """FLOPs of one decode token at `context` (module docstring: 2 per weight multiplied + attention)."""
        layers = sum(n * (2 * layer.matmul_params() + layer.attention.attention_flops(context))
                     for layer, n in self.groups)
        return layers + 2 * self.vocab * self.hidden

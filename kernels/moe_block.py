"""The MoE MLP block of a layer as the models run it: their own router (kernels/moe_router.py), the routed
experts, expert biases and gpt-oss's activation, and DeepSeek's shared experts. Decode (B tokens) and
prefill or mixed steps (T tokens) are the same block at a token count.

For T tokens, hidden H, E routed experts of width F, top-k, S shared experts of width Fs:
  ids, p = router(x)                                           [T, k]
  y[t]   = sum_j p[t, j] * (act(x[t] Wgu[e]^T + bgu[e]) Wd[e]^T + bd[e]),  e = ids[t, j]
         + act(x[t] Wsgu^T) Wsd^T                  (shared: one MLP of width S*Fs, as transformers'
                                                    DeepseekV3MoE holds it, every token, weight 1)
  act    swiglu:        silu(g) * u
         gptoss_swiglu: g = min(g, limit); u = clamp(u, -limit, limit); (u + 1) * g * sigmoid(1.702 g)
Weights: w_gate_up [E, 2F, H] with the gate rows first (gpt-oss interleaves them; kernels/hf_moe_mapping.py
de-interleaves), w_down [E, H, F], b_gate_up [E, 2F], b_down [E, H]; shared w_shared_gate_up [2 S Fs, H]
(gate rows first), w_shared_down [H, S Fs].

Work counts only what the batch activates: FLOPs by token-expert pairs (T k), minimum bytes by the distinct
experts the routing touched (`routing_stats` of the step's own router output), each read once.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from kernels import moe_router
from kernels.dtypes import generator, randn
from kernels.moe_router import RouterShape, RouterSpec
from kernels.moe_routing import Routing, RoutingStats, routing_stats
from kernels.op import Inputs, OpCase, as_float64

ACTIVATIONS = ("swiglu", "gptoss_swiglu")
GPTOSS_ALPHA = 1.702  # transformers' GptOssConfig.swiglu_alpha default, as gpt-oss's checkpoints use
# FLOPs per activation element: swiglu silu 4 + multiply 1 (kernels/moe.py's count); gpt-oss clamp 3, alpha
# multiply 1, sigmoid 4, multiply by the gate 1, up + 1 and the product 2
ACT_FLOPS = {"swiglu": 5, "gptoss_swiglu": 11}


@dataclass(frozen=True)
class MoeBlockShape:
    tokens: int
    hidden: int
    ffn: int  # one routed expert's width (moe_intermediate_size)
    experts: int  # routed experts
    top_k: int
    router: RouterSpec = field(default_factory=RouterSpec)
    shared: int = 0  # shared experts (DeepSeek's n_shared_experts), each of width shared_ffn
    shared_ffn: int = 0  # 0: ffn
    expert_bias: bool = False  # gpt-oss: gate_up and down biases per expert
    activation: str = "swiglu"
    limit: float = 0.0  # gptoss_swiglu's clamp (swiglu_limit)

    def __post_init__(self):
        self.router.check_experts(self.experts, self.top_k)
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; choose from {', '.join(ACTIVATIONS)}")
        if (self.activation == "gptoss_swiglu") != (self.limit > 0):
            raise ValueError("gptoss_swiglu takes a positive limit, swiglu none")
        if self.shared_ffn == 0:
            object.__setattr__(self, "shared_ffn", self.ffn)

    @property
    def router_shape(self) -> RouterShape:
        return RouterShape(self.tokens, self.hidden, self.experts, self.top_k, self.router)

    @property
    def shared_width(self) -> int:
        return self.shared * self.shared_ffn


def flops(s: MoeBlockShape) -> int:
    """Router, then per (token, chosen expert): gate_up 4HF (+2F bias), activation, down 2FH (+H bias), the
    weighted sum 2H; the shared MLP per token: 4H Fs' + swiglu + 2 Fs' H + H to add it (Fs' = S Fs)."""
    return moe_router.flops(s.router_shape) + s.tokens * (s.top_k * pair_flops(s) + shared_flops(s))


def pair_flops(s: MoeBlockShape) -> int:
    """One (token, chosen expert) pair: gate_up, bias, activation, down, bias, the weighted sum."""
    h, f = s.hidden, s.ffn
    bias = (2 * f + h) if s.expert_bias else 0
    return 4 * h * f + ACT_FLOPS[s.activation] * f + 2 * f * h + 2 * h + bias


def shared_flops(s: MoeBlockShape) -> int:
    """The shared MLP on one token, and adding it."""
    fs = s.shared_width
    return (6 * s.hidden * fs + ACT_FLOPS["swiglu"] * fs + s.hidden) if fs else 0


def min_bytes(s: MoeBlockShape, element_bytes: int, active: float) -> int:
    """x in and y out, the router (kernels/moe_router.py), each of the `active` routed experts' weights (and
    biases) once, the shared MLP."""
    expert = 3 * s.hidden * s.ffn + ((2 * s.ffn + s.hidden) if s.expert_bias else 0)
    weights = active * expert + 3 * s.hidden * s.shared_width
    # the router's reads; its ids and weights stay on chip
    router_in = moe_router.min_bytes(s.router_shape, element_bytes) - s.tokens * s.top_k * 12
    return round(router_in + (weights + s.tokens * s.hidden) * element_bytes)


def _draw_experts(s: MoeBlockShape, dtype, device, g) -> Inputs:
    e, f, h, fs = s.experts, s.ffn, s.hidden, s.shared_width
    out = {"w_gate_up": randn((e, 2 * f, h), dtype, device, g, scale=h**-0.5),
           "w_down": randn((e, h, f), dtype, device, g, scale=f**-0.5),
           "b_gate_up": None, "b_down": None, "w_shared_gate_up": None, "w_shared_down": None}
    if s.expert_bias:
        out["b_gate_up"] = randn((e, 2 * f), dtype, device, g, scale=0.5)
        out["b_down"] = randn((e, h), dtype, device, g, scale=0.5)
    if fs:
        out["w_shared_gate_up"] = randn((2 * fs, h), dtype, device, g, scale=h**-0.5)
        out["w_shared_down"] = randn((h, fs), dtype, device, g, scale=fs**-0.5)
    return out


def make_inputs(s: MoeBlockShape, dtype: torch.dtype, device, seed: int,
                routing: Routing | None = None) -> Inputs:
    """The router's inputs first (so `routing_inputs(seed)` repeats them alone), then the experts.
    `routing` steers x (kernels/moe_routing.py); None draws x at random."""
    inputs = moe_router.make_inputs(s.router_shape, dtype, device, seed, routing)
    # the experts from their own stream: how many draws the router's inputs take depends on the routing
    g = generator(seed + 7_919, device)
    inputs.update(_draw_experts(s, dtype, device, g))
    return inputs


def routing_inputs(s: MoeBlockShape, dtype: torch.dtype, device, seed: int,
                   routing: Routing | None = None) -> Inputs:
    """The x and router weights make_inputs(seed) draws, without the experts (cheap at any size)."""
    return moe_router.make_inputs(s.router_shape, dtype, device, seed, routing)


def step_routing(s: MoeBlockShape, inputs: Inputs) -> RoutingStats:
    """Active experts and the heaviest expert's tokens that the router chooses for this input set."""
    ids, _ = moe_router.route(inputs["x"], inputs["router_w"], s.router, s.top_k, inputs["router_bias"],
                              inputs["correction_bias"])
    return routing_stats(ids, s.experts)


def activate(gu: torch.Tensor, activation: str, limit: float) -> torch.Tensor:
    """[n, 2F] gate then up -> [n, F] (module docstring)."""
    f = gu.shape[-1] // 2
    g, u = gu[..., :f], gu[..., f:]
    if activation == "swiglu":
        return g * torch.sigmoid(g) * u
    g = g.clamp(max=limit)
    u = u.clamp(-limit, limit)
    return (u + 1) * (g * torch.sigmoid(GPTOSS_ALPHA * g))


def reference(s: MoeBlockShape, inp: Inputs) -> tuple:
    """float64 throughout, routed by the float64 router; only the chosen experts' weights are widened (a
    DeepSeek-V3 layer's 256 experts would take 90 GB as float64)."""
    x64 = as_float64(inp["x"])
    ids, p = moe_router.route_reference(inp["x"], inp["router_w"], s.router, s.top_k, inp["router_bias"],
                                        inp["correction_bias"])
    y = torch.zeros_like(x64)
    for e in torch.unique(ids).tolist():
        tok, slot = torch.nonzero(ids == e, as_tuple=True)
        gu = x64[tok] @ as_float64(inp["w_gate_up"][e]).T
        if s.expert_bias:
            gu = gu + as_float64(inp["b_gate_up"][e])
        out = activate(gu, s.activation, s.limit) @ as_float64(inp["w_down"][e]).T
        if s.expert_bias:
            out = out + as_float64(inp["b_down"][e])
        y.index_add_(0, tok, p[tok, slot][:, None] * out)
    if s.shared_width:
        m = activate(x64 @ as_float64(inp["w_shared_gate_up"]).T, "swiglu", 0.0)
        y = y + m @ as_float64(inp["w_shared_down"]).T
    return (y,)


def _shared_torch(x, inp) -> torch.Tensor:
    return F.linear(activate(F.linear(x, inp["w_shared_gate_up"]), "swiglu", 0.0), inp["w_shared_down"])


def torch_block_loop(s: MoeBlockShape, inp: Inputs) -> torch.Tensor:
    """PyTorch baseline: route, then one gate_up / activation / down per active expert over its tokens (each
    active expert's weights read once; the per-expert token lists cost a host sync, so no CUDA graph)."""
    x = inp["x"]
    ids, p = moe_router.route(x, inp["router_w"], s.router, s.top_k, inp["router_bias"],
                              inp["correction_bias"])
    y = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    flat = ids.flatten()
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=s.experts).tolist()  # host sync
    start = 0
    for e, n in enumerate(counts):
        if n == 0:
            continue
        pairs = order[start:start + n]
        start += n
        tok = pairs // s.top_k
        b_gu = inp["b_gate_up"][e] if s.expert_bias else None
        b_d = inp["b_down"][e] if s.expert_bias else None
        m = activate(F.linear(x[tok], inp["w_gate_up"][e], b_gu), s.activation, s.limit)
        y.index_add_(0, tok, F.linear(m, inp["w_down"][e], b_d).float() * p.flatten()[pairs, None])
    if s.shared_width:
        y += _shared_torch(x, inp).float()
    return y.to(x.dtype)


def torch_block_gather(s: MoeBlockShape, inp: Inputs) -> torch.Tensor:
    """PyTorch batched: gather each (token, expert) pair's weights and bmm. No host sync (graph-capturable),
    but reads an expert's weights once per token that picks it: T k copies instead of the active count."""
    x = inp["x"]
    ids, p = moe_router.route(x, inp["router_w"], s.router, s.top_k, inp["router_bias"],
                              inp["correction_bias"])
    flat = ids.flatten()
    xs = x.repeat_interleave(s.top_k, dim=0).unsqueeze(-1)  # [T k, H, 1]
    gu = torch.bmm(inp["w_gate_up"][flat], xs).squeeze(-1)  # [T k, 2F]
    if s.expert_bias:
        gu = gu + inp["b_gate_up"][flat]
    out = torch.bmm(inp["w_down"][flat], activate(gu, s.activation, s.limit).unsqueeze(-1)).squeeze(-1)
    if s.expert_bias:
        out = out + inp["b_down"][flat]
    y = (out.float().view(x.shape[0], s.top_k, -1) * p[..., None]).sum(1)
    if s.shared_width:
        y += _shared_torch(x, inp).float()
    return y.to(x.dtype)


def triton_block(s: MoeBlockShape, inp: Inputs) -> torch.Tensor:
    """Router (float32 logits GEMM + the fused Triton selection), then the grouped expert GEMM with biases and
    the activation in Triton (kernels/triton/moe_block.py), the shared MLP through the same kernels."""
    from kernels.triton.moe_block import triton_experts  # Triton imported only when this backend runs

    x = inp["x"]
    ids, p = moe_router.triton_route(x, inp["router_w"], s.router, s.top_k, inp["router_bias"],
                                     inp["correction_bias"])
    return triton_experts(x, ids, p, inp["w_gate_up"], inp["w_down"], inp["b_gate_up"], inp["b_down"],
                          s.activation, s.limit, inp["w_shared_gate_up"], inp["w_shared_down"])


IMPLS = {"torch": torch_block_loop, "torch-gather": torch_block_gather, "triton": triton_block}


def shape_metadata(s: MoeBlockShape, routing: Routing | None, stats: RoutingStats | None) -> dict:
    """The case's shape, its routing distribution and (for the first timed input set, seed 0) the active
    experts and the heaviest expert's token count."""
    meta = {"tokens": s.tokens, "hidden": s.hidden, "ffn": s.ffn, "experts": s.experts, "top_k": s.top_k,
            "router": s.router.__dict__, "shared": s.shared, "shared_ffn": s.shared_ffn,
            "expert_bias": s.expert_bias, "activation": s.activation, "limit": s.limit,
            "routing": routing.label if routing else "random"}
    if stats is not None:
        meta.update(active_experts=stats.active_experts, max_tokens_per_expert=stats.max_tokens_per_expert)
    return meta


def moe_block_case(s: MoeBlockShape, dtype: torch.dtype, device, backends=("torch",),
                   routing: Routing | None = None) -> OpCase:
    """The block at one token count. Its bytes count the experts the routing of input set 0 activates (the
    sweep reads every timed set's routing: bench/sweeps/moe_sweep.py)."""
    unknown = [b for b in backends if b not in IMPLS]
    if unknown:
        raise ValueError(f"unknown MoE backend {unknown[0]!r}; choose from {', '.join(IMPLS)}")
    element_bytes = torch.empty((), dtype=dtype).element_size()
    stats = step_routing(s, routing_inputs(s, dtype, device, 0, routing))
    return OpCase(
        name="moe_block", kind="moe", flops=flops(s), bytes=min_bytes(s, element_bytes, stats.active_experts),
        make_inputs=lambda seed: make_inputs(s, dtype, device, seed, routing),
        reference=lambda inp: reference(s, inp),
        impls={b: (lambda fn: lambda inp: fn(s, inp))(IMPLS[b]) for b in backends},
        shape=shape_metadata(s, routing, stats),
    )

"""The routers of the mixture-of-experts models served today, as one op: logits, then each token's top-k
experts and their weights. For T tokens, hidden H, E routed experts, top-k:

  softmax_topk            (Mixtral, Qwen3-MoE)  p = softmax(x Wr^T); top-k of p; weights = the k values,
                          divided by their sum when norm_topk_prob (Mixtral always; Qwen3-MoE per config)
  deepseek_group_sigmoid  (DeepSeek-V3/R1)       s = sigmoid(x Wr^T); c = s + e_score_correction_bias;
                          group score = sum of the top 2 of c in each of n_group equal groups; keep the
                          topk_group best groups; top-k of c inside them; weights = s (unbiased) at those,
                          / (sum + 1e-20) when norm_topk_prob, times routed_scaling_factor
  gptoss                  (gpt-oss)               l = x Wr^T + b (a linear with bias); top-k of l;
                          weights = softmax over the k chosen logits

(transformers' MixtralTopKRouter, Qwen3MoeTopKRouter, DeepseekV3TopkRouter and GptOssTopKRouter; the parity
tests in tests/test_moe_block_hf.py build them.) The logits are computed in float32 from the stored weights
whatever the activation dtype, as transformers does for all but gpt-oss: the router GEMM is E x H, small next
to the experts, and a float32 selection agrees with the float64 reference's except at near-ties (logit gap
~1e-6), where a bf16 selection would flip experts for no fault of the kernel.

The op's output, for checking, is the dense [T, E] routing matrix (each token's weights at its chosen experts,
zero elsewhere): one relative error catches a wrong expert and a wrong weight alike.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kernels.dtypes import generator, randn
from kernels.op import Inputs, OpCase, as_float64

ROUTER_KINDS = ("softmax_topk", "deepseek_group_sigmoid", "gptoss")
# the router math runs in float32 whatever the activation dtype (above): its check is float32's
ROUTER_TOLERANCE = 1e-4


@dataclass(frozen=True)
class RouterSpec:
    """A router's kind and the config fields it reads (the names of the models' config.json files)."""

    kind: str = "softmax_topk"
    norm_topk_prob: bool = True  # softmax_topk and deepseek_group_sigmoid (gptoss always softmaxes the k)
    n_group: int = 1  # deepseek_group_sigmoid only
    topk_group: int = 1
    routed_scaling_factor: float = 1.0

    def __post_init__(self):
        if self.kind not in ROUTER_KINDS:
            raise ValueError(f"unknown router {self.kind!r}; choose from {', '.join(ROUTER_KINDS)}")
        grouping = (self.n_group, self.topk_group, self.routed_scaling_factor)
        if self.kind != "deepseek_group_sigmoid" and grouping != (1, 1, 1.0):
            raise ValueError(f"{self.kind} router takes no n_group, topk_group or routed_scaling_factor")
        if not 0 < self.topk_group <= self.n_group:
            raise ValueError(f"router needs 0 < topk_group <= n_group, got {self.topk_group} of "
                             f"{self.n_group}")

    @property
    def linear_bias(self) -> bool:
        """gpt-oss's router is a linear with bias."""
        return self.kind == "gptoss"

    @property
    def correction_bias(self) -> bool:
        """DeepSeek-V3's e_score_correction_bias (choice only, not weights)."""
        return self.kind == "deepseek_group_sigmoid"

    def check_experts(self, experts: int, top_k: int) -> None:
        if not 0 < top_k <= experts:
            raise ValueError(f"router needs 0 < top_k <= experts, got top-{top_k} of {experts}")
        if self.kind == "deepseek_group_sigmoid":
            if experts % self.n_group:
                raise ValueError(f"{experts} experts do not split into n_group {self.n_group} equal groups")
            per_group = experts // self.n_group
            if per_group < 2:
                raise ValueError("group-limited routing scores each group by its top 2 experts: needs >= 2 "
                                 "a group")
            if top_k > self.topk_group * per_group:
                raise ValueError(f"top-{top_k} does not fit in {self.topk_group} groups of {per_group} "
                                 "experts")

    def describe(self) -> str:
        if self.kind == "softmax_topk":
            return f"softmax top-k{'' if self.norm_topk_prob else ' (not renormalised)'}"
        if self.kind == "gptoss":
            return "gpt-oss (linear with bias, softmax over the top-k logits)"
        return (f"sigmoid group-limited top-k ({self.topk_group} of {self.n_group} groups, x"
                f"{self.routed_scaling_factor:g}{', renormalised' if self.norm_topk_prob else ''})")


@dataclass(frozen=True)
class RouterShape:
    tokens: int
    hidden: int
    experts: int
    top_k: int
    router: RouterSpec = RouterSpec()

    def __post_init__(self):
        self.router.check_experts(self.experts, self.top_k)


def flops(s: RouterShape) -> int:
    """The logits GEMM (2THE, + TE for gpt-oss's bias), then per logit: softmax 3 (subtract the max, exp,
    sum), DeepSeek's sigmoid and bias 2; per chosen weight: normalise 1 (and DeepSeek's scaling 1).
    Comparisons are not counted."""
    t, e, k = s.tokens, s.experts, s.top_k
    gemm = 2 * t * s.hidden * e + (t * e if s.router.linear_bias else 0)
    per_logit = 2 if s.router.kind == "deepseek_group_sigmoid" else 3
    per_weight = 2 if s.router.kind == "deepseek_group_sigmoid" else 1
    return gemm + t * e * per_logit + t * k * per_weight


def min_bytes(s: RouterShape, element_bytes: int) -> int:
    """x and the router weights in (and the bias: gpt-oss's in the dtype, DeepSeek's correction in float32);
    int64 ids and float32 weights out."""
    bias = 0
    if s.router.linear_bias:
        bias = s.experts * element_bytes
    elif s.router.correction_bias:
        bias = 4 * s.experts
    return (s.tokens + s.experts) * s.hidden * element_bytes + bias + s.tokens * s.top_k * (8 + 4)


def draw_router_weights(experts: int, hidden: int, spec: RouterSpec, dtype, device, g) -> Inputs:
    """router_w [E, H] at scale H^-1/2 (logits of unit size spread the choice, as a trained router roughly
    does), gpt-oss's bias, DeepSeek's correction bias (float32, as the checkpoints store it; non-zero so that
    choice and weights really differ)."""
    out = {"router_w": randn((experts, hidden), dtype, device, g, scale=hidden**-0.5),
           "router_bias": None, "correction_bias": None}
    if spec.linear_bias:
        out["router_bias"] = randn((experts,), dtype, device, g, scale=0.5)
    if spec.correction_bias:
        out["correction_bias"] = randn((experts,), torch.float32, device, g, scale=CORRECTION_BIAS_SCALE)
    return out


# DeepSeek's correction biases are drawn at this scale: large enough to change the choice at near-ties,
# small enough that steered routing (kernels/moe_routing.py) keeps its margins.
CORRECTION_BIAS_SCALE = 0.03


def make_inputs(s: RouterShape, dtype: torch.dtype, device, seed: int, routing=None) -> Inputs:
    """x [T, H] and the router's weights. `routing` (kernels.moe_routing.Routing) steers x so the router's own
    choice follows that distribution; None draws x at random."""
    g = generator(seed, device)
    inputs = draw_router_weights(s.experts, s.hidden, s.router, dtype, device, g)
    if routing is None:
        inputs["x"] = randn((s.tokens, s.hidden), dtype, device, g)
    else:
        from kernels.moe_routing import steered_x

        inputs["x"] = steered_x(routing, s, inputs, dtype, g)
    return inputs


def logits(x, router_w, router_bias=None) -> torch.Tensor:
    """[T, E] float32 (see the module docstring for why float32)."""
    return F.linear(x.float(), router_w.float(), None if router_bias is None else router_bias.float())


def select(logit: torch.Tensor, spec: RouterSpec, top_k: int, correction_bias=None):
    """(ids [T, k] int64, weights [T, k]) from the logits, in the logits' dtype (float32 here, float64 in the
    reference): the routers of the module docstring, written as transformers writes them."""
    if spec.kind == "gptoss":
        top, ids = torch.topk(logit, top_k, dim=-1)
        return ids, torch.softmax(top, dim=-1)
    if spec.kind == "softmax_topk":
        top, ids = torch.topk(torch.softmax(logit, dim=-1), top_k, dim=-1)
        return ids, top / top.sum(-1, keepdim=True) if spec.norm_topk_prob else top
    scores = torch.sigmoid(logit)
    choice = scores + correction_bias.to(logit.dtype)
    t, e = choice.shape
    grouped = choice.view(t, spec.n_group, e // spec.n_group)
    group_scores = grouped.topk(2, dim=-1)[0].sum(-1)  # [T, G]
    group_idx = torch.topk(group_scores, spec.topk_group, dim=-1)[1]
    keep = torch.zeros_like(group_scores, dtype=torch.bool).scatter_(1, group_idx, True)
    choice = choice.masked_fill(~keep.repeat_interleave(e // spec.n_group, dim=1), float("-inf"))
    ids = torch.topk(choice, top_k, dim=-1)[1]
    w = scores.gather(1, ids)
    if spec.norm_topk_prob:
        w = w / (w.sum(-1, keepdim=True) + 1e-20)
    return ids, w * spec.routed_scaling_factor


def route(x, router_w, spec: RouterSpec, top_k: int, router_bias=None, correction_bias=None):
    """PyTorch router: float32 logits, then `select`. (ids [T, k] int64, weights [T, k] float32)."""
    return select(logits(x, router_w, router_bias), spec, top_k, correction_bias)


def route_reference(x, router_w, spec: RouterSpec, top_k: int, router_bias=None, correction_bias=None):
    """The same selection on float64 logits of the same rounded inputs."""
    logit = as_float64(x) @ as_float64(router_w).T
    if router_bias is not None:
        logit = logit + as_float64(router_bias)
    corr = None if correction_bias is None else as_float64(correction_bias)
    return select(logit, spec, top_k, corr)


def dense_routing(ids: torch.Tensor, weights: torch.Tensor, experts: int) -> torch.Tensor:
    """[T, E]: each token's weights at its chosen experts, zero elsewhere."""
    out = torch.zeros(ids.shape[0], experts, dtype=weights.dtype, device=weights.device)
    return out.scatter_(1, ids.long(), weights)


def triton_route(x, router_w, spec: RouterSpec, top_k: int, router_bias=None, correction_bias=None):
    """Float32 logits (one library GEMM), then the selection fused in one Triton kernel."""
    from kernels.triton.moe_router import triton_select  # Triton imported only when this backend runs

    return triton_select(logits(x, router_w, router_bias), spec, top_k, correction_bias)


IMPLS = {"torch": route, "triton": triton_route}


def router_case(s: RouterShape, dtype: torch.dtype, device, backends=("torch",), routing=None) -> OpCase:
    unknown = [b for b in backends if b not in IMPLS]
    if unknown:
        raise ValueError(f"unknown router backend {unknown[0]!r}; choose from {', '.join(IMPLS)}")
    element_bytes = torch.empty((), dtype=dtype).element_size()

    def bind(fn):
        def run(inp):
            ids, w = fn(inp["x"], inp["router_w"], s.router, s.top_k, inp["router_bias"],
                        inp["correction_bias"])
            return dense_routing(ids, w, s.experts)
        return run

    return OpCase(
        name="router", kind="moe", flops=flops(s), bytes=min_bytes(s, element_bytes),
        make_inputs=lambda seed: make_inputs(s, dtype, device, seed, routing),
        reference=lambda inp: (dense_routing(*route_reference(inp["x"], inp["router_w"], s.router, s.top_k,
                                                              inp["router_bias"], inp["correction_bias"]),
                                             s.experts),),
        impls={b: bind(IMPLS[b]) for b in backends},
        shape={"tokens": s.tokens, "hidden": s.hidden, "experts": s.experts, "top_k": s.top_k,
               "router": s.router.__dict__, "routing": routing.label if routing else "random"},
        tolerance=ROUTER_TOLERANCE,
    )

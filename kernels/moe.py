"""Mixture-of-experts MLP for one decode step: router top-k, then each token's k SwiGLU experts.

For T tokens (T = batch at decode), hidden H, E routed experts of width F, top-k, S shared experts:
  logits = x @ Wr^T                                   # router        [T, E]   (float32, see `route`)
  ids, p = topk(logits, k); p = softmax(p)            # Mixtral: softmax over the k selected logits
  y[t]   = sum_j p[t, j] * expert_{ids[t, j]}(x[t])   # expert(x) = (silu(x Wg^T) * (x Wu^T)) Wd^T
         + sum_s expert_{E+s}(x[t])                   # shared experts: every token, weight 1
Weights: w_gate_up [E+S, 2F, H] (gate rows first, as kernels.activation expects), w_down [E+S, H, F];
shared experts are stored after the routed ones and treated as experts every token picks with weight 1.

Work counts only what the step activates. FLOPs depend on token-expert pairs (T*k), not on which experts;
bytes depend on how many distinct experts the batch touches: for uniform random routing the expected
count is E * (1 - (1 - k/E)^T) (an expert is missed by one token with probability 1 - k/E), and
`active_experts(inputs)` gives the actual count for one input set.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kernels.dtypes import generator, randn
from kernels.op import Inputs, OpCase, as_float64


@dataclass(frozen=True)
class MoeShape:
    tokens: int
    hidden: int
    ffn: int  # width of one expert's MLP
    experts: int  # routed experts
    top_k: int
    shared: int = 0  # shared experts, always active

    @property
    def total_experts(self) -> int:
        return self.experts + self.shared


def expected_active_experts(s: MoeShape) -> float:
    """Distinct routed experts `tokens` uniformly random top-k choices touch, in expectation."""
    return s.experts * (1.0 - (1.0 - s.top_k / s.experts) ** s.tokens)


def flops(s: MoeShape) -> int:
    router = 2 * s.tokens * s.hidden * s.experts
    pairs = s.tokens * (s.top_k + s.shared)
    # per (token, expert): gate_up 2*H*2F, swiglu 5F, down 2*F*H; combine: multiply by p and add (2H)
    per_pair = 4 * s.hidden * s.ffn + 5 * s.ffn + 2 * s.ffn * s.hidden + 2 * s.hidden
    return router + pairs * per_pair


def min_bytes(s: MoeShape, element_bytes: int, active: float | None = None) -> int:
    """Each active expert's weights once (3HF), the router weights, x in, y out.
    `active` routed experts (default: the expected count for uniform routing)."""
    active = expected_active_experts(s) if active is None else active
    weights = (active + s.shared) * 3 * s.hidden * s.ffn + s.experts * s.hidden
    return round((weights + 2 * s.tokens * s.hidden) * element_bytes)


def _draw_routing(s: MoeShape, dtype, device, g) -> Inputs:
    return {
        "x": randn((s.tokens, s.hidden), dtype, device, g),
        # H^-1/2: logits of unit size spread the choice over experts, as a trained router roughly does
        "router_w": randn((s.experts, s.hidden), dtype, device, g, scale=s.hidden**-0.5),
        "top_k": s.top_k,
    }


def make_inputs(s: MoeShape, dtype: torch.dtype, device, seed: int) -> Inputs:
    g = generator(seed, device)
    e = s.total_experts
    inputs = _draw_routing(s, dtype, device, g)  # drawn first: routing_inputs(seed) repeats them alone
    inputs["w_gate_up"] = randn((e, 2 * s.ffn, s.hidden), dtype, device, g, scale=s.hidden**-0.5)
    inputs["w_down"] = randn((e, s.hidden, s.ffn), dtype, device, g, scale=s.ffn**-0.5)
    return inputs


def routing_inputs(s: MoeShape, dtype: torch.dtype, device, seed: int) -> Inputs:
    """The x and router weights make_inputs(seed) draws, without the experts (cheap at any size)."""
    return _draw_routing(s, dtype, device, generator(seed, device))


def route(x: torch.Tensor, router_w: torch.Tensor, top_k: int, shared: int = 0):
    """Router: top-k of the logits, softmax over the selected ones (Mixtral). Returns (ids [T, k+S] int64,
    weights [T, k+S] float32) with the shared experts appended as ids E..E+S-1 with weight 1.

    The logits are computed in float32 from the stored weights: the router GEMM is E x H, negligible next
    to the experts, and a float32 selection agrees with the float64 reference's except at near-ties
    (logit gap ~1e-6), where a bf16 selection would flip experts and fail the check for no real fault.
    """
    logits = x.float() @ router_w.float().T  # [T, E]
    top, ids = torch.topk(logits, top_k, dim=-1)
    p = torch.softmax(top, dim=-1)
    if shared:
        e = router_w.shape[0]
        extra = torch.arange(e, e + shared, device=x.device).expand(x.shape[0], shared)
        ids = torch.cat([ids, extra], dim=1)
        p = torch.cat([p, torch.ones(x.shape[0], shared, device=x.device)], dim=1)
    return ids, p


def active_experts(inputs: Inputs) -> int:
    """Distinct routed experts this input set's routing activates (shared ones not counted)."""
    ids, _ = route(inputs["x"], inputs["router_w"], inputs["top_k"])
    return int(torch.unique(ids).numel())


def _shared_count(router_w, w_gate_up) -> int:
    return w_gate_up.shape[0] - router_w.shape[0]


def reference(x, router_w, w_gate_up, w_down, top_k, **_) -> tuple:
    """float64 throughout; the selection is made on float64 logits of the same rounded inputs.
    Only the chosen experts' weights are widened to float64 (a DeepSeek-V3 layer's 256 experts would
    take 90 GB as float64)."""
    x64, wr = as_float64(x), as_float64(router_w)
    logits = x64 @ wr.T
    top, ids = torch.topk(logits, top_k, dim=-1)
    p = torch.softmax(top, dim=-1)
    f = w_gate_up.shape[1] // 2
    e_routed, shared = router_w.shape[0], _shared_count(router_w, w_gate_up)
    y = torch.zeros_like(x64)
    for e in torch.unique(ids).tolist() + list(range(e_routed, e_routed + shared)):
        if e < e_routed:
            tok, slot = torch.nonzero(ids == e, as_tuple=True)
            weight = p[tok, slot]
        else:
            tok = torch.arange(x64.shape[0], device=x.device)
            weight = torch.ones(x64.shape[0], dtype=torch.float64, device=x.device)
        gu = x64[tok] @ as_float64(w_gate_up[e]).T  # [n, 2F]
        m = gu[:, :f] * torch.sigmoid(gu[:, :f]) * gu[:, f:]
        y.index_add_(0, tok, weight[:, None] * (m @ as_float64(w_down[e]).T))
    return (y,)


def torch_moe_loop(x, router_w, w_gate_up, w_down, top_k, **_) -> torch.Tensor:
    """PyTorch baseline: route, then one gate_up / swiglu / down per active expert over its tokens.
    Reads each active expert's weights once; the per-expert token lists cost a host sync (no CUDA graph)."""
    shared = _shared_count(router_w, w_gate_up)
    ids, p = route(x, router_w, top_k, shared)
    f = w_gate_up.shape[1] // 2
    y = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    flat = ids.flatten()
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=w_gate_up.shape[0]).tolist()  # host sync
    start = 0
    for e, n in enumerate(counts):
        if n == 0:
            continue
        pairs = order[start:start + n]
        start += n
        tok = pairs // ids.shape[1]
        gu = F.linear(x[tok], w_gate_up[e])  # [n, 2F]
        m = F.silu(gu[:, :f]) * gu[:, f:]
        out = F.linear(m, w_down[e])  # [n, H]
        y.index_add_(0, tok, out.float() * p.flatten()[pairs, None])
    return y.to(x.dtype)


def torch_moe_gather(x, router_w, w_gate_up, w_down, top_k, **_) -> torch.Tensor:
    """PyTorch batched: gather each (token, expert) pair's weights and bmm. No host sync (graph-capturable),
    but reads an expert's weights once per token that picks it: T*k copies instead of the active count."""
    shared = _shared_count(router_w, w_gate_up)
    ids, p = route(x, router_w, top_k, shared)
    t, kk = ids.shape
    f = w_gate_up.shape[1] // 2
    xs = x.repeat_interleave(kk, dim=0).unsqueeze(-1)  # [T*k, H, 1]
    gu = torch.bmm(w_gate_up[ids.flatten()], xs).squeeze(-1)  # [T*k, 2F]
    m = F.silu(gu[:, :f]) * gu[:, f:]
    out = torch.bmm(w_down[ids.flatten()], m.unsqueeze(-1)).squeeze(-1)  # [T*k, H]
    return (out.float().view(t, kk, -1) * p[..., None]).sum(1).to(x.dtype)


def triton_moe(x, router_w, w_gate_up, w_down, top_k, **_) -> torch.Tensor:
    from kernels.triton.moe import triton_moe as run  # Triton imported only when this backend runs

    ids, p = route(x, router_w, top_k, _shared_count(router_w, w_gate_up))
    return run(x, ids, p, w_gate_up, w_down)


IMPLS = {"torch": torch_moe_loop, "torch-gather": torch_moe_gather, "triton": triton_moe}


def _bind(fn):
    def run(inputs):
        return fn(**inputs)

    return run


def moe_case(s: MoeShape, dtype: torch.dtype, device, backends=("torch",)) -> OpCase:
    element_bytes = torch.empty((), dtype=dtype).element_size()
    unknown = [b for b in backends if b not in IMPLS]
    if unknown:
        raise ValueError(f"unknown MoE backend {unknown[0]!r}; choose from {', '.join(IMPLS)}")
    return OpCase(
        name="moe", kind="moe", flops=flops(s), bytes=min_bytes(s, element_bytes),
        make_inputs=lambda seed: make_inputs(s, dtype, device, seed),
        reference=lambda inp: reference(**inp),
        impls={b: _bind(IMPLS[b]) for b in backends},
        shape={**s.__dict__, "expected_active_experts": expected_active_experts(s)},
    )

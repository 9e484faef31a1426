"""Routing that resembles traffic: router inputs steered so that the model's own router picks experts drawn
from a stated distribution, and the statistics of the routing a step really got.

Random inputs spread tokens almost uniformly over experts; served traffic concentrates on some. Two
distributions, one mechanism:
  uniform   every expert equally likely;
  zipf:s    expert of popularity rank r (1..E) has probability proportional to 1 / r^s; the ranks are a random
            permutation of the experts (fixed by PERMUTATION_SEED, so the same experts stay hot from step
            to step, as they do in traffic). uniform is zipf:0.
Each token draws its k experts without replacement, one after another, each with probability proportional
to its weight among the experts not yet drawn (torch.multinomial's sampling). For DeepSeek's group-limited
router an expert is drawable only while the token's experts span fewer than topk_group groups, or if it lies
in a group already drawn (a token cannot reach more groups): there the marginal is Zipf shaped within that
constraint, not exactly Zipf.

The routing table is not forced: x is constructed so that the router, computed in full by every
implementation, chooses the drawn experts. Target logits put the drawn experts a margin above the others
(softmax and gpt-oss routers: drawn ~ max(others) + 1 + |N(0, 1)|, others N(0, 1); DeepSeek: drawn logits
2 + |N(0, 0.5)|, others N(-2, 0.5), i.e. sigmoid scores ~0.9 against ~0.1, far beyond its small correction
bias), and x = Wr^+ (target - bias) + a random component in Wr's null space (so x is no smaller than a
random input; needs hidden >= experts, true of every served model). What a step got is then read back from
the router's own output (`routing_stats`), never assumed from the table.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

PERMUTATION_SEED = 20_240_501  # which experts are hot: one fixed random ranking, the same every step


@dataclass(frozen=True)
class Routing:
    kind: str = "uniform"  # uniform | zipf
    s: float = 0.0  # Zipf exponent (0 for uniform)

    @property
    def label(self) -> str:
        return "uniform" if self.kind == "uniform" else f"zipf:{self.s:g}"


DEFAULT_ZIPF_S = 1.0


def parse_routing(text: str) -> Routing:
    """'uniform' | 'zipf' (s = 1.0) | 'zipf:S' with S > 0; ValueError with the reason otherwise."""
    text = text.strip()
    if text == "uniform":
        return Routing()
    if text == "zipf":
        return Routing("zipf", DEFAULT_ZIPF_S)
    if text.startswith("zipf:"):
        try:
            s = float(text[5:])
        except ValueError:
            raise ValueError(f"zipf exponent must be a number, got {text[5:]!r}") from None
        if not 0 < s <= 10:
            raise ValueError(f"zipf exponent must be in (0, 10], got {s:g}")
        return Routing("zipf", s)
    raise ValueError(f"routing must be uniform, zipf or zipf:S, got {text!r}")


def expert_probabilities(routing: Routing, experts: int) -> torch.Tensor:
    """[E] float64: p[e] proportional to 1 / rank(e)^s, ranks a fixed random permutation."""
    g = torch.Generator().manual_seed(PERMUTATION_SEED)
    rank = torch.randperm(experts, generator=g).to(torch.float64) + 1
    p = rank ** -routing.s
    return p / p.sum()


def draw_table(routing: Routing, tokens: int, experts: int, top_k: int, g: torch.Generator,
               n_group: int = 1, topk_group: int = 1) -> torch.Tensor:
    """[T, k] int64: each token's experts (see the module docstring for the draw and the group limit)."""
    p = expert_probabilities(routing, experts)
    per_group = experts // n_group
    group_of = torch.arange(experts) // per_group
    weights = p.expand(tokens, experts).clone()
    ids = torch.empty(tokens, top_k, dtype=torch.int64)
    groups_used = torch.zeros(tokens, n_group, dtype=torch.bool)
    for j in range(top_k):
        allowed = weights.clone()
        if n_group > 1:
            full = groups_used.sum(1) >= topk_group  # no new group for these tokens
            allowed[full[:, None] & ~groups_used[:, group_of]] = 0
        pick = torch.multinomial(allowed, 1, generator=g).squeeze(1)
        ids[:, j] = pick
        weights[torch.arange(tokens), pick] = 0
        groups_used[torch.arange(tokens), group_of[pick]] = True
    return ids


def target_logits(table: torch.Tensor, experts: int, kind: str, g: torch.Generator) -> torch.Tensor:
    """[T, E] float64 router logits (before any router bias) whose choice is `table`, with a margin."""
    tokens = table.shape[0]
    chosen = torch.zeros(tokens, experts, dtype=torch.bool).scatter_(1, table, True)
    noise = torch.randn(tokens, experts, generator=g, dtype=torch.float64)
    if kind == "deepseek_group_sigmoid":
        return torch.where(chosen, 2.0 + 0.5 * noise.abs(), -2.0 + 0.5 * noise)
    others_max = noise.masked_fill(chosen, float("-inf")).max(1, keepdim=True).values
    return torch.where(chosen, others_max + 1.0 + noise.abs(), noise)


def solve_inputs(router_w: torch.Tensor, target: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """[T, H] float64 x with x Wr^T = target exactly (in float64) plus a random null-space part of unit-size
    entries, so x looks like a random input with a routing component."""
    w = router_w.detach().to(device="cpu", dtype=torch.float64)  # [E, H]
    e, h = w.shape
    if h < e:
        raise ValueError(f"steered routing needs hidden >= experts (the router must reach any logits), "
                         f"got hidden {h} < {e} experts")
    gram_inv = torch.linalg.inv(w @ w.T)  # [E, E]
    z = torch.randn(target.shape[0], h, generator=g, dtype=torch.float64)
    null = z - (z @ w.T) @ gram_inv @ w  # z minus its projection onto Wr's row space
    return (target @ gram_inv) @ w + null


def steered_x(routing: Routing, shape, inputs: dict, dtype: torch.dtype, g_device) -> torch.Tensor:
    """x [T, H] in `dtype` on the router weights' device for `shape` (tokens, experts, top_k, router), such
    that the router of `inputs` (router_w, router_bias) chooses a table drawn from `routing`. Random draws
    come from a CPU generator seeded from `g_device`, so the inputs stay a function of the seed."""
    seed = int(torch.randint(0, 2**62, (1,), generator=g_device, device=g_device.device).item())
    g = torch.Generator().manual_seed(seed)
    spec = shape.router
    table = draw_table(routing, shape.tokens, shape.experts, shape.top_k, g, spec.n_group, spec.topk_group)
    target = target_logits(table, shape.experts, spec.kind, g)
    if inputs.get("router_bias") is not None:
        target = target - inputs["router_bias"].detach().to("cpu", torch.float64)
    x = solve_inputs(inputs["router_w"], target, g)
    return x.to(device=inputs["router_w"].device, dtype=dtype)


@dataclass(frozen=True)
class RoutingStats:
    """What one step's routing activated: distinct routed experts, and the heaviest expert's token count."""

    active_experts: int
    max_tokens_per_expert: int


def routing_stats(ids: torch.Tensor, experts: int) -> RoutingStats:
    counts = torch.bincount(ids.flatten().long().cpu(), minlength=experts)
    return RoutingStats(int((counts > 0).sum()), int(counts.max()))

"""The MoE block of kernels/moe_block.py sharded over N ranks by experts (expert parallelism), with
data-parallel attention in front of it, as DeepSeek-V3/R1 serving runs it (DP attention + EP):

  - every rank holds its own T tokens (its attention's output) and runs the router on them;
  - rank r holds routed experts [r E/N, (r+1) E/N) (E/N a rank) and a full copy of the shared experts
    (replicated, as SGLang's and vLLM's EP do: each rank applies them to its own tokens, no traffic);
  - dispatch: each (token, chosen expert) pair's x row goes to the rank holding that expert (one row per
    pair, as an all_to_all_single token permutation sends it; DeepEP-style deduplication of a token sent
    to two experts of one rank is not done), with the expert's local index;
  - the rank runs its experts over the rows it received, and the combine sends each output row back to
    the rank the token came from, which weights it by the router's weight and sums it with the shared MLP.

The collective is passed in, `AllToAll(send, send_splits, recv_splits) -> received` with the semantics of
torch.distributed.all_to_all_single (rows to rank j: send[sum(send_splits[:j]) : ... + send_splits[j]]),
so this module runs on a process group, or on one process with a stand-in that moves rows between the
ranks' shares. The reference of the sharded block is the one-process block (moe_block.reference) on the
concatenation of every rank's tokens: rank r's output must equal rows [r T, (r+1) T) of it.

Work per rank counts what that rank does at this routing: the router and the shared MLP on its T tokens,
its experts on the pairs it received; bytes: its own x in and y out, the router weights, its active local
experts once, the shared MLP, and the received rows read and their outputs written. The all-to-all bytes
are what leaves or reaches the rank from the others (its rows to itself are a local copy).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from kernels import moe_block, moe_router
from kernels.dtypes import generator, randn
from kernels.moe_block import MoeBlockShape, activate
from kernels.op import Inputs

AllToAll = Callable[[torch.Tensor, list, list], torch.Tensor]
INDEX_BYTES = 8  # int64 local expert index sent beside each dispatched row


@dataclass(frozen=True)
class EpShape:
    """`block` at one rank's tokens (block.tokens = T, the rank's own), sharded over `ranks` by experts."""

    block: MoeBlockShape
    ranks: int

    def __post_init__(self):
        check_ranks(self.block.experts, self.ranks)

    @property
    def experts_per_rank(self) -> int:
        return self.block.experts // self.ranks

    @property
    def group_block(self) -> MoeBlockShape:
        """The one-process block over every rank's tokens (N T)."""
        return replace(self.block, tokens=self.block.tokens * self.ranks)

    def local_experts(self, rank: int) -> range:
        e = self.experts_per_rank
        return range(rank * e, (rank + 1) * e)


def check_ranks(experts: int, ranks: int) -> None:
    """ValueError with the reason where `experts` routed experts cannot be sharded over `ranks` ranks."""
    if ranks < 1:
        raise ValueError(f"expert parallel needs at least 1 rank, got {ranks}")
    if ranks > experts:
        raise ValueError(f"{ranks} ranks but only {experts} routed experts: each rank needs at least one")
    if experts % ranks:
        raise ValueError(f"{experts} routed experts do not divide over {ranks} ranks (E/N experts a rank)")


EXPERT_KEYS = ("w_gate_up", "w_down", "b_gate_up", "b_down")


def shard_inputs(s: EpShape, group_inputs: Inputs, rank: int) -> Inputs:
    """Rank `rank`'s inputs from the one-process block's (moe_block.make_inputs of s.group_block): its own
    T tokens, its E/N experts, the router and shared experts whole (replicated)."""
    t = s.block.tokens
    local = s.local_experts(rank)
    out = {k: v for k, v in group_inputs.items() if k not in EXPERT_KEYS}
    out["x"] = group_inputs["x"][rank * t:(rank + 1) * t].contiguous()
    for k in EXPERT_KEYS:
        v = group_inputs[k]
        out[k] = None if v is None else v[local.start:local.stop].contiguous()
    return out


def draw_local_experts(s: EpShape, dtype: torch.dtype, device, seed: int) -> Inputs:
    """One rank's E/N experts and the shared MLP drawn alone, at moe_block's scales (for timing one rank's
    share without the other ranks' weights in memory; not the one-process block's weights, which the parity
    check uses)."""
    b, n, fs = s.block, s.experts_per_rank, s.block.shared_width
    g = generator(seed + 104_729, device)
    out = {"w_gate_up": randn((n, 2 * b.ffn, b.hidden), dtype, device, g, scale=b.hidden**-0.5),
           "w_down": randn((n, b.hidden, b.ffn), dtype, device, g, scale=b.ffn**-0.5),
           "b_gate_up": None, "b_down": None, "w_shared_gate_up": None, "w_shared_down": None}
    if b.expert_bias:
        out["b_gate_up"] = randn((n, 2 * b.ffn), dtype, device, g, scale=0.5)
        out["b_down"] = randn((n, b.hidden), dtype, device, g, scale=0.5)
    if fs:
        out["w_shared_gate_up"] = randn((2 * fs, b.hidden), dtype, device, g, scale=b.hidden**-0.5)
        out["w_shared_down"] = randn((b.hidden, fs), dtype, device, g, scale=fs**-0.5)
    return out


@dataclass
class Dispatch:
    """One rank's routing, grouped by the rank each pair goes to."""

    order: torch.Tensor  # [T k] pair indices (token * k + slot) sorted by destination rank
    send_splits: list  # pairs to each rank
    recv_splits: list  # pairs from each rank
    weights: torch.Tensor  # [T k] router weights, pair order


def route_and_plan(s: EpShape, inp: Inputs, a2a: AllToAll) -> tuple[Dispatch, torch.Tensor]:
    """Run the router on this rank's tokens; (the dispatch plan, the local expert index of every pair in
    `order`). The per-rank counts are exchanged with one all-to-all of N integers."""
    b = s.block
    # float64 inputs (the parity gate) route on float64 logits, as the reference does; else float32 logits
    route = moe_router.route_reference if inp["x"].dtype == torch.float64 else moe_router.route
    ids, p = route(inp["x"], inp["router_w"], b.router, b.top_k, inp["router_bias"], inp["correction_bias"])
    flat = ids.flatten()
    dest = torch.div(flat, s.experts_per_rank, rounding_mode="floor")
    order = torch.argsort(dest, stable=True)
    send = torch.bincount(dest, minlength=s.ranks)
    recv = a2a(send, [1] * s.ranks, [1] * s.ranks)
    local_ids = flat[order] - dest[order] * s.experts_per_rank
    return Dispatch(order, send.tolist(), recv.tolist(), p.flatten()), local_ids  # host sync: split sizes


def dispatch(s: EpShape, inp: Inputs, plan: Dispatch, local_ids: torch.Tensor,
             a2a: AllToAll) -> tuple[torch.Tensor, torch.Tensor]:
    """(received x rows [R, H], their local expert indices [R]): two all-to-alls, rows and indices."""
    rows = inp["x"][torch.div(plan.order, s.block.top_k, rounding_mode="floor")]
    got_rows = a2a(rows, plan.send_splits, plan.recv_splits)
    got_ids = a2a(local_ids, plan.send_splits, plan.recv_splits)
    return got_rows, got_ids


def local_experts(s: EpShape, inp: Inputs, rows: torch.Tensor, local_ids: torch.Tensor) -> torch.Tensor:
    """[R, H]: each received row through its expert (unweighted), in the order received; one gate_up /
    activation / down per local expert over its rows (moe_block.torch_block_loop's way)."""
    b = s.block
    out = torch.empty_like(rows)
    counts = torch.bincount(local_ids, minlength=s.experts_per_rank).tolist()  # host sync
    order = torch.argsort(local_ids, stable=True)
    start = 0
    for e, n in enumerate(counts):
        if n == 0:
            continue
        idx = order[start:start + n]
        start += n
        b_gu = inp["b_gate_up"][e] if b.expert_bias else None
        b_d = inp["b_down"][e] if b.expert_bias else None
        m = activate(F.linear(rows[idx], inp["w_gate_up"][e], b_gu), b.activation, b.limit)
        out[idx] = F.linear(m, inp["w_down"][e], b_d)
    return out


def combine(s: EpShape, inp: Inputs, plan: Dispatch, expert_out: torch.Tensor, a2a: AllToAll) -> torch.Tensor:
    """[T, H]: the expert outputs sent back (the reverse all-to-all), weighted, summed per token, plus the
    shared MLP on this rank's tokens; accumulated in float32 (float64 for float64 inputs)."""
    x = inp["x"]
    back = a2a(expert_out, plan.recv_splits, plan.send_splits)  # [T k] rows in `order`
    acc = torch.promote_types(x.dtype, torch.float32)
    y = torch.zeros(x.shape, dtype=acc, device=x.device)
    tok = torch.div(plan.order, s.block.top_k, rounding_mode="floor")
    y.index_add_(0, tok, back.to(acc) * plan.weights[plan.order, None].to(acc))
    if s.block.shared_width:
        y += shared_mlp(x, inp).to(acc)
    return y.to(x.dtype)


def shared_mlp(x: torch.Tensor, inp: Inputs) -> torch.Tensor:
    """The shared experts (replicated on every rank) on this rank's tokens."""
    return F.linear(activate(F.linear(x, inp["w_shared_gate_up"]), "swiglu", 0.0), inp["w_shared_down"])


def ep_forward(s: EpShape, inp: Inputs, a2a: AllToAll) -> torch.Tensor:
    """This rank's block output [T, H] for its own tokens: route, dispatch, its experts, combine."""
    plan, local_ids = route_and_plan(s, inp, a2a)
    rows, ids = dispatch(s, inp, plan, local_ids, a2a)
    return combine(s, inp, plan, local_experts(s, inp, rows, ids), a2a)


def reference(s: EpShape, group_inputs: Inputs, rank: int) -> torch.Tensor:
    """float64: rows [r T, (r+1) T) of the one-process block on every rank's tokens."""
    t = s.block.tokens
    return moe_block.reference(s.group_block, group_inputs)[0][rank * t:(rank + 1) * t]


# ---------------------------------------------------------------------------------------------------
# The traffic and work of every rank at one routing (the group's routing, known to one process)


@dataclass(frozen=True)
class RankTraffic:
    """One rank's share of a step: pairs it sends to (received from) other ranks, pairs it computes, and the
    distinct local experts those activate."""

    rank: int
    sent_off_rank: int
    received_off_rank: int
    received_pairs: int  # including its own tokens' pairs to its own experts
    active_local_experts: int


def group_traffic(s: EpShape, ids: torch.Tensor) -> list[RankTraffic]:
    """Every rank's traffic from the group's routing `ids` [N T, k] (rank r's tokens rows [r T, (r+1) T))."""
    n, t, e = s.ranks, s.block.tokens, s.experts_per_rank
    ids = ids.cpu()
    src = (torch.arange(ids.shape[0]) // t)[:, None].expand_as(ids).flatten()
    dest = (ids // e).flatten()
    matrix = torch.zeros(n, n, dtype=torch.int64)
    matrix.index_put_((src, dest), torch.ones_like(src), accumulate=True)  # pairs from rank i to rank j
    counts = torch.bincount(ids.flatten(), minlength=s.block.experts).view(n, e)
    out = []
    for r in range(n):
        out.append(RankTraffic(r, int(matrix[r].sum() - matrix[r, r]), int(matrix[:, r].sum() - matrix[r, r]),
                               int(matrix[:, r].sum()), int((counts[r] > 0).sum())))
    return out


def dispatch_bytes(s: EpShape, pairs: int, element_bytes: int) -> int:
    """Bytes of `pairs` dispatched rows: the x row and its local expert index."""
    return pairs * (s.block.hidden * element_bytes + INDEX_BYTES)


def combine_bytes(s: EpShape, pairs: int, element_bytes: int) -> int:
    return pairs * s.block.hidden * element_bytes


def rank_flops(s: EpShape, received_pairs: int) -> int:
    """Router and shared MLP on the rank's T tokens, its experts on the pairs it received."""
    b = s.block
    return moe_router.flops(b.router_shape) + received_pairs * moe_block.pair_flops(b) + b.tokens * \
        moe_block.shared_flops(b)


def rank_min_bytes(s: EpShape, element_bytes: int, traffic: RankTraffic) -> int:
    """moe_block.min_bytes at this rank's T tokens and active local experts, plus the received rows read and
    their outputs written."""
    return moe_block.min_bytes(s.block, element_bytes, traffic.active_local_experts) + \
        2 * traffic.received_pairs * s.block.hidden * element_bytes


# ---------------------------------------------------------------------------------------------------
# The modelled all-to-all (where the group is smaller than the deployment)


def alltoall_busbw(off_rank_bytes: int, seconds: float) -> float:
    """Bus bandwidth of a measured all-to-all, NCCL-tests convention (busbw = algbw (n-1)/n, algbw = the
    rank's whole send / time): its (n-1)/n share is exactly what leaves the rank when the send is spread
    evenly, so busbw = the bytes that left the rank / time."""
    return off_rank_bytes / seconds if seconds > 0 else 0.0


def modelled_alltoall_seconds(traffic: list[RankTraffic], payload: Callable[[int], int], busbw: float,
                              latency_s: float = 0.0) -> float:
    """The slowest rank's all-to-all: max over ranks of the bytes it sends or receives off-rank (payload of
    that many pairs) / busbw, plus a fixed latency. Every rank waits for the slowest in the collective."""
    if busbw <= 0:
        raise ValueError(f"bus bandwidth must be positive, got {busbw}")
    worst = max(max(payload(r.sent_off_rank), payload(r.received_off_rank)) for r in traffic)
    return latency_s + worst / busbw


"""Expert parallelism for `tokenbench moe --ep N` (kernels/moe_expert_parallel.py: E/N experts a rank, data-
parallel attention, dispatch and combine by all-to-all, shared experts replicated on every rank).

Two ways, said in the output:
  measured  (`--ep N`, a torchrun group of N ranks: `python -m bench.sweeps.ep_sweep`): every rank first
            checks its sharded block against the one-process block in float64 (and the timed dtype against
            its float64 reference), valid only when every rank passes; then times on every rank the whole
            sharded block (its collectives inside), its experts alone at the rows it received, and the
            dispatch and combine all-to-alls alone at the step's split sizes. The layer is the slowest rank's.
  modelled  (`--ep N --ep-measure 1`, one process pricing an N-device deployment): the process draws every
            rank's tokens and routes them all (the group's routing, exactly), then times one device's share:
            the router and shared MLP on its T tokens and its E/N experts over the pairs routed to the busiest
            rank; the dispatch and combine are MODELLED: the busiest rank's off-rank bytes / a bus bandwidth
            (--ep-busbw, or the catalog NVLink figure below with its source).
Points per GPU: each rank serves its own T tokens a step (DP attention), so tokens/s per GPU over the MoE
layers = T / (moe_layers x layer seconds); attention and dense layers are not in it.
"""
from __future__ import annotations

import functools
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from bench.errors import UserError
from kernels import moe_block, moe_expert_parallel as ep
from kernels.dtypes import TOLERANCE, torch_dtype
from kernels.moe_routing import Routing

# NVIDIA H100 / H200 SXM datasheets: fourth-generation NVLink 900 GB/s per GPU (both directions together),
# i.e. 450 GB/s each way; an all-to-all through NVSwitch moves at most this, so a time from it is a floor.
CATALOG_LINK = {"H100": 450e9, "H200": 450e9}
CATALOG_LINK_SOURCE = ("NVIDIA H100 and H200 Tensor Core GPU datasheets: NVLink 900 GB/s per GPU, 450 GB/s "
                       "each way (nominal; measured all-to-all bus bandwidth is lower)")
FLOAT64_GATE = 1e-12
# The float64 sharded-vs-one-process comparison builds every expert in float64 on every rank (DeepSeek-R1's 256
# experts of one layer: 90 GB); above this the timed dtype's check against the float64 reference stands alone.
FLOAT64_GATE_MAX_BYTES = 4 * 2**30


def all_to_all_rows(send: torch.Tensor, send_splits: list, recv_splits: list) -> torch.Tensor:
    """torch.distributed.all_to_all_single on rows (ep.AllToAll)."""
    send = send.contiguous()
    out = send.new_empty((sum(recv_splits),) + tuple(send.shape[1:]))
    dist.all_to_all_single(out, send, recv_splits, send_splits)
    return out


def ep_shape(model, tokens: int, kind, ranks: int) -> ep.EpShape:
    from bench.sweeps.moe_sweep import block_shape

    try:
        return ep.EpShape(block_shape(model, tokens, kind), ranks)
    except ValueError as exc:
        raise UserError(f"--ep {ranks}: {model.name}: {exc}") from None


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    out64, ref = out.detach().double().cpu(), ref.detach().double().cpu()
    if not torch.isfinite(out64).all():
        return float("nan")
    return ((out64 - ref).norm() / ref.norm()).item()


# ---------------------------------------------------------------------------------------------------
# Measured: on the group


def gate_on_rank(s: ep.EpShape, dtype_name: str, device, rank: int, seed: int, routing: Routing | None) -> dict:
    """This rank's sharded output against the one-process block: in float64 (must agree to rounding) and in
    the timed dtype (against the float64 reference of the same rounded inputs, the dtype's tolerance)."""
    dev = device.torch_device
    b = s.block
    float64_bytes = 8 * b.experts * (3 * b.hidden * b.ffn + ((2 * b.ffn + b.hidden) if b.expert_bias else 0))
    err64 = None
    if float64_bytes <= FLOAT64_GATE_MAX_BYTES:
        g64 = moe_block.make_inputs(s.group_block, torch.float64, dev, seed, routing)
        err64 = rel_error(ep.ep_forward(s, ep.shard_inputs(s, g64, rank), all_to_all_rows),
                          ep.reference(s, g64, rank))
        del g64
    gd = moe_block.make_inputs(s.group_block, torch_dtype(dtype_name), dev, seed, routing)
    err = rel_error(ep.ep_forward(s, ep.shard_inputs(s, gd, rank), all_to_all_rows), ep.reference(s, gd, rank))
    return {"rel_error_float64": err64, "rel_error": err, "tolerance": TOLERANCE[dtype_name],
            "float64_gate": "ran" if err64 is not None else
            f"not run: every expert in float64 is {float64_bytes / 2**30:.1f} GiB a rank",
            "passed": (err64 is None or err64 <= FLOAT64_GATE) and err <= TOLERANCE[dtype_name]}


def measure_on_rank(s: ep.EpShape, dtype_name: str, device, rank: int, budget_s: float, seed: int,
                    routing: Routing | None) -> dict:
    """The timings of one rank (every rank calls it together: the collective timers run the same samples)."""
    from bench.sweeps.tp_sweep import every_rank, time_collective, time_local

    out = gate_on_rank(s, dtype_name, device, rank, seed, routing)
    out["valid"] = every_rank(out["passed"], device)
    if not out["valid"]:
        return out
    dt = torch_dtype(dtype_name)
    eb = dt.itemsize
    g = moe_block.make_inputs(s.group_block, dt, device.torch_device, seed, routing)
    inp = ep.shard_inputs(s, g, rank)
    del g  # every rank keeps only its share
    plan, local_ids = ep.route_and_plan(s, inp, all_to_all_rows)
    rows, ids = ep.dispatch(s, inp, plan, local_ids, all_to_all_rows)
    expert_out = ep.local_experts(s, inp, rows, ids)
    traffic = ep.RankTraffic(rank, sum(plan.send_splits) - plan.send_splits[rank],
                             sum(plan.recv_splits) - plan.recv_splits[rank], sum(plan.recv_splits),
                             int(torch.unique(ids).numel()))
    # warm caches: the flusher is not used (the block's weights at these sizes are what the rank re-reads)
    layer = time_collective(lambda: ep.ep_forward(s, inp, all_to_all_rows), device, budget_s, None)
    experts = time_local(lambda: ep.local_experts(s, inp, rows, ids), device, budget_s, None)
    disp = time_collective(lambda: ep.dispatch(s, inp, plan, local_ids, all_to_all_rows), device, budget_s, None)
    comb = time_collective(lambda: all_to_all_rows(expert_out, plan.recv_splits, plan.send_splits), device,
                           budget_s, None)
    out.update(traffic=traffic.__dict__, layer_seconds=layer.p50, experts_seconds=experts.p50,
               dispatch_seconds=disp.p50, combine_seconds=comb.p50,
               dispatch_bytes_off_rank=ep.dispatch_bytes(s, max(traffic.sent_off_rank, traffic.received_off_rank),
                                                         eb),
               combine_bytes_off_rank=ep.combine_bytes(s, max(traffic.sent_off_rank, traffic.received_off_rank), eb),
               flops=ep.rank_flops(s, traffic.received_pairs), bytes=ep.rank_min_bytes(s, eb, traffic))
    return out


@dataclass(frozen=True)
class EpResult:
    """One token count's expert-parallel layer: the per-rank parts and the composed layer, with which parts were
    measured and which modelled."""

    tokens_per_rank: int
    ranks: int
    layer_seconds: float  # the slowest rank's (measured), or composed from parts (modelled)
    experts_seconds: float
    front_seconds: float | None  # router + shared MLP on the rank's tokens (modelled path only)
    dispatch_seconds: float
    combine_seconds: float
    tokens_per_s_per_gpu: float  # over the MoE layers
    moe_layers: int
    measured: str
    modelled: str
    busbw_gbps: float | None
    busbw_source: str
    per_rank: list


def compose_group(s: ep.EpShape, model, per_rank: list) -> EpResult:
    """The group's layer: the slowest rank's whole sharded block; its parts the slowest rank's each."""
    layer = max(r["layer_seconds"] for r in per_rank)
    moved = max(r["dispatch_bytes_off_rank"] for r in per_rank)
    disp = max(r["dispatch_seconds"] for r in per_rank)
    return EpResult(s.block.tokens, s.ranks, layer, max(r["experts_seconds"] for r in per_rank), None, disp,
                    max(r["combine_seconds"] for r in per_rank),
                    s.block.tokens / (model.moe_layers * layer), model.moe_layers,
                    measured=f"all of it, on {s.ranks} ranks: the sharded block (collectives inside), experts, "
                             "dispatch and combine all-to-alls", modelled="nothing",
                    busbw_gbps=ep.alltoall_busbw(moved, disp) / 1e9 if disp else None,
                    busbw_source="the dispatch all-to-all measured here (busiest rank's off-rank bytes / time)",
                    per_rank=per_rank)


# ---------------------------------------------------------------------------------------------------
# Modelled: one process pricing N devices


def link_bandwidth(device, given_gbps: float | None) -> tuple[float, str]:
    """(bus bandwidth in bytes/s, its source): --ep-busbw, else the catalog NVLink figure for this GPU."""
    if given_gbps is not None:
        return given_gbps * 1e9, "--ep-busbw (given)"
    for name, bw in CATALOG_LINK.items():
        if name in device.name:
            return bw, CATALOG_LINK_SOURCE
    raise UserError(f"--ep-measure 1 models the all-to-all from a bus bandwidth; none is known for {device.name}: "
                    "give --ep-busbw GB/s (e.g. the busbw `tokenbench moe --ep 2` measures on your group)")


def measure_one_device(s: ep.EpShape, model, dtype_name: str, device, budget_s: float, seed: int,
                       routing: Routing | None, busbw: float, busbw_source: str) -> tuple[EpResult, dict]:
    """One device's share timed in this process, the all-to-alls modelled; (result, its check)."""
    from bench.sweeps.tp_sweep import time_local

    dt = torch_dtype(dtype_name)
    dev = device.torch_device
    eb = dt.itemsize
    b, t = s.block, s.block.tokens
    g = moe_block.routing_inputs(s.group_block, dt, dev, seed, routing)  # every rank's tokens, no experts
    from kernels import moe_router

    ids, _ = moe_router.route(g["x"], g["router_w"], b.router, b.top_k, g["router_bias"], g["correction_bias"])
    traffic = ep.group_traffic(s, ids)
    busiest = max(traffic, key=lambda r: r.received_pairs)
    flat = ids.flatten()
    mine = torch.nonzero(torch.div(flat, s.experts_per_rank, rounding_mode="floor") == busiest.rank).squeeze(1)
    rows = g["x"][torch.div(mine, b.top_k, rounding_mode="floor")]
    local_ids = flat[mine] - busiest.rank * s.experts_per_rank
    weights = ep.draw_local_experts(s, dt, dev, seed)
    # the float64 check of the timed share: the same rows and experts widened
    got = ep.local_experts(s, weights, rows, local_ids)
    want = ep.local_experts(s, {k: None if v is None else v.double() for k, v in weights.items()}, rows.double(),
                            local_ids)
    err = rel_error(got, want)
    check = {"rel_error": err, "tolerance": TOLERANCE[dtype_name], "valid": err <= TOLERANCE[dtype_name]}
    if not check["valid"]:
        raise UserError(f"--ep-measure 1: one device's experts differ from float64 by {err:.2e} (tolerance "
                        f"{TOLERANCE[dtype_name]:.0e}); nothing timed")
    own = {k: v[:t] if k == "x" else v for k, v in g.items()}

    def front():
        moe_router.route(own["x"], own["router_w"], b.router, b.top_k, own["router_bias"], own["correction_bias"])
        if b.shared_width:
            ep.shared_mlp(own["x"], weights)

    experts = time_local(lambda: ep.local_experts(s, weights, rows, local_ids), device, budget_s, None).p50
    front_s = time_local(front, device, budget_s, None).p50
    disp = ep.modelled_alltoall_seconds(traffic, lambda n: ep.dispatch_bytes(s, n, eb), busbw)
    comb = ep.modelled_alltoall_seconds(traffic, lambda n: ep.combine_bytes(s, n, eb), busbw)
    layer = front_s + experts + disp + comb
    per_rank = [{"traffic": r.__dict__, "flops": ep.rank_flops(s, r.received_pairs),
                 "bytes": ep.rank_min_bytes(s, eb, r)} for r in traffic]
    result = EpResult(t, s.ranks, layer, experts, front_s, disp, comb, t / (model.moe_layers * layer),
                      model.moe_layers,
                      measured=f"one device's share in this process: router + shared MLP on its {t} tokens, its "
                               f"{s.experts_per_rank} experts over the {busiest.received_pairs} pairs routed to the "
                               f"busiest rank ({busiest.rank})",
                      modelled="dispatch and combine all-to-alls: busiest rank's off-rank bytes / bus bandwidth; "
                               "the layer = front + experts + dispatch + combine, with no overlap",
                      busbw_gbps=busbw / 1e9, busbw_source=busbw_source, per_rank=per_rank)
    return result, check


def result_line(r: EpResult, unit: str) -> str:
    front = f"router+shared {r.front_seconds * 1e6:.1f} us, " if r.front_seconds is not None else ""
    bw = f"; busbw {r.busbw_gbps:.4g} GB/s ({r.busbw_source})" if r.busbw_gbps is not None else ""
    return (f"T={r.tokens_per_rank}/rank ep={r.ranks}: layer {r.layer_seconds * 1e6:.1f} us ({front}experts "
            f"{r.experts_seconds * 1e6:.1f} us, dispatch {r.dispatch_seconds * 1e6:.1f} us, combine "
            f"{r.combine_seconds * 1e6:.1f} us); {r.tokens_per_s_per_gpu:.4g} tok/s per {unit} over the "
            f"{r.moe_layers} MoE layers{bw}\n    measured: {r.measured}\n    modelled: {r.modelled}")


# ---------------------------------------------------------------------------------------------------
# The worker: python -m bench.sweeps.ep_sweep


def add_worker_arguments(p) -> None:
    p.add_argument("--model", required=True, help="an MoE model: a catalog name or a config.json path")
    p.add_argument("--batch", default="1,8", help="comma list of tokens per rank (default 1,8)")
    p.add_argument("--routing", default="uniform", help="uniform | zipf[:S] (default uniform)")
    p.add_argument("--dtype", help="bf16 | fp16 | fp32 (default bf16 on GPU, fp32 on CPU)")
    p.add_argument("--device", default="auto", help="auto | cuda | cpu")
    p.add_argument("--budget-s", default="1.0", help="timing budget per timed item in seconds (default 1.0)")
    p.add_argument("--seed", type=int, default=0, help="weights and inputs seed (default 0)")
    p.add_argument("--json", action="store_true", help="rank 0 prints the results as JSON on stdout")


def run(args) -> int:
    from bench.sweeps.torchrun_worker import run_on_group

    return run_on_group(args.device, functools.partial(_measure_on_group, args))


def _measure_on_group(args, rank: int, world: int, device) -> int:
    import json

    from bench.configs.model_configs import get_model
    from bench.parsing import choice, positive_float, positive_int_list
    from bench.sweeps.moe_sweep import block_kind
    from kernels.dtypes import TORCH_DTYPES
    from kernels.moe_routing import parse_routing

    model = get_model(args.model)
    if not model.is_moe:
        raise UserError(f"{model.name} is dense: --ep shards a mixture of experts")
    dtype = choice(args.dtype or ("bf16" if device.kind == "cuda" else "fp32"), tuple(TORCH_DTYPES), "dtype")
    tokens = positive_int_list(args.batch, "--batch")
    budget = positive_float(args.budget_s, "--budget-s")
    try:
        routing, kind = parse_routing(args.routing), block_kind(model, None)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    shapes = [ep_shape(model, t, kind, world) for t in tokens]
    unit = "GPU" if device.kind == "cuda" else "rank (CPU process)"
    if rank == 0:
        print(f"tokenbench moe --ep {world}: {world} ranks ({dist.get_backend()}) on {device.name}; {model.name} "
              f"({model.experts} experts, {model.experts // world} a rank, +{model.shared_experts} shared "
              f"replicated on every rank), {dtype}, routing {routing.label}", file=sys.stderr)
    results, status = [], 0
    for s in shapes:
        mine = measure_on_rank(s, dtype, device, rank, budget, args.seed, routing)
        gathered = [None] * world
        dist.all_gather_object(gathered, mine)
        if rank != 0:
            continue
        checks = ", ".join(f"rank {i}: float64 " + (f"{r['rel_error_float64']:.1e}" if r["rel_error_float64"]
                                                      is not None else f"({r['float64_gate']})")
                           + f", {dtype} {r['rel_error']:.1e}" for i, r in enumerate(gathered))
        if not gathered[0]["valid"]:
            print(f"  T={s.block.tokens}/rank: sharded block differs from the one-process block ({checks}); "
                  "not timed", file=sys.stderr)
            status = 1
            continue
        print(f"  T={s.block.tokens}/rank: sharded = one-process ({checks})", file=sys.stderr)
        result = compose_group(s, model, gathered)
        results.append(result)
        print("  " + result_line(result, unit), file=sys.stderr)
    if rank == 0 and args.json:
        print(json.dumps([r.__dict__ for r in results], indent=1))
    return status


def main(argv=None) -> int:
    from bench.sweeps.torchrun_worker import worker_main

    return worker_main(argv, "bench.sweeps.ep_sweep", __doc__, add_worker_arguments, run, "moe")


if __name__ == "__main__":
    sys.exit(main())

"""One spawn of two gloo ranks on the CPU for every test that compares a sharded computation with the
one-process one (tests/test_tp.py, tests/test_workload_tp.py, tests/test_moe_expert_parallel.py): starting two
interpreters that import torch costs seconds, the comparisons themselves milliseconds. Rank 0 saves what each
test asserts on; the session fixture `gloo_pair` in tests/conftest.py runs it once."""
from __future__ import annotations

import socket

import torch
import torch.distributed as dist

from bench.configs.model_configs import get_model
from bench.sweeps import tp_sweep
from kernels.backends import parse_backend
from kernels.layer import layer_forward, make_layer_inputs
from kernels.prefill_layer import Chunk, make_prefill_inputs, prefill_forward

# (decode rows, context, chunk): a prefill chunk continuing a prefix, a mixed step, a prefill of two prompts
PREFILL_CASES = [(0, 0, Chunk(1, 5, 3)), (3, 9, Chunk(1, 4, 2)), (0, 0, Chunk(2, 6, 0))]


def free_ports(n: int) -> list[int]:
    """n distinct free ports of 127.0.0.1 (all held open while choosing, so none repeats)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def prefill_compare(rank: int, world: int) -> list | None:
    """Per case, the group's (y, r2) beside the one-process layer's on the same inputs (rank 0; None elsewhere)."""
    d = get_model("tiny").layer_dims
    dl, _, _ = tp_sweep.local_dims(d, rank, world)
    backends = parse_backend("torch")
    saved = []
    for decode_rows, context, chunk in PREFILL_CASES:
        full = make_prefill_inputs(d, chunk, torch.float32, "cpu", 5, decode_rows, context)
        sharded = tp_sweep.shard_inputs(d, full, rank, world)
        got = prefill_forward(dl, backends, reduce=tp_sweep.all_reduce_sum, **sharded)
        if rank == 0:
            saved.append({"tp": got, "one": prefill_forward(d, backends, **full),
                          "kv_heads": sharded["k_cache"].shape[1],
                          "decode_kv_heads": sharded["decode_k_cache"].shape[1] if decode_rows else None})
    return saved if rank == 0 else None


def layer_compare(rank: int, world: int, init_method: str, out_path: str) -> None:
    """The gloo group's decode-layer output (tiny, batch 3, context 9, float32), saved by rank 0 beside the
    one-process output of kernels.layer.layer_forward on the same weights and inputs; a group of its own."""
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world)
    try:
        d = get_model("tiny").layer_dims
        full = make_layer_inputs(d, 3, 9, torch.float32, "cpu", seed=3)
        dl, _, _ = tp_sweep.local_dims(d, rank, world)
        backends = parse_backend("torch")
        y, r2 = tp_sweep.tp_layer_forward(dl, backends, tp_sweep.all_reduce_sum,
                                          **tp_sweep.shard_inputs(d, full, rank, world))
        if rank == 0:
            y1, r21 = layer_forward(d, backends, **full)
            torch.save({"tp": (y, r2), "one": (y1, r21)}, out_path)
    finally:
        dist.destroy_process_group()


def layout_sum(rank: int) -> torch.Tensor:
    value = torch.arange(12, dtype=torch.float32).reshape(3, 4) * (rank + 1)
    # rank 1 holds the same logical tensor transposed in memory (as the CPU row-block GEMM returns it)
    t = value if rank == 0 else value.T.contiguous().T
    return tp_sweep.all_reduce_sum(t)


# (model, tokens per rank, routing): the three routers, a lone token, skewed (uneven) splits
EP_CASES = [("tiny-qwen3-moe", 5, None), ("tiny-deepseek-v3", 4, None), ("tiny-gpt-oss", 3, None),
            ("tiny-qwen3-moe", 1, None), ("tiny-deepseek-v3", 16, "zipf:2")]


def ep_compare(rank: int, world: int) -> list:
    """Per EP case, every rank's (float64 sharded output, its rows of the one-process float64 block, the
    production gate's verdict) gathered on every rank (bench/sweeps/ep_sweep.py, kernels/moe_expert_parallel.py)."""
    from types import SimpleNamespace

    from bench.sweeps import ep_sweep
    from bench.sweeps.moe_sweep import block_kind
    from kernels import moe_block, moe_expert_parallel as ep
    from kernels.moe_routing import parse_routing

    out = []
    for name, tokens, routing_text in EP_CASES:
        model = get_model(name)
        routing = parse_routing(routing_text) if routing_text else None
        s = ep_sweep.ep_shape(model, tokens, block_kind(model, None), world)
        g64 = moe_block.make_inputs(s.group_block, torch.float64, "cpu", 11, routing)
        y = ep.ep_forward(s, ep.shard_inputs(s, g64, rank), ep_sweep.all_to_all_rows)
        gate = ep_sweep.gate_on_rank(s, "fp32", SimpleNamespace(torch_device="cpu"), rank, 11, routing)
        plan, _ = ep.route_and_plan(s, ep.shard_inputs(s, g64, rank), ep_sweep.all_to_all_rows)
        # the other rank's experts in place of this rank's: the check must see it
        swapped = {**ep.shard_inputs(s, g64, rank),
                   **{k: v for k, v in ep.shard_inputs(s, g64, world - 1 - rank).items() if k in ep.EXPERT_KEYS}}
        wrong = ep_sweep.rel_error(ep.ep_forward(s, swapped, ep_sweep.all_to_all_rows), ep.reference(s, g64, rank))
        mine = {"y": y, "ref": ep.reference(s, g64, rank), "gate": gate, "send": plan.send_splits,
                "wrong_shard_error": wrong}
        every = [None] * world
        dist.all_gather_object(every, mine)
        out.append(every)
    return out


def ep_measure(rank: int, world: int) -> dict | None:
    """The group path's timings (bench/sweeps/ep_sweep.measure_on_rank, a tiny budget) composed on rank 0."""
    from types import SimpleNamespace

    from bench.sweeps import ep_sweep
    from bench.sweeps.moe_sweep import block_kind

    model = get_model("tiny-deepseek-v3")
    s = ep_sweep.ep_shape(model, 4, block_kind(model, None), world)
    mine = ep_sweep.measure_on_rank(s, "fp32", SimpleNamespace(kind="cpu", torch_device="cpu"), rank, 0.01, 11,
                                    None)
    every = [None] * world
    dist.all_gather_object(every, mine)
    return ep_sweep.compose_group(s, model, every).__dict__ if rank == 0 else None


def worker(rank: int, world: int, layer_init: str, init_method: str, out_dir: str) -> None:
    # the decode layer, in a group of its own, torn down when it returns
    layer_compare(rank, world, layer_init, f"{out_dir}/layer.pt")
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world)
    try:
        prefill = prefill_compare(rank, world)
        summed = layout_sum(rank)
        expert_parallel = ep_compare(rank, world)
        ep_timed = ep_measure(rank, world)
        if rank == 0:
            torch.save({"prefill": prefill, "layout_sum": summed, "ep": expert_parallel, "ep_timed": ep_timed},
                       f"{out_dir}/group.pt")
        # every rank waits for the other before teardown: under load, a rank that destroyed its group while the
        # other was still in a collective aborted it (SIGABRT, "terminate called without an active exception")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run(out_dir) -> dict:
    """Spawn the pair once; {"layer": ..., "prefill": [...], "layout_sum": tensor, "ep": [...], "ep_timed": {...}}
    as rank 0 saved them."""
    import torch.multiprocessing as mp

    layer_port, port = free_ports(2)
    mp.spawn(worker, args=(2, f"tcp://127.0.0.1:{layer_port}", f"tcp://127.0.0.1:{port}", str(out_dir)), nprocs=2,
             join=True)
    return {"layer": torch.load(f"{out_dir}/layer.pt"), **torch.load(f"{out_dir}/group.pt")}

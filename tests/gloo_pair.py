"""One spawn of two gloo ranks on the CPU for every test that compares a sharded computation with the
one-process one (tests/test_tp.py, tests/test_workload_tp.py): starting two interpreters that import torch
costs seconds, the comparisons themselves milliseconds. Rank 0 saves what each test asserts on; the
session fixture `gloo_pair` in tests/conftest.py runs it once."""
from __future__ import annotations

import socket

import torch
import torch.distributed as dist

from bench.configs.model_configs import get_model
from bench.sweeps import tp_sweep
from kernels.backends import parse_backend
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


def layout_sum(rank: int) -> torch.Tensor:
    value = torch.arange(12, dtype=torch.float32).reshape(3, 4) * (rank + 1)
    # rank 1 holds the same logical tensor transposed in memory (as the CPU row-block GEMM returns it)
    t = value if rank == 0 else value.T.contiguous().T
    return tp_sweep.all_reduce_sum(t)


def worker(rank: int, world: int, layer_init: str, init_method: str, out_dir: str) -> None:
    # the decode layer, through the sweep's own test worker (a group of its own, torn down when it returns)
    tp_sweep.compare_worker(rank, world, layer_init, "tiny", 3, 9, f"{out_dir}/layer.pt")
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world)
    try:
        prefill = prefill_compare(rank, world)
        summed = layout_sum(rank)
        if rank == 0:
            torch.save({"prefill": prefill, "layout_sum": summed}, f"{out_dir}/group.pt")
        # every rank waits for the other before teardown: under load, a rank that destroyed its group while the
        # other was still in a collective aborted it (SIGABRT, "terminate called without an active exception")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run(out_dir) -> dict:
    """Spawn the pair once; {"layer": ..., "prefill": [...], "layout_sum": tensor} as rank 0 saved them."""
    import torch.multiprocessing as mp

    layer_port, port = free_ports(2)
    mp.spawn(worker, args=(2, f"tcp://127.0.0.1:{layer_port}", f"tcp://127.0.0.1:{port}", str(out_dir)), nprocs=2,
             join=True)
    return {"layer": torch.load(f"{out_dir}/layer.pt"), **torch.load(f"{out_dir}/group.pt")}

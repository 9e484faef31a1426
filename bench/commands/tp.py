"""Tensor-parallel decode layer across N ranks (Megatron sharding, all-reduces through torch.distributed:
NCCL on GPUs, gloo on CPU): per-rank kernel time, all-reduce time and share, bus bandwidth, tokens/s per GPU.

`tokenbench tp --tp N ...` launches `python -m torch.distributed.run --nproc-per-node N -m bench.sweeps.tp_sweep ...`
on this node, on a free port of 127.0.0.1. Under torchrun already (`torchrun --nproc-per-node N -m bench tp
...`), it runs the worker in place. Multi-node: run on every node, with the same rendezvous:
  torchrun --nnodes 2 --nproc-per-node 8 --node-rank R --rdzv-backend c10d \\
           --rdzv-endpoint HOST0:29500 --rdzv-id tb1 -m bench.sweeps.tp_sweep --model llama-3.1-405b ...
or `tokenbench tp --tp 8 --nnodes 2 --node-rank R --rdzv-endpoint HOST0:29500` (same flags passed through;
--tp is the ranks per node, the group is nnodes x tp). NCCL picks the network by itself; NCCL_SOCKET_IFNAME
and NCCL_IB_HCA select interfaces where it guesses wrong (GLOO_SOCKET_IFNAME for gloo).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from bench.errors import UserError
from bench.sweeps.torchrun_launcher import mark_stopped, new_records, run_group, torchrun_command


def add_arguments(p):
    p.add_argument("--tp", type=int, default=2, help="ranks (processes, one per GPU) per node (default 2)")
    p.add_argument("--nnodes", type=int, default=1, help="nodes in the group (default 1)")
    p.add_argument("--node-rank", type=int, default=0, help="this node's rank when --nnodes > 1")
    p.add_argument("--rdzv-endpoint", help="HOST:PORT of the rendezvous (needed when --nnodes > 1)")
    p.add_argument("--rdzv-id", default="tokenbench-tp", help="rendezvous id, the same on every node")
    p.add_argument("--timeout-s", type=float, default=None, help="stop the launched group after this long")
    p.add_argument("--json", action="store_true", help="print the group's results record as JSON on stdout")
    from bench.sweeps.tp_sweep import add_worker_arguments

    add_worker_arguments(p)


WORKER_FLAGS = ("model", "batch", "context", "dtype", "backend", "device", "out", "budget_s", "price_per_hour",
                "power_kw", "seed")
WORKER_SWITCHES = {"cuda_graph": (False, "--no-cuda-graph")}  # dest: (value that sets it, flag)


def worker_argv(args) -> list:
    out = []
    for name in WORKER_FLAGS:
        value = getattr(args, name)
        if value is not None:
            out += [f"--{name.replace('_', '-')}", str(value)]
    for name, (value, flag) in WORKER_SWITCHES.items():
        if getattr(args, name, None) == value:
            out.append(flag)
    return out


def preflight(args) -> None:
    """The mistakes every rank would hit, reported once before anything is launched."""
    from bench.configs.model_configs import get_model, refuse_moe
    from bench.sweeps.tp_sweep import local_dims

    if args.timeout_s is not None and not args.timeout_s > 0:
        raise UserError(f"--timeout-s must be a positive number of seconds, got {args.timeout_s:g}")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is available here (use --device cpu for gloo ranks)")
    model = get_model(args.model)
    refuse_moe(model, "`tokenbench tp`")
    local_dims(model.layer_dims, 0, max(1, args.tp) * max(1, args.nnodes))
    check_worker_values(args, model)


def check_worker_values(args, model) -> None:
    """What every rank parses (bench/sweeps/tp_sweep.py), checked once here: a bad value is one line, not the
    same line from each rank and torchrun's report of the failed group after it. Then the backend this
    device can time and the memory the ranks on this node need, as `run` checks them."""
    import torch

    from bench.parsing import choice, non_empty, positive_float, positive_int_list
    from bench.sweeps.decode_sweep import RunPlan, input_set_bytes, memory_skip_reason
    from bench.configs import device_catalog
    from kernels.backends import parse_backend
    from kernels.dtypes import TORCH_DTYPES

    if args.tp < 1 or args.nnodes < 1:
        raise UserError("--tp and --nnodes must be positive")
    non_empty(args.out, "--out")
    batches = positive_int_list(args.batch, "--batch")
    contexts = positive_int_list(args.context, "--context")
    positive_float(args.budget_s, "--budget-s")
    positive_float(args.price_per_hour, "--price-per-hour")
    positive_float(args.power_kw, "--power-kw")
    cuda = args.device != "cpu" and torch.cuda.is_available()
    dtype = choice(args.dtype or ("bf16" if cuda else "fp32"), tuple(TORCH_DTYPES), "dtype")
    if "triton" in parse_backend(non_empty(args.backend, "--backend") or "torch").values() and not cuda:
        raise UserError("--backend triton cannot be timed on a CPU: Triton runs there only under its "
                        "interpreter, which is for correctness (use `tokenbench verify --backend triton`)")
    if cuda:
        return  # each rank has its own GPU: the worker skips what does not fit on it
    device = device_catalog.detect("cpu")
    plan = RunPlan(model=model, batches=batches, contexts=contexts, dtype=dtype, backends=["torch"])
    for b in batches:
        for c in contexts:
            # every gloo rank holds the one-process float64 layer it is gated against: a full input set each
            if why := memory_skip_reason(input_set_bytes(plan, b, c), device, args.tp):
                raise UserError(f"cannot run {args.tp} ranks of {model.name} {dtype} at batch {b}, context {c} "
                                f"here: {why}")


def launch_command(args) -> list:
    return torchrun_command(args.tp, "bench.sweeps.tp_sweep", worker_argv(args), args.nnodes, args.node_rank,
                            args.rdzv_endpoint, args.rdzv_id)


def wants_tp(run_args) -> bool:
    """`tokenbench run --tp N` (N > 1), or `run` started by torchrun with more than one rank."""
    return getattr(run_args, "tp", 1) > 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1


def from_run_args(run_args, gpu_defaults: dict, cpu_defaults: dict) -> int:
    """`tokenbench run --tp N ...`: the same options, handed to this command (run's defaults kept)."""
    import argparse

    import torch

    if getattr(run_args, "tp", 1) < 1:
        raise UserError("--tp must be positive")
    cuda = run_args.device != "cpu" and torch.cuda.is_available()
    defaults = gpu_defaults if cuda else cpu_defaults
    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args([])
    for name in ("model", "batch", "context", "dtype", "backend"):
        setattr(args, name, getattr(run_args, name) or defaults.get(name))
    for name in ("device", "out", "budget_s", "price_per_hour", "power_kw", "cuda_graph", "json"):
        setattr(args, name, getattr(run_args, name))
    args.tp = max(1, run_args.tp)
    return main(args)


def main(args) -> int:
    from bench.sweeps.torchrun_launcher import in_torchrun

    if in_torchrun():  # already a torchrun worker
        from bench.sweeps.tp_sweep import run

        return run(args)
    preflight(args)
    cmd = launch_command(args)
    out = Path(args.out or "results")
    before = set(out.glob("*.json")) if out.is_dir() else set()
    rc, note, kept = run_group(cmd, args.timeout_s, lambda note: mark_stopped(new_records(out, before, "tp"), note))
    if note is None:
        if getattr(args, "json", False):
            for path, _ in new_records(out, before, "tp"):
                print(path.read_text())
        return rc
    print(f"tokenbench tp: {note.split(';')[0]}; {kept}", file=sys.stderr)
    return rc

"""The ranks' side of a torchrun group: what the two torchrun workers share, `python -m bench.sweeps.tp_sweep`
(`tokenbench tp`) and `python -m bench.workload.tp_worker` (`tokenbench workload --tp N`). The launching side
is bench/sweeps/torchrun_launcher.py.

A worker joins the process group torchrun describes in its environment, measures, and tears the group down.
After a clean finish every rank first waits for the others at a barrier: a rank that tore the group down
while rank 0 still wrote its record made rank 0's exit fail now and then (the group then exited 1 with every
case measured).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

import torch
import torch.distributed as dist

from bench.configs import device_catalog
from bench.errors import UserError


def setup_group(requested: str):
    """(rank, world size, device) of this worker, its process group initialised: NCCL on CUDA (the rank on
    its own GPU, LOCAL_RANK), else gloo; `requested` is --device (auto | cuda | cpu)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    want_cuda = requested in ("auto", "cuda") and torch.cuda.is_available()
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda but no CUDA device is visible")
    if want_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if want_cuda else "gloo", rank=rank, world_size=world)
    device = device_catalog.detect("cuda" if want_cuda else "cpu")
    if want_cuda:  # detect() describes device 0; this rank runs on its own
        device.torch_device = f"cuda:{local_rank}"
    return rank, world, device


def run_on_group(requested: str, measure: Callable[[int, int, object], int]) -> int:
    """measure(rank, world, device) on this worker's group (setup_group(requested)), which is torn down
    afterwards whatever happens. When measure returns 0 every rank first waits at a barrier, so that none
    leaves while rank 0 still writes; after a failure or an interrupt (an exception, a status other than 0)
    the peers may be gone already, and a barrier would only wait for them."""
    rank, world, device = setup_group(requested)
    try:
        status = measure(rank, world, device)
        if status == 0:
            dist.barrier()
        return status
    finally:
        dist.destroy_process_group()


def worker_main(argv, module: str, doc: str, add_arguments: Callable, run: Callable, command: str) -> int:
    """A worker's `python -m module` entry: its flags (add_arguments), then run(args); a UserError is one line
    on stderr, `tokenbench COMMAND: error: ...`, and exit status 2."""
    p = argparse.ArgumentParser(prog=f"python -m {module}", description=doc.split("\n")[0])
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return run(args)
    except UserError as exc:
        print(f"tokenbench {command}: error: {exc}", file=sys.stderr)
        return 2

"""`tokenbench workload --tp N`: the workload's steps measured on a tensor-parallel group of N ranks
(bench/sweeps/tp_sweep.py's Megatron sharding, all-reduces included), composed into points per GPU.

The launcher (this module) works out what fits one GPU and which step shapes the fitting concurrencies
need (bench.workload.compose.needed_keys), writes the workload record, and hands the keys to a torchrun group
(bench/sweeps/torchrun_launcher.py; the ranks run bench/workload/tp_worker.py, whose rank 0 adds every (rank, item) row and
each key's group step to the record as soon as the key is done). When the group ends, or is stopped (Ctrl-C,
SIGTERM: the keys finished by then are kept), the points are composed from the group's steps, as on one
device, and put per GPU:
  memory per GPU = the rank's weight shards (bench.sweeps.tp_sweep.shard_weight_bytes) + its KV heads' cache
                   (bench.sweeps.tp_sweep.kv_bytes_per_rank) for C x (ISL + OSL) tokens: a concurrency fits if that fits
                   one device
  tokens/s per GPU (total, output, input) = the group's tokens/s / N    (InferenceX: tput / (TP x PP))
  interactivity, TTFT, end-to-end latency: the group's (every rank serves every request)
On CPU ranks (gloo), "per GPU" reads per rank (a CPU process), as `tokenbench tp` labels it.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import replace

from bench.records import store
from bench.sweeps.decode_sweep import RunPlan
from bench.workload import compose as comp
from bench.workload.plan import WorkloadSpec
from bench.workload.pipeline import WorkloadRun, fitting, open_workload_record, write_points

RATES = "tokens/s per GPU over the group (the group's tokens/s / N)"
CPU_RATES = "tokens/s per rank (a CPU process) over the group (the group's tokens/s / N)"


def tp_header(plan: RunPlan, device, world: int) -> comp.Header:
    """Figures per GPU: one rank's weight shards and its KV heads' cache per token."""
    from bench.sweeps.tp_sweep import kv_bytes_per_rank, shard_weight_bytes
    from kernels.dtypes import ELEMENT_BYTES

    m, eb = plan.model, ELEMENT_BYTES[plan.dtype]
    return comp.Header(device=device.key or device.name, model=m.name, precision=plan.dtype,
                       memory_bytes=device.memory_bytes, weight_bytes=shard_weight_bytes(m, world, eb),
                       kv_bytes_per_token=kv_bytes_per_rank(m, world, 1, 1, eb), tp=world)


def per_gpu(point, world: int):
    """A point composed from the group's steps, its rates divided over the group's N GPUs."""
    def share(v):
        return None if v is None else v / world

    return replace(point, total_tokens_per_s=share(point.total_tokens_per_s),
                   output_tokens_per_s=share(point.output_tokens_per_s),
                   input_tokens_per_s=share(point.input_tokens_per_s), label=f"{point.label} tp{world}")


def compose_into(record: dict, h: comp.Header, spec: WorkloadSpec, world: int) -> list:
    """The points (per GPU) from the record's group steps; written into the record with their economics."""
    steps = {}
    for s in record.get("steps", []):
        step = comp.WorkloadStep.from_dict(s)
        steps[step.key] = step
    return write_points(record, [(per_gpu(p, world), c) for p, c in comp.compose(h, spec, steps)])


def worker_args(plan: RunPlan, device, backend: str, keys_path: str, record_path: str, seed: int) -> list:
    out = ["--keys", keys_path, "--record", record_path, "--model", plan.model.ref, "--dtype", plan.dtype,
           "--backend", backend, "--device", device.kind, "--budget-s", repr(plan.budget_s), "--seed", str(seed)]
    return out + ([] if plan.cuda_graph else ["--no-cuda-graph"])


def run_workload_tp(plan: RunPlan, device, spec: WorkloadSpec, backend: str, price: dict, out_dir: str, world: int,
                    say, seed: int = 0) -> WorkloadRun:
    """Measure the steps on a group of `world` ranks (torchrun on this node), compose the points per GPU.
    `say(text)` prints a line. The record is on disk before the group starts and after every key."""
    from bench.sweeps.torchrun_launcher import run_group, torchrun_command
    from bench.workload.tp_worker import DERIVATION, write_keys

    h = tp_header(plan, device, world)
    keys = comp.needed_keys(spec, fitting(h, spec))
    writer, record = open_workload_record(plan, device, spec, price, out_dir, backend, False, tp=world)
    record["tp"] = {
        "world_size": world, "process_group_backend": "nccl" if device.kind == "cuda" else "gloo",
        "rates": RATES if device.kind == "cuda" else CPU_RATES,
        "memory": "per GPU: the rank's weight shards + its KV heads' cache for C x (ISL + OSL) tokens",
        "sharding": "Megatron: column-parallel qkv and gate_up, row-parallel o and down, 2 all-reduces of "
                    "[M, H] per layer (M = the step's rows), KV caches split by KV heads, LM head vocab-parallel",
        "steps": f"group step = {DERIVATION}",
    }
    record["energy"] = {"reason": "no board reading across a tensor-parallel group"}
    writer.write(record)
    run = WorkloadRun(record, json_path=str(writer.json_path), csv_path=str(writer.csv_path))
    started = time.perf_counter()
    fd, keys_path = tempfile.mkstemp(prefix="tokenbench-workload-keys-", suffix=".json")
    os.close(fd)
    try:
        write_keys(keys_path, keys)

        def finish(note: str | None, rc: int = 0) -> str:
            """Read back what the group wrote, compose the points, say how the run ended."""
            for tmp in (writer.json_path.with_suffix(".json.tmp"), writer.csv_path.with_suffix(".csv.tmp")):
                tmp.unlink(missing_ok=True)  # rank 0 stopped mid-write: the file itself is whole
            done = store.read_json(writer.json_path, "workload record")
            if note:
                done["interrupted"] = note
            elif rc:
                done["failed"] = f"the torchrun group exited with status {rc}; the steps measured before it are kept"
            done["complete"] = not note and not rc and len(done.get("steps", [])) == len(keys)
            done["wall_s"] = time.perf_counter() - started
            run.record = done
            run.points = compose_into(done, h, spec, world)
            writer.write(done)
            return f"{len(done.get('steps', []))} of {len(keys)} steps ({len(done.get('rows', []))} rows) kept in " \
                   f"{writer.json_path}"

        if keys:
            cmd = torchrun_command(world, "bench.workload.tp_worker",
                                   worker_args(plan, device, backend, keys_path, str(writer.json_path), seed))
            rc, note, kept = run_group(cmd, None, finish)
        else:
            rc, note, kept = 0, None, ""
        if note is None:
            finish(None, rc)
            run.status = rc
            if rc:
                say(f"[red]the torchrun group exited with status {rc}; the steps it finished are kept in "
                    f"{writer.json_path}[/]")
        else:
            run.status = rc
            say(f"tokenbench workload: {note.split(';')[0]}; {kept}")
    finally:
        os.unlink(keys_path)
    return run


def check_group(model, world: int, device) -> None:
    """What every rank would hit, said once before anything is launched: the sharding must divide the model,
    a GPU group needs N visible GPUs, and a rank must not be a torchrun worker already."""
    from bench.errors import UserError
    from bench.sweeps.torchrun_launcher import in_torchrun
    from bench.sweeps.tp_sweep import local_dims

    local_dims(model.layer_dims, 0, world)
    if in_torchrun():
        raise UserError("`tokenbench workload --tp N` launches its own torchrun group: run it outside torchrun")
    if device.kind == "cuda":
        import torch

        if torch.cuda.device_count() < world:
            raise UserError(f"--tp {world} needs {world} GPUs on this node, {torch.cuda.device_count()} visible "
                            f"(use --device cpu for gloo ranks)")

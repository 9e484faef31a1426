"""The ranks' side of `tokenbench workload --tp N`: every step shape a workload needs (a StepKey: decode,
mixed, or a prefill in chunks), measured on the tensor-parallel group of bench/sweeps/tp_sweep.py.

Run by torchrun, one process per device (bench/workload/tp_group.py launches it):
  torchrun --nproc-per-node N -m bench.workload.tp_worker --keys KEYS.json --record RUN.json --model M ...
Per key and rank: each of the step's layers (decode: one; mixed: one, decode rows and the prompt chunk at
M = B + k x t rows; prefill: one per chunk position) built full from one seed on every rank, sharded
(bench.sweeps.tp_sweep.shard_inputs: weights Megatron-style, every KV cache by KV heads), gated (the group's output
against the one-process float64 layer, new cache slots poisoned first; every rank must pass), then timed:
the layer with its two all-reduces, its compute alone, one all-reduce of [M, H]; then the final norm and the
rank's vocab shard of the LM head at the rows that emit a token (bench.workload.measure_steps.tail_rows).
Rank 0 gathers the ranks' figures and writes, after every key (so a stopped group keeps them), one row per
(rank, timed item) and the group's step:
  seconds = layers x sum over the step's layers of the slowest rank's layer (all-reduces inside)
            + the slowest rank's final norm + LM head shard     (the logits all-gather is not timed)
with FLOPs and bytes per GPU (one rank's shard). bench/workload/tp_group.py composes the points from these steps.
"""
from __future__ import annotations

import functools
import json
import sys
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist

from bench.derive import roofline

from bench.records.schema import TpRow
from bench.sweeps import tp_sweep
from bench.sweeps.engine import Case, Group, SweepPlan, run_plan
from bench.sweeps.torchrun_worker import run_on_group, worker_main
from bench.errors import UserError
from bench.workload.compose import StepKey, WorkloadStep
from bench.workload.measure_steps import key_labels, skip_reason, tail_rows
from kernels.dtypes import torch_dtype
from kernels.layer import layer_flops, layer_forward, layer_min_bytes, layer_reference, make_layer_inputs
from kernels.prefill_layer import (
    Chunk,
    make_prefill_inputs,
    mixed_layer_flops,
    poison_new_slots,
    prefill_forward,
    prefill_layer_flops,
    prefill_layer_min_bytes,
    prefill_reference,
)

DERIVATION = ("layers x sum over the step's layers of the slowest rank's layer (2 all-reduces of [M, H] inside) "
              "+ slowest final_norm + slowest LM head shard (V / N rows); the logits all-gather is not timed; "
              "flops and bytes are one GPU's (rank 0's shard)")


@dataclass(frozen=True)
class ShardedLayer:
    """One layer of a step: `decode_rows` decode rows at `context` and/or a prompt `chunk`."""

    op: str  # tp_layer | tp_mixed_layer | tp_prefill_layer
    decode_rows: int
    context: int
    chunk: Chunk | None = None
    labels: tuple = ()  # (name, value) pairs a prefill chunk's rows carry

    @property
    def rows(self) -> int:
        """M, the rows every row-wise op (and each all-reduce) carries."""
        return self.decode_rows + (self.chunk.rows if self.chunk else 0)

    def make_full(self, d, dtype, device, seed: int) -> dict:
        if self.chunk is None:
            return make_layer_inputs(d, self.decode_rows, self.context, dtype, device, seed)
        return make_prefill_inputs(d, self.chunk, dtype, device, seed, self.decode_rows, self.context)

    def forward(self, dl, backends):
        """fn(reduce, **sharded inputs) -> (y, r2) on the rank's shard `dl`."""
        if self.chunk is None:
            return lambda reduce, **inp: layer_forward(dl, backends, reduce=reduce, **inp)
        return lambda reduce, **inp: prefill_forward(dl, backends, reduce=reduce, **inp)

    def reference(self, d, full: dict):
        return (lambda: layer_reference(d, **full)) if self.chunk is None else (lambda: prefill_reference(d, **full))

    def poison(self):
        return None if self.chunk is None else poison_new_slots

    def work(self, dl, element_bytes: int) -> tuple[int, int]:
        """(FLOPs, fewest bytes) of the rank's shard of this layer."""
        c = self.chunk
        if c is None:
            return (layer_flops(dl, self.decode_rows, self.context),
                    layer_min_bytes(dl, self.decode_rows, self.context, element_bytes))
        flops = (mixed_layer_flops(dl, self.decode_rows, self.context, c) if self.decode_rows
                 else prefill_layer_flops(dl, c))
        return flops, prefill_layer_min_bytes(dl, c, element_bytes, self.decode_rows, self.context)


def layers_of(key: StepKey) -> list[ShardedLayer]:
    """The layer(s) one step runs, as bench.workload.measure_steps times them on one device."""
    if key.phase == "decode":
        return [ShardedLayer("tp_layer", key.batch, key.context)]
    if key.phase == "mixed":
        return [ShardedLayer("tp_mixed_layer", key.batch, key.context,
                             Chunk(key.chunk_seqs, key.chunk_tokens, key.prefix))]
    out = []
    for index, start in enumerate(range(0, key.context, key.chunk)):
        c = Chunk(key.batch, min(key.chunk, key.context - start), start)
        out.append(ShardedLayer("tp_prefill_layer", 0, 0, c,
                                (("chunk_index", index), ("chunk_tokens", c.tokens), ("chunk_prefix", start))))
    return out


def describe(key: StepKey) -> str:
    if key.phase == "decode":
        return f"decode b={key.batch} ctx={key.context}"
    if key.phase == "mixed":
        return f"mixed b={key.batch} ctx={key.context} + {key.chunk_seqs}x{key.chunk_tokens}@{key.prefix}"
    return f"prefill {key.batch}x{key.context} in chunks of {key.chunk}"


class RankCaches:
    """What one rank has timed already: an all-reduce per row count, the tail per row count (the keys come
    in the same order on every rank, so every rank's caches agree and collectives stay matched)."""

    def __init__(self):
        self.all_reduce: dict[int, dict] = {}
        self.tail: dict[int, dict] = {}


def measure_key(plan, backends, device, rank: int, world: int, key: StepKey, seed: int, caches: RankCaches,
                phase=tp_sweep.quiet) -> dict:
    """This rank's figures for one step: per layer the gate, then step / compute / all-reduce timings; the
    tail at the step's token-emitting rows. Every rank makes the same collective calls in the same order."""
    d = plan.model.layer_dims
    dtype = torch_dtype(plan.dtype)
    eb = torch.empty((), dtype=dtype).element_size()
    dl, _, _ = tp_sweep.local_dims(d, rank, world)
    out = {"rank": rank, "key": asdict(key), "layers": [], "tail": None, "skipped": None}
    why = skip_reason(plan, device, key)
    if not tp_sweep.every_rank(why is None, device):  # a rank short of memory skips the step for the whole group
        out["skipped"] = why or "skipped: another rank has too little memory for this step's inputs"
        return out
    for layer in layers_of(key):
        where = f"chunk {dict(layer.labels)['chunk_index']}: " if layer.labels else ""  # progress names the key
        phase(f"{where}building the weights and inputs")
        full = layer.make_full(d, dtype, device.torch_device, seed)
        inputs = tp_sweep.shard_inputs(d, full, rank, world)
        forward = layer.forward(dl, backends)
        phase(f"{where}checking against the float64 reference")
        figures = {"op": layer.op, "labels": dict(layer.labels), "rows": layer.rows,
                   **tp_sweep.gate_layer(forward, layer.reference(d, full), inputs, plan.dtype, device, layer.poison())}
        del full
        out["layers"].append(figures)
        if not figures["valid"]:
            return out  # every rank agreed it failed: the step is not timed
        figures.update(tp_sweep.time_layer(forward, inputs, device, plan.budget_s, plan.cuda_graph,
                                     lambda text, w=where: phase(f"{w}{text}")))
        if layer.rows not in caches.all_reduce:
            phase(f"{where}timing one all-reduce of [{layer.rows}, {d.hidden}]")
            caches.all_reduce[layer.rows] = {
                **tp_sweep.time_all_reduce(layer.rows, d.hidden, dtype, device, plan.budget_s, plan.cuda_graph),
                "new": True}
        else:
            caches.all_reduce[layer.rows]["new"] = False
        flops, nbytes = layer.work(dl, eb)
        figures.update(all_reduce=dict(caches.all_reduce[layer.rows]), flops=flops, bytes=nbytes,
                       all_reduce_bytes=layer.rows * d.hidden * eb)
        del inputs
    rows = tail_rows(key)
    if rows not in caches.tail:
        phase(f"timing the final norm and the LM head shard at {rows} rows")
        caches.tail[rows] = {**tp_sweep.time_tail(rows, d, world, dtype, backends, device, plan.budget_s, seed),
                             "rows": rows, "new": True}
    else:
        caches.tail[rows]["new"] = False
    out["tail"] = dict(caches.tail[rows])
    return out


def group_rows_and_step(plan, key: StepKey, per_rank: list, device, world: int) -> tuple[list, dict]:
    """Rank 0: one row per (rank, timed item) and the group's step for `key` (WorkloadStep.to_dict() plus
    the tensor-parallel figures), composed from the slowest rank of each item."""
    dtype, backend = plan.dtype, plan.backends[0]
    base = {**key_labels(key), "batch": key.batch, "context": key.context, "backend": backend, "dtype": dtype,
            "tp": world}
    skipped = next((r["skipped"] for r in per_rank if r["skipped"]), None)
    if skipped:
        return [], {**WorkloadStep(key, None, reason=skipped).to_dict(), "tp": world}
    rows = []
    for r in per_rank:
        copy_bw = r.get("copy_bw")
        for layer in r["layers"]:
            common = {**base, **layer["labels"], "rank": r["rank"], "rows": layer["rows"], "valid": layer["valid"],
                      "check": layer["check"], "rel_error": layer["rel_error"], "tolerance": layer["tolerance"]}
            if not layer["valid"]:
                rows.append(TpRow.build(**common, op=layer["op"]))
                continue
            for op, item in ((layer["op"], "step"), (f"{layer['op']}_compute", "compute")):
                t = layer[item]
                rows.append(TpRow.build(**{**common, "op": op, **t, "flops": layer["flops"], "bytes": layer["bytes"],
                                           **roofline.derive(layer["flops"], layer["bytes"], t["seconds_p50"], dtype,
                                                             device.spec, copy_bw)}))
            ar = layer["all_reduce"]
            if ar["new"]:
                algbw, busbw = tp_sweep.bus_bandwidth(layer["all_reduce_bytes"], ar["seconds_p50"], world)
                rows.append(TpRow.build(**{**common, "op": "all_reduce", **{k: v for k, v in ar.items() if k != "new"},
                                           "flops": 0, "bytes": layer["all_reduce_bytes"], "tflops": 0.0,
                                           "gbps": algbw / 1e9, "algbw_gbps": algbw / 1e9,
                                           "busbw_gbps": busbw / 1e9}))
        tail = r["tail"]
        if tail and tail["new"]:
            for op, item in (("final_norm", "final_norm"), ("lm_head_shard", "lm_head")):
                t = tail[item]
                f, b = tail[f"{item}_flops"], tail[f"{item}_bytes"]
                rows.append(TpRow.build(**{"op": op, "phase": "tail", "rows": tail["rows"], "batch": tail["rows"],
                                           "rank": r["rank"], "backend": backend, "dtype": dtype, "tp": world,
                                           "valid": True, "check": "ok", **t, "flops": f, "bytes": b,
                                           **roofline.derive(f, b, t["seconds_p50"], dtype, device.spec, copy_bw)}))
    failed = [layer for r in per_rank for layer in r["layers"] if not layer["valid"]]
    if failed:
        why = f"the sharded {failed[0]['op']} failed its check ({failed[0]['check']}); not timed"
        return rows, {**WorkloadStep(key, None, reason=why).to_dict(), "tp": world}
    n_layers = len(per_rank[0]["layers"])
    slow = {item: [max(r["layers"][i][item]["seconds_p50"] for r in per_rank) for i in range(n_layers)]
            for item in ("step", "compute", "all_reduce")}
    tail_s = {item: max(r["tail"][item]["seconds_p50"] for r in per_rank) for item in ("final_norm", "lm_head")}
    layers = plan.model.layers
    layer_s = sum(slow["step"])
    seconds = layers * layer_s + tail_s["final_norm"] + tail_s["lm_head"]
    first = per_rank[0]
    flops = layers * sum(x["flops"] for x in first["layers"]) + first["tail"]["final_norm_flops"] \
        + first["tail"]["lm_head_flops"]
    nbytes = layers * sum(x["bytes"] for x in first["layers"]) + first["tail"]["final_norm_bytes"] \
        + first["tail"]["lm_head_bytes"]
    ar_layer = 2 * sum(slow["all_reduce"])
    step = {**WorkloadStep(key, seconds, flops, nbytes, layer_s).to_dict(), "tp": world, "derived": True,
            "derivation": DERIVATION, "layers": layers, "layer_compute_seconds": sum(slow["compute"]),
            "all_reduce_seconds_per_layer": ar_layer, "all_reduce_share": ar_layer / layer_s,
            "all_reduce_share_from_difference": max(0.0, layer_s - sum(slow["compute"])) / layer_s,
            "final_norm_seconds": tail_s["final_norm"], "lm_head_seconds": tail_s["lm_head"],
            "layer_seconds_per_rank": [sum(x["step"]["seconds_p50"] for x in r["layers"]) for r in per_rank]}
    return rows, step


def step_line(step: dict) -> str:
    key = StepKey(**{k: step[k] for k in StepKey.__dataclass_fields__})
    if step.get("seconds") is None:
        return f"{describe(key)}: {step.get('reason')}"
    # two readings of the all-reduces' share: timed alone (x2), and what the layer adds to its compute
    return (f"{describe(key)} tp={step['tp']}: layer {step['layer_seconds'] * 1e6:,.1f} us (compute "
            f"{step['layer_compute_seconds'] * 1e6:,.1f} us; all-reduces timed alone {step['all_reduce_share']:.0%} "
            f"of it, layer - compute {step['all_reduce_share_from_difference']:.0%}); "
            f"step {step['seconds'] * 1e3:,.3f} ms")


def add_arguments(p) -> None:
    p.add_argument("--keys", required=True, help="JSON file: {\"keys\": [StepKey fields, ...]}")
    p.add_argument("--record", required=True, help="the workload record (kind workload) rank 0 adds rows and "
                                                    "steps to, after every key")
    p.add_argument("--model", default="tiny", help="a dense model: a catalog name or a config.json path (default tiny)")
    p.add_argument("--dtype", required=True, help="bf16 | fp16 | fp32")
    p.add_argument("--backend", default="torch", help="one backend spec for the ops (default torch)")
    p.add_argument("--device", default="auto", help="auto | cuda | cpu")
    p.add_argument("--budget-s", type=float, default=0.5, help="timing budget per timed item in seconds")
    p.add_argument("--seed", type=int, default=0, help="weights and inputs seed (default 0)")
    p.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_false",
                   help="time eager launches instead of CUDA-graph replays (GPU)")


def write_keys(path, keys: list[StepKey]) -> None:
    """The keys file the worker reads (bench/workload/tp_group.py writes it)."""
    with open(path, "w") as f:
        json.dump({"keys": [asdict(k) for k in keys]}, f)


def read_keys(path: str) -> list[StepKey]:
    from bench.records.store import read_json

    data = read_json(path, "workload keys file")
    try:
        return [StepKey(**k) for k in data["keys"]]
    except (KeyError, TypeError) as exc:
        raise UserError(f"workload keys file {path}: {exc}") from None


def run(args) -> int:
    return run_on_group(args.device, functools.partial(_measure_on_group, args))


def _measure_on_group(args, rank: int, world: int, device) -> int:
    return run_plan(TpStepSweep(args, rank, world, device), device).status


class TpStepSweep(SweepPlan):
    """The ranks' side of `tokenbench workload --tp N` for the measuring engine: each key measured on every
    rank (measure_key), the figures gathered, and rank 0 adding the key's rows and group step to the
    workload record the launcher opened (which marks how the run ended once the group is gone). A clean
    finish holds every rank at run_on_group's barrier until rank 0 has written the last key."""

    def __init__(self, args, rank: int, world: int, device):
        from bench.configs.model_configs import get_model, refuse_moe
        from bench.sweeps.decode_sweep import RunPlan
        from kernels.backends import parse_backend

        self.args, self.rank, self.world, self.device = args, rank, world, device
        model = get_model(args.model)
        refuse_moe(model, "`tokenbench workload --tp`")
        tp_sweep.local_dims(model.layer_dims, 0, world)
        self.backends = parse_backend(args.backend)
        self.keys = read_keys(args.keys)
        self.plan = RunPlan(model=model, batches=[], contexts=[], dtype=args.dtype, backends=[args.backend],
                            budget_s=args.budget_s, cuda_graph=args.cuda_graph and device.kind == "cuda",
                            per_op=False)
        self.console = tp_sweep.rank0_console() if rank == 0 else None
        self.caches = RankCaches()
        self.step = None  # the group step rank 0 composed from the last key's gathered figures

    def open(self, device):
        from bench.records.store import ResultWriter, read_json

        if self.rank != 0:
            return None, None
        return ResultWriter.reopen(self.args.record), read_json(self.args.record, "workload record")

    def measure_ceilings(self, device, record, writer) -> None:
        self.copy_bw, copy_bws = tp_sweep.every_rank_copy_bandwidth(device, self.world)
        if record is not None:
            record.setdefault("tp", {}).update(
                world_size=self.world, process_group_backend=dist.get_backend(), keys=len(self.keys),
                measured_copy_gbps_per_rank=[b / 1e9 for b in copy_bws])
            record["measured_copy_gbps"] = min(copy_bws) / 1e9  # the step reads the slowest rank's
            writer.write(record)

    def total(self) -> int:
        return len(self.keys)

    def groups(self):
        for key in self.keys:
            yield Group(describe(key), [Case(describe(key), lambda phase, key=key: self._measure(key, phase),
                                             line=lambda rows: step_line(self.step), line_on_terminal=True)],
                        key=key)

    def _measure(self, key: StepKey, phase) -> list:
        mine = measure_key(self.plan, self.backends, self.device, self.rank, self.world, key, self.args.seed,
                           self.caches, phase=phase)
        mine["copy_bw"] = self.copy_bw
        gathered = [None] * self.world
        dist.all_gather_object(gathered, mine)
        if self.rank != 0:
            return []
        rows, self.step = group_rows_and_step(self.plan, key, gathered, self.device, self.world)
        return rows

    def derive(self, group: Group, rows: list) -> list:
        return [self.step] if self.rank == 0 else []


def main(argv=None) -> int:
    return worker_main(argv, "bench.workload.tp_worker", __doc__, add_arguments, run, "workload")


if __name__ == "__main__":
    sys.exit(main())

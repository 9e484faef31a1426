"""Tensor-parallel decode: one decoder layer sharded Megatron-style across the ranks of a torchrun group.

Run by torchrun, one process per device (`tokenbench tp --tp N` launches it; see bench/commands/tp.py):
  torchrun --nproc-per-node N -m bench.sweeps.tp_sweep --model llama-3.1-70b --batch 1,8 --context 2048
Sharding (Megatron-LM, Shoeybi et al. 2019), for N ranks, rank r:
  qkv      column-parallel: the q rows of heads [r Hq/N, (r+1) Hq/N) and their KV heads' k and v rows
           (KV heads replicated when N > Hkv: each rank keeps the one its query heads read)
  o        row-parallel:    the columns of those heads; partial [B, H] outputs -> all-reduce (sum)
  gate_up  column-parallel: gate rows [r F/N, (r+1) F/N) and the same up rows
  down     row-parallel:    the matching columns; partial outputs -> all-reduce (sum)
  norms replicated; the KV cache holds only the rank's KV heads; lm_head vocab-parallel (V/N rows).
Two all-reduces of [B, H] per layer. Every rank builds the full layer from the same seed as
kernels.layer.make_layer_weights and keeps its shard, so the group's output is checked against the
one-process float64 reference before anything is timed.

Timing, per rank: the layer step (compute + all-reduces), the compute alone (all-reduce replaced by
nothing), and one all-reduce of [B, H]; on GPUs each captured in a CUDA graph (NCCL included) where
every rank can capture, else eager launches with events (the row's `timer` says which). Timers that contain a collective run a sample count agreed by all
ranks, each sample behind a barrier; compute-only timers are bench.measure.timing's adaptive ones. The group's
step is set by its slowest rank. All-reduce bandwidth follows the NCCL-tests convention
(github.com/NVIDIA/nccl-tests, doc/PERFORMANCE.md): algbw = bytes / time, busbw = algbw * 2 (n - 1) / n.
"""
from __future__ import annotations

import functools
import math
import os
import sys
import time
from dataclasses import replace

import torch
import torch.distributed as dist

from bench.configs import device_catalog

from bench.records import environment, store
from bench.records.schema import TpRow, TpStep
from bench.sweeps.decode_sweep import price_step
from bench.sweeps.engine import Case, Group, SweepPlan, run_plan
from bench.sweeps.torchrun_worker import run_on_group, worker_main

from bench.derive import roofline
from bench.errors import UserError
from bench.measure.timing import MIN_SAMPLES, CacheFlusher, Timing, capture_graph, tensor_bytes, time_cpu, time_cuda
from costmodel.step import compose, decode_rates
from kernels import gemm, norm
from kernels.backends import implementation, parse_backend
from kernels.dtypes import TOLERANCE, torch_dtype
from kernels.layer import (
    LayerDims,
    layer_flops,
    layer_forward,
    layer_min_bytes,
    layer_reference,
    make_layer_inputs,
)

MAX_COLLECTIVE_SAMPLES = 500
COLLECTIVE_SAMPLE_S = 2e-3  # target length of one sample of a collective timer (see agreed_plan)
MAX_CALLS_PER_SAMPLE = 100


# ---------------------------------------------------------------------------------------------------
# Sharding and the sharded layer


def local_dims(d: LayerDims, rank: int, world: int) -> tuple[LayerDims, list, list]:
    """(the rank's LayerDims, its query heads, its KV heads)."""
    if d.heads % world:
        raise UserError(f"--tp {world} must divide the {d.heads} attention heads")
    if d.ffn % world:
        raise UserError(f"--tp {world} must divide the FFN width {d.ffn}")
    if d.kv_heads % world and world % d.kv_heads:
        raise UserError(f"--tp {world} and {d.kv_heads} KV heads: one must divide the other")
    hq = d.heads // world
    q_heads = list(range(rank * hq, (rank + 1) * hq))
    if d.kv_heads >= world:
        hkv = d.kv_heads // world
        kv_heads = list(range(rank * hkv, (rank + 1) * hkv))
    else:  # replicate: rank r's query heads all read KV head r // (N / Hkv)
        kv_heads = [rank // (world // d.kv_heads)]
    return replace(d, heads=hq, kv_heads=len(kv_heads), ffn=d.ffn // world), q_heads, kv_heads


def shard_weights(d: LayerDims, w: dict, rank: int, world: int) -> dict:
    """The rank's slices of the full layer weights (contiguous copies)."""
    dl, q_heads, kv_heads = local_dims(d, rank, world)
    hd = d.head_dim

    def head_rows(base, heads):
        return torch.cat([torch.arange(base + h * hd, base + (h + 1) * hd) for h in heads])

    qkv_rows = torch.cat([head_rows(0, q_heads), head_rows(d.q_size, kv_heads),
                          head_rows(d.q_size + d.kv_size, kv_heads)]).to(w["qkv"].device)
    f0, f1 = rank * dl.ffn, (rank + 1) * dl.ffn
    q_cols = head_rows(0, q_heads).to(w["o"].device)
    return {
        "attn_norm": w["attn_norm"],
        "qkv": w["qkv"][qkv_rows].contiguous(),
        "qkv_bias": None if w["qkv_bias"] is None else w["qkv_bias"][qkv_rows].contiguous(),
        "o": w["o"][:, q_cols].contiguous(),
        "ffn_norm": w["ffn_norm"],
        "gate_up": torch.cat([w["gate_up"][f0:f1], w["gate_up"][d.ffn + f0:d.ffn + f1]]).contiguous(),
        "down": w["down"][:, f0:f1].contiguous(),
    }


# Every KV cache a layer's inputs may hold, each [B, Hkv, S, D]: the decode layer's (k_cache, v_cache); the
# prefill and mixed layers' chunk cache (k_cache, v_cache) and the mixed layer's decode rows' caches.
CACHE_KEYS = ("k_cache", "v_cache", "decode_k_cache", "decode_v_cache")


def shard_inputs(d: LayerDims, full: dict, rank: int, world: int) -> dict:
    """Sharded weights, the rank's KV heads of every cache, replicated activations (x, residual, cos/sin,
    positions): for the decode layer (kernels.layer.make_layer_inputs) and the prefill and mixed layers
    (kernels.prefill_layer.make_prefill_inputs) alike."""
    _, _, kv_heads = local_dims(d, rank, world)
    kv = torch.tensor(kv_heads, device=full["k_cache"].device)
    out = {k: v for k, v in full.items() if k != "weights" and k not in CACHE_KEYS}
    out["weights"] = shard_weights(d, full["weights"], rank, world)
    for name in CACHE_KEYS:
        if full.get(name) is not None:
            out[name] = full[name][:, kv].contiguous()  # [B, Hkv / N (or 1), S, D]
    return out


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over the group. Row-major first: the collective sums raw storage, and two ranks can hold the same
    logical tensor in different layouts (the CPU GEMM chooser may pick a different path on each rank, and its
    row-block path returns a transposed layout), which summed element by element of storage is garbage."""
    t = t.contiguous()
    dist.all_reduce(t)
    return t


def no_reduce(t: torch.Tensor) -> torch.Tensor:
    return t


def tp_layer_forward(dl: LayerDims, backends: dict, reduce, **inputs):
    """kernels.layer.layer_forward on the rank's shard, with `reduce` after the two row-parallel GEMMs."""
    return layer_forward(dl, backends, reduce=reduce, **inputs)


def shard_weight_bytes(model, world: int, element_bytes: int) -> int:
    """Weights one rank holds: its layer shards, vocab-parallel embedding and lm_head, the final norm."""
    dl, _, _ = local_dims(model.layer_dims, 0, world)
    d = model.layer_dims
    layer = d.hidden * (dl.q_size + 2 * dl.kv_size) + dl.q_size * d.hidden + 3 * d.hidden * dl.ffn + 2 * d.hidden
    if d.qkv_bias:
        layer += dl.q_size + 2 * dl.kv_size
    vocab_rows = math.ceil(d.vocab / world) * d.hidden * (1 if model.tied_embeddings else 2)
    return (model.layers * layer + vocab_rows + d.hidden) * element_bytes


def kv_bytes_per_rank(model, world: int, batch: int, context: int, element_bytes: int) -> int:
    dl, _, _ = local_dims(model.layer_dims, 0, world)
    return 2 * model.layers * batch * context * dl.kv_size * element_bytes


# ---------------------------------------------------------------------------------------------------
# Timers


def _sync(device) -> None:
    if device.kind == "cuda":
        torch.cuda.synchronize()


def agreed_plan(fn, device, budget_s: float, flushed: bool) -> tuple[int, int]:
    """(samples, calls per sample) every rank runs: a collective needs the same count on every rank.

    Calls per sample: enough back-to-back calls for ~COLLECTIVE_SAMPLE_S, so that the skew with which
    ranks leave the barrier (paid once per sample, as in NCCL-tests' timed loops) is amortised; 1 when
    the cache is flushed before each sample, so every timed call starts cold.
    """
    _sync(device)
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(3):
        fn()
    _sync(device)
    one = max((time.perf_counter() - t0) / 3, 1e-9)
    inner = 1 if flushed else max(1, min(MAX_CALLS_PER_SAMPLE, math.ceil(COLLECTIVE_SAMPLE_S / one)))
    n = max(MIN_SAMPLES, min(MAX_COLLECTIVE_SAMPLES, int(budget_s / (one * inner))))
    # every rank takes the smallest sample count and the largest calls per sample (one all-reduce: MIN of -inner)
    t = torch.tensor([n, -inner], dtype=torch.int64, device=device.torch_device if device.kind == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t[0].item()), int(-t[1].item())


def time_collective(fn, device, budget_s: float, flusher) -> Timing:
    """Fixed sample count on every rank (an adaptive stop would leave a rank waiting in a collective);
    each sample starts behind a barrier so the ranks start together, then runs `inner` calls."""
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    warmup = time.perf_counter() - t0
    n, inner = agreed_plan(fn, device, budget_s, flusher is not None)
    samples = []
    for _ in range(n):
        if flusher is not None:
            flusher()
        _sync(device)
        dist.barrier()
        if device.kind == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(inner):
                fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / 1e3 / inner)
        else:
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            samples.append((time.perf_counter() - t0) / inner)
    return Timing(samples, warmup, flusher is not None, inner)


def graphed(fn, device):
    """`fn` captured into a CUDA graph, returned as its replay; None where capture fails (or on a CPU).

    NCCL collectives can be captured (NCCL >= 2.9.6): the replay then runs the layer's kernels and its
    all-reduces with no launch gaps, as a serving engine's decode graph does. The warm-up call runs on a
    side stream first, as capture requires; every rank makes the same calls, so collectives stay matched.
    """
    if device.kind != "cuda":
        return None
    try:
        graph = capture_graph(fn)
        torch.cuda.synchronize()
        return graph.replay
    except RuntimeError:
        torch.cuda.synchronize()
        return None


def graphs_on_every_rank(replays: list, device) -> bool:
    """True when every rank captured every graph (else all ranks fall back to eager launches together)."""
    ok = torch.tensor([int(all(r is not None for r in replays))], dtype=torch.int64,
                      device=device.torch_device if device.kind == "cuda" else "cpu")
    dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item())


def time_local(fn, device, budget_s: float, flusher) -> Timing:
    """Per-rank work with no collective: bench.measure.timing's adaptive timer."""
    timer = time_cuda if device.kind == "cuda" else time_cpu
    return timer(lambda _: fn(), [None], budget_s, flusher)


# ---------------------------------------------------------------------------------------------------
# The worker


def add_worker_arguments(p) -> None:
    p.add_argument("--model", default="tiny", help="a dense model: a catalog name or a config.json path (default tiny)")
    p.add_argument("--batch", default="1,8", help="comma list of batch sizes (default 1,8)")
    p.add_argument("--context", default="512", help="comma list of context lengths (default 512)")
    p.add_argument("--dtype", help="bf16 | fp16 | fp32 (default bf16 on GPU, fp32 on CPU)")
    p.add_argument("--backend", default="torch", help="backend spec for the ops (default torch)")
    p.add_argument("--device", default="auto", help="auto | cuda | cpu")
    p.add_argument("--out", default="results", help="folder for the results files (default results/)")
    p.add_argument("--budget-s", default="1.0", help="timing budget per timed item in seconds (default 1.0)")
    p.add_argument("--price-per-hour", help="$ per GPU-hour (default: the catalog's)")
    p.add_argument("--power-kw", help="all-in kW per GPU (default: the catalog's)")
    p.add_argument("--seed", type=int, default=0, help="weights and inputs seed (default 0)")
    p.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_false",
                   help="time eager launches instead of CUDA-graph replays (GPU)")


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    out64 = out.detach().double().cpu()
    ref = ref.cpu()
    if not torch.isfinite(out64).all():
        return math.nan
    return ((out64 - ref).norm() / ref.norm()).item()


def quiet(what: str) -> None:
    pass


def every_rank(flag: bool, device) -> bool:
    """True only when `flag` holds on every rank (one all-reduce MIN)."""
    t = torch.tensor([int(flag)], dtype=torch.int64, device=device.torch_device if device.kind == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def every_rank_copy_bandwidth(device, world: int) -> tuple[float, list]:
    """(this rank's copy bandwidth, every rank's) in bytes/s, measured by all ranks at once after a barrier;
    each rank's roofline reads its own, the group's step the slowest."""
    from bench.measure.bandwidth import copy_bandwidth

    dist.barrier()
    copy_bw = copy_bandwidth(device, budget_s=1.0 if device.kind == "cuda" else 0.3)["measured_copy_gbps"] * 1e9
    copy_bws = [None] * world
    dist.all_gather_object(copy_bws, copy_bw)
    return copy_bw, copy_bws


def gate_layer(forward, reference, inputs: dict, dtype_name: str, device, poison=None) -> dict:
    """The correctness gate of a sharded layer, on every rank: the group's output, forward(all_reduce_sum,
    **inputs) on fresh cache copies (poisoned first where `poison` says which slots the layer must write),
    against reference() = the one-process float64 layer (y, r2); valid only when every rank passes."""
    fresh = _fresh(inputs)
    if poison is not None:
        poison(fresh)
    y, r2 = forward(all_reduce_sum, **fresh)
    ref_y, ref_r2 = reference()
    err = max(rel_error(y, ref_y), rel_error(r2, ref_r2))
    tol = TOLERANCE[dtype_name]
    out = {"rel_error": err, "tolerance": tol, "valid": every_rank(err <= tol, device)}
    out["check"] = "ok" if out["valid"] else \
        f"relative error {err:.2e} (this rank) above tolerance {tol:.0e} on some rank"
    return out


def _timed_fns(fns: dict, device, cuda_graph: bool) -> tuple[dict, str]:
    """(the callables to time, the timer's name): CUDA-graph replays where every rank captured every one."""
    if device.kind != "cuda":
        return fns, "cpu-perf-counter"
    if cuda_graph:
        replays = {k: graphed(f, device) for k, f in fns.items()}
        if graphs_on_every_rank(list(replays.values()), device):
            return replays, "cuda-graph"
        return fns, "cuda-events (graph capture failed on some rank)"
    return fns, "cuda-events"


def time_layer(forward, inputs: dict, device, budget_s: float, cuda_graph: bool, phase=None) -> dict:
    """The sharded layer on this rank: `step` with its all-reduces (a collective timer, every rank the
    same sample count) and `compute` alone (the all-reduces replaced by nothing; bench.measure.timing's timer)."""
    phase = phase or quiet
    llc = device_catalog.last_level_cache_bytes(device)
    flusher = CacheFlusher(device.torch_device, llc) if results_fit_cache(inputs, llc) else None
    fns, timer = _timed_fns({"step": lambda: forward(all_reduce_sum, **inputs),
                             "compute": lambda: forward(no_reduce, **inputs)}, device, cuda_graph)
    phase("timing the layer step")
    step = time_collective(fns["step"], device, budget_s, flusher)
    phase("timing the layer's compute alone")
    compute = time_local(fns["compute"], device, budget_s, flusher)
    return {"step": {**step.summary(), "timer": timer}, "compute": {**compute.summary(), "timer": timer}}


def time_all_reduce(rows: int, hidden: int, dtype, device, budget_s: float, cuda_graph: bool) -> dict:
    """One all-reduce of [rows, H] on this rank (a collective timer), as the layer runs it twice."""
    buf = torch.randn((rows, hidden), device=device.torch_device).to(dtype)
    fns, timer = _timed_fns({"all_reduce": lambda: dist.all_reduce(buf)}, device, cuda_graph)
    return {**time_collective(fns["all_reduce"], device, budget_s, None).summary(), "timer": timer}


def time_tail(rows: int, d: LayerDims, world: int, dtype, backends, device, budget_s: float, seed: int) -> dict:
    """The model-level ops on this rank at `rows` rows: the final norm (replicated) and its vocab shard of
    the LM head (V / N rows), timed alone (no collective; the logits all-gather is not timed), with their
    FLOPs and bytes."""
    eb = torch.empty((), dtype=dtype).element_size()
    llc = device_catalog.last_level_cache_bytes(device)
    fn_shape = norm.NormShape(rows, d.hidden, d.norm_eps)
    fn_in = norm.make_inputs(fn_shape, dtype, device.torch_device, seed + 1)
    head = gemm.GemmShape(rows, d.hidden, math.ceil(d.vocab / world))
    head_in = gemm.make_inputs(head, dtype, device.torch_device, seed + 2)
    flusher = CacheFlusher(device.torch_device, llc) if results_fit_cache([fn_in, head_in], llc) else None
    fnorm = time_local(lambda: implementation("norm", backends["norm"])(**fn_in), device, budget_s, flusher)
    lm = time_local(lambda: implementation("gemm", backends["gemm"])(**head_in), device, budget_s, flusher)
    return {"final_norm": fnorm.summary(), "lm_head": lm.summary(),
            "final_norm_flops": norm.flops(norm.NormShape(rows, d.hidden)),
            "final_norm_bytes": norm.min_bytes(norm.NormShape(rows, d.hidden), eb),
            "lm_head_flops": gemm.flops(head), "lm_head_bytes": gemm.min_bytes(head, eb)}


def measure_combo(model, dtype_name, backends, device, rank, world, batch, context, budget_s, seed,
                  cuda_graph: bool = True, phase=quiet) -> dict:
    """Verify, then time, on this rank; returns this rank's figures. `phase(text)` is told what it is
    doing now (rank 0 shows it as progress)."""
    d = model.layer_dims
    dtype = torch_dtype(dtype_name)
    phase("building the weights and inputs")
    full = make_layer_inputs(d, batch, context, dtype, device.torch_device, seed)
    inputs = shard_inputs(d, full, rank, world)
    dl, _, _ = local_dims(d, rank, world)
    out = {"rank": rank, "batch": batch, "context": context}

    def forward(reduce, **inp):
        return tp_layer_forward(dl, backends, reduce, **inp)

    # the gate: the group's output against the one-process float64 reference, checked on every rank
    phase("checking against the float64 reference")
    out.update(gate_layer(forward, lambda: layer_reference(d, **full), inputs, dtype_name, device))
    del full
    if not out["valid"]:
        return out
    out.update(time_layer(forward, inputs, device, budget_s, cuda_graph, phase))
    phase("timing one all-reduce")
    out["all_reduce"] = time_all_reduce(batch, d.hidden, dtype, device, budget_s, cuda_graph)
    phase("timing the final norm and the LM head shard")
    out.update(time_tail(batch, d, world, dtype, backends, device, budget_s, seed))
    eb = torch.empty((), dtype=dtype).element_size()
    out.update(layer_flops=layer_flops(dl, batch, context), layer_bytes=layer_min_bytes(dl, batch, context, eb),
               all_reduce_bytes=batch * d.hidden * eb)
    return out


def results_fit_cache(inputs, llc: int) -> bool:
    return tensor_bytes(inputs) < 2 * llc


def _fresh(inputs: dict) -> dict:
    """A copy whose KV caches the check may write (or poison) without touching the timed inputs."""
    out = dict(inputs)
    for name in CACHE_KEYS:
        if inputs.get(name) is not None:
            out[name] = inputs[name].clone()
    return out


def bus_bandwidth(nbytes: int, seconds: float, world: int) -> tuple[float, float]:
    """(algbw, busbw) in bytes/s for an all-reduce, NCCL-tests convention: busbw = algbw * 2 (n-1) / n."""
    algbw = nbytes / seconds
    return algbw, algbw * 2 * (world - 1) / world


def rows_and_step(model, plan: dict, per_rank: list, device, world: int, economics) -> tuple[list, dict]:
    """Rank 0: one row per (rank, timed item) and the group's derived decode step."""
    first = per_rank[0]
    batch, context, dtype = first["batch"], first["context"], plan["dtype"]
    eb = torch.empty((), dtype=torch_dtype(dtype)).element_size()
    base = {"batch": batch, "context": context, "backend": plan["backend"], "dtype": dtype, "tp": world}
    rows = []
    if not all(r["valid"] for r in per_rank):
        for r in per_rank:
            rows.append(TpRow.build(**base, op="tp_layer", rank=r["rank"], valid=False, check=r["check"],
                                    rel_error=r["rel_error"], tolerance=r["tolerance"]))
        return rows, TpStep.build(**base, valid=False, fits=True,
                                  reason="the sharded layer failed its check; not timed")
    # each rank's own copy bandwidth (measured by all ranks at once, as they run); the step reads the lowest
    copy_bws = [r.get("copy_bw") for r in per_rank]
    copy_bw = min(copy_bws) if all(copy_bws) else None
    items = (("tp_layer", "step", "layer_flops", "layer_bytes"),
             ("tp_layer_compute", "compute", "layer_flops", "layer_bytes"),
             ("final_norm", "final_norm", "final_norm_flops", "final_norm_bytes"),
             ("lm_head_shard", "lm_head", "lm_head_flops", "lm_head_bytes"))
    for r in per_rank:
        common = {**base, "rank": r["rank"], "valid": True, "check": "ok", "rel_error": r["rel_error"],
                  "tolerance": r["tolerance"]}
        for op, key, fkey, bkey in items:
            t = r[key]
            rows.append(TpRow.build(**{**common, "op": op, **t, "flops": r[fkey], "bytes": r[bkey],
                                       **roofline.derive(r[fkey], r[bkey], t["seconds_p50"], dtype, device.spec,
                                                         r.get("copy_bw"))}))
        t = r["all_reduce"]
        algbw, busbw = bus_bandwidth(r["all_reduce_bytes"], t["seconds_p50"], world)
        rows.append(TpRow.build(**{**common, "op": "all_reduce", **t, "flops": 0, "bytes": r["all_reduce_bytes"],
                                   "tflops": 0.0, "gbps": algbw / 1e9, "algbw_gbps": algbw / 1e9,
                                   "busbw_gbps": busbw / 1e9}))
    slowest = {key: max(r[key]["seconds_p50"] for r in per_rank)
               for key in ("step", "compute", "all_reduce", "final_norm", "lm_head")}
    layer_s = slowest["step"]
    step_s = compose(model.layers, layer_s, slowest["final_norm"], slowest["lm_head"])
    rates = decode_rates(batch, step_s)
    per_gpu = rates["tokens_per_s"] / world
    weights_gpu = shard_weight_bytes(model, world, eb)
    kv_gpu = kv_bytes_per_rank(model, world, batch, context, eb)
    ar_layer = 2 * slowest["all_reduce"]
    _, busbw = bus_bandwidth(first["all_reduce_bytes"], slowest["all_reduce"], world)
    step = TpStep.build(**{
        **base, "valid": True, "derived": True, "layers": model.layers,
        "derivation": "layers x tp_layer (slowest rank, 2 all-reduces inside) + final_norm + lm_head shard; "
                      "the logits all-gather is not timed",
        "step_seconds": step_s, "layer_seconds": layer_s, "layer_compute_seconds": slowest["compute"],
        "all_reduce_seconds": slowest["all_reduce"], "all_reduce_seconds_per_layer": ar_layer,
        "all_reduce_share": ar_layer / layer_s,
        "all_reduce_share_from_difference": max(0.0, layer_s - slowest["compute"]) / layer_s,
        "all_reduce_busbw_gbps": busbw / 1e9,
        "kernel_seconds_per_rank": [r["compute"]["seconds_p50"] for r in per_rank],
        "all_reduce_seconds_per_rank": [r["all_reduce"]["seconds_p50"] for r in per_rank],
        "tokens_per_s": rates["tokens_per_s"], "tokens_per_s_per_gpu": per_gpu,
        "tokens_per_s_per_user": rates["tokens_per_s_per_user"],
        "weight_bytes_per_gpu": weights_gpu, "kv_bytes_per_gpu": kv_gpu,
        "bytes_needed_per_gpu": weights_gpu + kv_gpu, "memory_bytes": device.memory_bytes,
        "fits": weights_gpu + kv_gpu <= device.memory_bytes,
    })
    # one rank's work per step (rank 0's shard; all ranks hold equal shards), for per-GPU GB/s and TFLOP/s
    flops = compose(model.layers, first["layer_flops"], first["final_norm_flops"], first["lm_head_flops"])
    nbytes = compose(model.layers, first["layer_bytes"], first["final_norm_bytes"], first["lm_head_bytes"])
    step.set(flops_per_gpu=flops, bytes_per_gpu=nbytes, bytes_needed=weights_gpu + kv_gpu,
             **roofline.derive(flops, nbytes, step_s, dtype, device.spec, copy_bw))
    price_step(step, per_gpu, economics, weights_gpu + kv_gpu, device, per=" per GPU")
    return rows, step


# Set by the tp launcher when the user's stderr is a terminal: it reads the group's stderr through a pipe
# (to keep torchrun's shutdown traceback off the terminal on Ctrl-C), so rank 0 cannot see the terminal itself.
TERMINAL_ENV = "TOKENBENCH_STDERR_IS_TERMINAL"


def rank0_console():
    """Rank 0's stderr console: a terminal's own width, else COLUMNS (the launcher passes its terminal's)."""
    from rich.console import Console

    from bench.report.terminal_tables import console_width

    forced = True if os.environ.get(TERMINAL_ENV) == "1" else None
    return Console(stderr=True, width=console_width(sys.stderr), force_terminal=forced)


def run(args) -> int:
    return run_on_group(args.device, functools.partial(_measure_on_group, args))


def _measure_on_group(args, rank: int, world: int, device) -> int:
    sweep = TpSweep(args, rank, world, device)
    run = run_plan(sweep, device)
    if rank == 0:
        sweep.say(sweep.console, f"wrote {run.writer.json_path}")
    return run.status


class TpSweep(SweepPlan):
    """`tokenbench tp` on one rank, for the measuring engine: every rank measures each (batch, context) (the
    sharded layer gated against the one-process float64 layer, then timed), the ranks' figures are gathered,
    and rank 0 alone writes the record (a row per rank and timed item, the group's step) and shows progress."""

    def __init__(self, args, rank: int, world: int, device):
        from bench.configs.model_configs import get_model, refuse_moe
        from bench.derive.run_pricing import economics_for, run_price_quote
        from bench.parsing import choice, positive_float, positive_int_list
        from kernels.dtypes import TORCH_DTYPES

        self.args, self.rank, self.world, self.device = args, rank, world, device
        self.model = get_model(args.model)
        refuse_moe(self.model, "`tokenbench tp`")
        self.dtype = choice(args.dtype or ("bf16" if device.kind == "cuda" else "fp32"), tuple(TORCH_DTYPES), "dtype")
        self.batches = positive_int_list(args.batch, "--batch")
        self.contexts = positive_int_list(args.context, "--context")
        self.budget = positive_float(args.budget_s, "--budget-s")
        self.backends = parse_backend(args.backend)
        local_dims(self.model.layer_dims, 0, world)  # shape errors before any work
        self.price = run_price_quote(args, device)
        self.economics = economics_for(self.price)
        self.unit = "GPU" if device.kind == "cuda" else "rank (CPU process)"
        self.cases = [(b, c) for b in self.batches for c in self.contexts]
        self.console = rank0_console() if rank == 0 else None  # only rank 0 writes and shows progress
        self.step = None  # the group step rank 0 composed from the last case's gathered figures

    @staticmethod
    def say(console, text: str) -> None:
        console.print(text, highlight=False, markup=False, soft_wrap=True)

    def open(self, device):
        if self.rank != 0:
            return None, None
        writer, record = store.open_record(
            "tp", self.args.out, device, environment.capture(), (self.model.name, self.dtype, f"tp{self.world}"),
            {"batches": self.batches, "contexts": self.contexts, "backends": [self.args.backend],
             "budget_s": self.budget, "tp": self.world},
            model=self.model, dtype=self.dtype, price=self.price,
            tp={"world_size": self.world, "process_group_backend": dist.get_backend(),
                "nnodes": int(os.environ.get("GROUP_WORLD_SIZE", "1")),
                "sharding": "Megatron: column-parallel qkv and gate_up, row-parallel o and down, "
                            "2 all-reduces of [B, H] per layer",
                "bus_bandwidth": "NCCL-tests convention: busbw = algbw * 2 (n-1) / n"})
        self.say(self.console, f"tokenbench tp: {self.world} ranks ({dist.get_backend()}) on {device.name}; model "
                               f"{self.model.name}, {self.dtype}, batch {self.batches}, context {self.contexts}")
        return writer, record

    def measure_ceilings(self, device, record, writer) -> None:
        self.copy_bw, copy_bws = every_rank_copy_bandwidth(device, self.world)
        if record is not None:
            record["measured_copy_gbps_per_rank"] = [b / 1e9 for b in copy_bws]

    def total(self) -> int:
        return len(self.cases)

    def groups(self):
        for batch, context in self.cases:
            label = f"b={batch} ctx={context}"
            yield Group(label, [Case(label, lambda phase, b=batch, c=context: self._measure(b, c, phase),
                                     line=lambda rows: step_line(self.step, self.unit), line_on_terminal=True)])

    def _measure(self, batch: int, context: int, phase) -> list:
        mine = measure_combo(self.model, self.dtype, self.backends, self.device, self.rank, self.world, batch,
                             context, self.budget, self.args.seed, cuda_graph=getattr(self.args, "cuda_graph", True),
                             phase=phase)
        mine["copy_bw"] = self.copy_bw
        gathered = [None] * self.world
        dist.all_gather_object(gathered, mine)
        if self.rank != 0:
            return []
        rows, self.step = rows_and_step(self.model, {"dtype": self.dtype, "backend": self.args.backend}, gathered,
                                        self.device, self.world, self.economics)
        return rows

    def derive(self, group: Group, rows: list) -> list:
        return [self.step] if self.rank == 0 else []


def step_line(s: TpStep, unit: str = "GPU") -> str:
    if not s.valid:
        return f"b={s.batch} ctx={s.context}: {s.reason}"
    return (f"b={s.batch} ctx={s.context} tp={s.tp}: layer {s.layer_seconds * 1e6:.1f} us "
            f"(compute {s.layer_compute_seconds * 1e6:.1f} us, all-reduce {s.all_reduce_seconds * 1e6:.1f} us "
            f"x2 = {s.all_reduce_share:.0%} of the layer; layer - compute = "
            f"{s.all_reduce_share_from_difference:.0%}; busbw {s.all_reduce_busbw_gbps:.3f} GB/s); "
            f"step {s.step_seconds * 1e3:.3f} ms, {s.tokens_per_s:.1f} tok/s, "
            f"{s.tokens_per_s_per_gpu:.1f} tok/s per {unit}; fits {s.fits}")


def main(argv=None) -> int:
    return worker_main(argv, "bench.sweeps.tp_sweep", __doc__, add_worker_arguments, run, "tp")


if __name__ == "__main__":
    sys.exit(main())

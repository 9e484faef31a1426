"""Peer benchmark: tokenbench's whole-model decode step beside Hugging Face transformers' on this machine
(`tokenbench peer`, bench/commands/peer.py).

    tokenbench peer --model llama-3.2-1b --context 512 --batch 1,8 --dtype fp32,bf16 --rounds 3

Both run the same weights (HF's parameters are views into tokenbench's fused qkv / gate_up tensors, so
the model is held once) and a KV cache of the same length, in one process, alternating A/B each round:
on a shared machine only ratios measured that way mean anything. Both are checked against a float64
reference first. The bound is (weights + KV bytes) / the copy bandwidth measured in the same run.
Not part of `make test`'s pass/fail: it measures, it does not assert.
"""
from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass, field

import torch

from bench.configs.model_configs import ModelConfig
from kernels import hf_mapping as hf
from kernels import rope
from kernels.backends import parse_backend
from kernels.dtypes import TOLERANCE, generator, randn, torch_dtype
from kernels.model import model_forward, model_reference

DTYPES = ("fp32", "bf16")
SIDES = ("tokenbench", "transformers")


@dataclass
class PeerRow:
    """One dtype x batch: tokens/s per round for each side, the correctness check, the bound."""
    dtype: str
    batch: int
    context: int
    tokens_per_s: dict = field(default_factory=lambda: {s: [] for s in SIDES})
    rel_error: dict = field(default_factory=dict)
    tolerance: float = 0.0
    bound_tokens_per_s: float = 0.0
    bytes_per_step: int = 0

    @property
    def valid(self) -> bool:
        return all(e == e and e <= self.tolerance for e in self.rel_error.values()) and len(self.rel_error) == 2

    def ratio(self) -> list[float]:
        """tokenbench / transformers, per round (each round's pair was measured back to back)."""
        return [a / b for a, b in zip(self.tokens_per_s["tokenbench"], self.tokens_per_s["transformers"])]


def _rel(out, ref) -> float:
    out = out.double()
    return float(((out - ref).norm() / ref.norm()).item()) if torch.isfinite(out).all() else float("nan")


def build_models(m: ModelConfig, dtype: torch.dtype, attn: str):
    """(HF LlamaForCausalLM, our model weights) sharing storage; random weights, norms near 1."""
    from transformers import LlamaForCausalLM

    d = m.layer_dims
    cfg = hf.llama_config(d, m.layers)
    cfg._attn_implementation = attn
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        model = LlamaForCausalLM(cfg).eval()
    finally:
        torch.set_default_dtype(previous)
    g = generator(7, "cpu")
    with torch.no_grad():
        for p in model.parameters():  # HF's init is std 0.02 and norms of exactly 1: redraw at unit scale
            scale = 0.1 if p.dim() == 1 else p.shape[1] ** -0.5
            p.copy_(randn(tuple(p.shape), torch.float32, "cpu", g, scale=scale).to(dtype) + (p.dim() == 1))
    ours = {"embed": model.model.embed_tokens.weight.detach(), "final_norm": model.model.norm.weight.detach(),
            "lm_head": model.lm_head.weight.detach(), "layers": []}
    for i, layer in enumerate(model.model.layers):
        prefix = f"model.layers.{i}."
        weights = hf.layer_weights_from_hf(layer.state_dict(prefix=prefix), d, prefix)
        # rebind HF's parameters as views of the fused tensors, so the weights are held once
        for name, tensor in hf.layer_weights_to_hf_views(weights, d).items():
            owner, attr = layer.get_submodule(name.rsplit(".", 1)[0]), name.rsplit(".", 1)[1]
            setattr(owner, attr, torch.nn.Parameter(tensor, requires_grad=False))
        ours["layers"].append(weights)
    gc.collect()
    return model, ours


class Step:
    """One decode step of one side, repeatable: the cache is put back to `context - 1` tokens each time."""

    def __init__(self, m: ModelConfig, model, ours: dict, batch: int, context: int, dtype: torch.dtype):
        from transformers.cache_utils import DynamicCache

        d = m.layer_dims
        g = generator(11 + batch, "cpu")
        self.d, self.model, self.ours, self.context = d, model, ours, context
        self.tokens = torch.randint(0, d.vocab, (batch,), generator=g)
        past = [tuple(randn((batch, d.kv_heads, context - 1, d.head_dim), dtype, "cpu", g) for _ in range(2))
                for _ in range(m.layers)]
        self.cache = DynamicCache()
        for i, (k, v) in enumerate(past):
            self.cache.update(k.clone(), v.clone(), i)
        # ours: the same past and a NaN slot for the new token, which the step must fill before use
        self.layers = [{"weights": w, "k_cache": torch.cat([k, torch.full_like(k[:, :, :1], float("nan"))], 2),
                        "v_cache": torch.cat([v, torch.full_like(v[:, :, :1], float("nan"))], 2)}
                       for w, (k, v) in zip(ours["layers"], past)]
        self.positions = torch.full((batch,), context - 1)
        self.cos, self.sin = rope.cos_sin(self.positions, d.head_dim, d.rope_theta)
        self.backends = parse_backend("torch")
        self.cache_arg = hf.cache_kwarg(model.forward)

    def tokenbench(self):
        x = self.ours["embed"][self.tokens]  # the embedding gather, as HF's step does it
        return model_forward(self.d, self.backends, x, torch.zeros_like(x), self.positions, self.cos, self.sin,
                             self.layers, self.ours["final_norm"], self.ours["lm_head"])

    def transformers(self):
        out = self.model(input_ids=self.tokens[:, None], use_cache=True, **{self.cache_arg: self.cache})
        self.cache.crop(-1)  # drop the new token: the same length for the next step (4.x and 5.x)
        return out.logits[:, -1]

    def reference(self):
        x = self.ours["embed"][self.tokens]
        layers = [{**layer, "k_cache": layer["k_cache"].clone(), "v_cache": layer["v_cache"].clone()}
                  for layer in self.layers]
        return model_reference(self.d, x, torch.zeros_like(x), self.positions, self.cos, self.sin, layers,
                               self.ours["final_norm"], self.ours["lm_head"])[0]


def _median_step_s(fn, steps: int) -> float:
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(m: ModelConfig, dtype_name: str, batches: list, context: int, rounds: int, steps: int,
            copy_bps: float, attn: str, log=print) -> list[PeerRow]:
    dtype = torch_dtype(dtype_name)
    model, ours = build_models(m, dtype, attn)
    rows = []
    with torch.no_grad():
        for batch in batches:
            step = Step(m, model, ours, batch, context, dtype)
            row = PeerRow(dtype_name, batch, context, tolerance=TOLERANCE[dtype_name] * m.layers ** 0.5)
            ref = step.reference()
            for side in SIDES:
                row.rel_error[side] = _rel(getattr(step, side)(), ref)
            del ref
            row.bytes_per_step = m.decode_weight_bytes(dtype_name) + m.kv_cache_bytes(batch, context, dtype_name)
            row.bound_tokens_per_s = batch * copy_bps / row.bytes_per_step
            for r in range(rounds):
                order = SIDES if r % 2 == 0 else SIDES[::-1]  # alternate who goes first
                for side in order:
                    fn = getattr(step, side)
                    fn()  # warm: allocator, first-call dispatch, the GEMM chooser's calibration
                    row.tokens_per_s[side].append(batch / _median_step_s(fn, steps))
            log(f"  {dtype_name} batch {batch}: done")
            rows.append(row)
            del step
            gc.collect()
    del model, ours
    gc.collect()
    return rows


def _span(values: list) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def table(rows: list[PeerRow], copy_gbps: float) -> str:
    lines = [f"copy bandwidth {copy_gbps:.1f} GB/s (read + write), measured in this run",
             "| dtype | batch | tokenbench tok/s | transformers tok/s | ratio tb/hf | bound tok/s "
             "| tb of bound | check (rel err tb / hf, tol) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        tb, hft = r.tokens_per_s["tokenbench"], r.tokens_per_s["transformers"]
        of_bound = [t / r.bound_tokens_per_s for t in tb]
        check = "ok" if r.valid else "FAILED"
        lines.append(f"| {r.dtype} | {r.batch} | {_span(tb)} | {_span(hft)} | {_span(r.ratio())} "
                     f"| {r.bound_tokens_per_s:.1f} | {_span(of_bound)} | {check} "
                     f"({r.rel_error['tokenbench']:.1e} / {r.rel_error['transformers']:.1e}, {r.tolerance:.1e}) |")
    return "\n".join(lines)


@dataclass(frozen=True)
class PeerPlan:
    """What `tokenbench peer` measures: one dense model at one context, per dtype and batch."""
    model: ModelConfig
    dtypes: list
    batches: list
    context: int
    rounds: int
    steps: int
    hf_attention: str = "sdpa"


@dataclass
class PeerResult:
    rows: list
    copy_gbps: float
    seconds: float
    interrupted: bool = False


def run(plan: PeerPlan, say=print) -> PeerResult:
    """Both sides at every dtype x batch of the plan, on the CPU; `say` gets the device line and one line per
    finished row. Ctrl-C keeps the rows measured before it."""
    from bench.measure.bandwidth import copy_bandwidth
    from bench.configs.device_catalog import detect

    device = detect("cpu")
    copy = copy_bandwidth(device)
    say(f"device: {device.name}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    t0, rows, interrupted = time.perf_counter(), [], False
    for dtype in plan.dtypes:
        try:
            rows += measure(plan.model, dtype, plan.batches, plan.context, plan.rounds, plan.steps,
                            copy["measured_copy_gbps"] * 1e9, plan.hf_attention, log=say)
        except KeyboardInterrupt:  # keep what was measured
            interrupted = True
            break
    return PeerResult(rows, copy["measured_copy_gbps"], time.perf_counter() - t0, interrupted)


def summary(plan: PeerPlan, result: PeerResult) -> str:
    return (("interrupted: the rows below are those measured\n" if result.interrupted else "")
            + f"{plan.model.name}, context {plan.context}, {plan.rounds} rounds x {plan.steps} steps, "
            f"HF attention {plan.hf_attention}, {result.seconds:.0f} s")


def calibration_table() -> str:
    """What each CPU GEMM candidate reached in tokenbench's calibration (weight GB/s), and which won."""
    from kernels.cpu_gemm import calibrations

    lines = ["CPU GEMM paths (weight bytes / median seconds in the calibration; * = chosen):"]
    for m, k, n, dtype, choice in calibrations():
        elt = 4 if dtype == "fp32" else 2
        reached = ", ".join(f"{'*' if name == choice.name else ''}{name} {n * k * elt / s / 1e9:.1f}"
                            for name, s in choice.seconds.items())
        failed = [name for name, e in choice.errors.items() if name not in choice.seconds]
        lines.append(f"  {dtype} M={m} K={k} N={n}: {reached} GB/s" + (f"; failed check: {failed}" if failed else ""))
    return "\n".join(lines)

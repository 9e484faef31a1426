"""A cohort of C requests run end to end with tokenbench's own model: the measured wall time that the
composed workload figure (prefill step + decode steps from measured layers) is checked against.

The engine model is "prefill first, then decode" (the simpler bound of issue 13):

  (a) prefill: the C prompts of ISL tokens, in groups (see `prefill_plan`):
        - ISL <= chunk: whole prompts packed b = max(1, chunk // ISL) to a prefill batch (b x ISL <= chunk),
          groups of b sequences in order, the last group smaller when b does not divide C;
        - ISL > chunk: one sequence at a time, in chunks of `chunk` tokens (the last one shorter), each chunk
          continuing the KV cache the earlier ones wrote (chunked prefill, kernels/prefill_layer.py).
      Every layer has its own weights and its own KV cache of ISL + OSL slots per sequence. After a group's
      last chunk, final norm + LM head on each sequence's last prompt token: that gives the FIRST answer
      token.
  (b) decode: OSL - 1 steps at batch C produce answer tokens 2 .. OSL. Step j (1-based) feeds answer token j
      at position ISL + j - 1, so its attention reads context = ISL + j cache entries (its own included, the
      `context` of kernels/layer.py's decode layer): contexts ISL + 1 .. ISL + OSL - 1 (`decode_contexts`).
      Each step is the whole model: every layer, final norm, LM head.

  Composition that matches this run exactly (what `tokenbench workload` composes):
      prefill_time(the groups and chunks of `prefill_plan`) + sum over c in decode_contexts(ISL, OSL) of
      decode_step(batch C, context c), with OSL - 1 decode steps (none when OSL = 1).

Inputs are the model's own: a token's activation is the row of a fixed random embedding table (the LM head's
weight, as in a tied-embedding model) and the residual stream starts at zero, as a Hugging Face Llama's
does; prompt tokens are random ids, answer tokens the greedy argmax of the previous logits. So the e2e step
also gathers C embedding rows, takes an argmax over C x vocab logits and sets a finiteness flag on them: each
reads C x vocab or C x hidden elements, about 0.2% of a Llama-3.2-1B step's bytes at C = 16; the composed
step leaves them out.

Timing: a host clock (time.perf_counter) around each prefill group and each decode step, with
torch.cuda.synchronize before every reading on CUDA (an engine syncs each step too, to read the sampled
tokens). prefill_s and decode_s are the sums of those intervals; wall_s runs from the first prefill group to
the end of the last step and includes the little between them, so prefill_s + decode_s <= wall_s.

Warm-up (untimed, reported as warmup_s): every distinct prefill group shape once (the first group and, when
smaller, the last), then one decode step at batch C, on the same weights and caches, which are then poisoned
again. It takes out the first-call costs the composed measurements also take out: the allocator's first
touch of the caches, kernels/cpu_gemm.py's per-shape path calibration and weight packing (keyed by the row
count, so a one-sequence warm-up would leave the batch-C calibration inside decode step 1), CUDA's first
launches. It does not run the whole cohort.

Correctness, before anything is timed (`verify_cohort`): short cohorts on the same weights (C=2, ISL 8,
OSL 3, chunk 4: prompts in 2 chunks; C=3, ISL 4, OSL 3, chunk 8: groups of 2 then 1) give every step's logits,
which must match a float64 reference within the dtype's tolerance x sqrt(layers) (kernels/model.py's
scaling). The reference shares nothing with the cached engine: it runs each request's whole token sequence
(prompt + the answer tokens the run produced) through the layers at once with causal attention, from the op
references (kernels/prefill_layer.py prefill_reference, kernels/norm.py, kernels/gemm.py), so a wrong cache
slot, RoPE position, chunk continuation or packed row shows. In the timed run itself every KV slot starts
NaN; afterwards slots 0 .. ISL + OSL - 2 of every layer must hold no NaN (each was written) and every
step's logits must be finite. A failed reference check stops before timing; any failure is in `check`.
"""
from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from bench.configs.device_catalog import LocalDevice
from bench.errors import UserError
from bench.configs.model_configs import ModelConfig, refuse_moe
from bench.sweeps.decode_sweep import available_bytes
from bench.measure.gate import relative_error
from kernels import gemm, norm, rope
from kernels.backends import BackendError, implementation, parse_backend
from kernels.dtypes import TOLERANCE, generator, randn, torch_dtype
from kernels.layer import LayerDims, layer_forward, make_layer_weights
from kernels.op import as_float64
from kernels.prefill_layer import Chunk, prefill_forward, prefill_reference

# weights + KV must fit in this share of the free memory (the rest: activations, the runtime)
MEMORY_FRACTION = 0.8
# The short cohorts the float64 check runs: (concurrency, isl, osl, chunk)
VERIFY_COHORTS = ((2, 8, 3, 4), (3, 4, 3, 8))


# ---------------------------------------------------------------------------------------------------
# The plan: which prefill groups and chunks, which decode contexts


@dataclass(frozen=True)
class PrefillGroup:
    """Sequences first .. first + batch - 1 prefilled together, chunk after chunk."""

    first: int
    batch: int
    chunks: tuple  # of kernels.prefill_layer.Chunk (batch, tokens, prefix)


def prefill_plan(concurrency: int, isl: int, chunk: int) -> list[PrefillGroup]:
    """ISL <= chunk: whole prompts, b = max(1, chunk // ISL) to a group, the last group smaller.
    ISL > chunk: one sequence a group, chunks of `chunk` tokens, the last one ISL mod chunk when that is > 0.
    """
    if min(concurrency, isl, chunk) < 1:
        raise UserError(f"concurrency, ISL and chunk must be positive (got {concurrency}, {isl}, {chunk})")
    if isl <= chunk:
        b = max(1, chunk // isl)
        sizes = [(first, min(b, concurrency - first)) for first in range(0, concurrency, b)]
        return [PrefillGroup(first, n, (Chunk(n, isl, 0),)) for first, n in sizes]
    chunks = tuple(Chunk(1, min(chunk, isl - p), p) for p in range(0, isl, chunk))
    return [PrefillGroup(i, 1, chunks) for i in range(concurrency)]


def decode_contexts(isl: int, osl: int) -> list[int]:
    """The context (cache entries attended, the new token's included) of each of the OSL - 1 decode steps."""
    return [isl + j for j in range(1, osl)]


# ---------------------------------------------------------------------------------------------------
# The model: every layer its own weights, the LM head's weight doubling as the embedding table


@dataclass
class CohortModel:
    """The model a cohort runs: build it once (make_cohort_model) and pass it to run_cohort for each
    concurrency, so the weights are drawn and float64-checked once."""

    name: str
    dtype: str
    backend: str
    dims: LayerDims
    layers: list  # per layer: make_layer_weights' dict
    final_norm: torch.Tensor  # [H]
    lm_head: torch.Tensor  # [V, H]; its rows are the token embeddings (tied)
    backends: dict  # op kind -> backend
    cos: torch.Tensor  # [max_positions, D/2] float32, every position a cohort reaches
    sin: torch.Tensor
    checked: CohortCheck | None = None  # verify_cohort's result, kept by run_cohort

    def ensure_positions(self, positions: int) -> None:
        """RoPE's cos/sin for positions 0 .. positions - 1 at least."""
        if self.cos.shape[0] < positions:
            d = self.dims
            self.cos, self.sin = rope.cos_sin(torch.arange(positions, device=self.cos.device), d.head_dim,
                                              d.rope_theta)

    @property
    def weight_bytes(self) -> int:
        tensors = [self.final_norm, self.lm_head] + [w for layer in self.layers for w in layer.values()
                                                     if w is not None]
        return sum(t.numel() * t.element_size() for t in tensors)


def make_cohort_model(model: ModelConfig, dtype: str, device: LocalDevice, backend: str, max_positions: int,
                      seed: int = 0) -> CohortModel:
    """Every layer's own weights (seeded per layer), the final norm and the LM head, on the device."""
    d, dt, dev = model.layer_dims, torch_dtype(dtype), device.torch_device
    layers = [make_layer_weights(d, dt, dev, seed * 1000 + i) for i in range(model.layers)]
    g = generator(seed + 31, dev)
    final = (1.0 + randn((d.hidden,), torch.float32, dev, g, scale=0.1)).to(dt)
    head = randn((d.vocab, d.hidden), dt, dev, g, scale=d.hidden**-0.5)
    cos, sin = rope.cos_sin(torch.arange(max_positions, device=dev), d.head_dim, d.rope_theta)
    return CohortModel(model.name, dtype, backend, d, layers, final, head, parse_backend(backend), cos, sin)


def make_caches(cm: CohortModel, batch: int, slots: int) -> list:
    """Per layer (k, v) [batch, Hkv, slots, D], every slot NaN until written."""
    d, ref = cm.dims, cm.lm_head
    shape = (batch, d.kv_heads, slots, d.head_dim)
    return [(torch.full(shape, math.nan, dtype=ref.dtype, device=ref.device),
             torch.full(shape, math.nan, dtype=ref.dtype, device=ref.device)) for _ in cm.layers]


def _logits(cm: CohortModel, x, residual) -> torch.Tensor:
    """Final norm and LM head on the given rows: [rows, V]."""
    rmsnorm = implementation("norm", cm.backends["norm"])
    h, _ = rmsnorm(x=x, residual=residual, w=cm.final_norm, eps=cm.dims.norm_eps)
    return implementation("gemm", cm.backends["gemm"])(x=h, w=cm.lm_head, b=None)


def prefill_group(cm: CohortModel, caches: list, group: PrefillGroup,
                  prompt_ids: torch.Tensor) -> torch.Tensor:
    """Prefill a group's prompts (prompt_ids [C, ISL]) into the caches; logits [batch, V] at their last
    tokens."""
    d, rows = cm.dims, slice(group.first, group.first + group.batch)
    for c in group.chunks:
        ids = prompt_ids[rows, c.prefix: c.prefix + c.tokens].reshape(-1)  # [b T], sequence-major
        x = cm.lm_head[ids]  # [b T, H] embedding gather
        residual = torch.zeros_like(x)
        positions = (c.prefix + torch.arange(c.tokens, device=x.device)).repeat(c.batch)
        cos, sin = cm.cos[positions], cm.sin[positions]
        end = c.prefix + c.tokens
        for w, (k, v) in zip(cm.layers, caches):
            # the cache up to the chunk's end only: prefill attention reads every slot it is given
            x, residual = prefill_forward(d, cm.backends, w, x, residual, k[rows, :, :end], v[rows, :, :end],
                                          c.prefix, cos, sin)
    last = torch.arange(group.batch, device=x.device) * group.chunks[-1].tokens + group.chunks[-1].tokens - 1
    return _logits(cm, x[last], residual[last])


def decode_step(cm: CohortModel, caches: list, ids: torch.Tensor, position: int) -> torch.Tensor:
    """One decode step of the whole model for every sequence: ids [C] at `position`; logits [C, V]."""
    d = cm.dims
    x = cm.lm_head[ids]  # [C, H]
    residual = torch.zeros_like(x)
    positions = torch.full((ids.shape[0],), position, dtype=torch.int64, device=x.device)
    cos, sin = cm.cos[positions], cm.sin[positions]
    for w, (k, v) in zip(cm.layers, caches):
        x, residual = layer_forward(d, cm.backends, w, x, residual, k[:, :, : position + 1],
                                    v[:, :, : position + 1], positions, cos, sin)
    return _logits(cm, x, residual)


def _sync(t: torch.Tensor) -> None:
    if t.device.type == "cuda":
        torch.cuda.synchronize(t.device)


@dataclass
class _Trace:
    """What one pass of the cohort produced."""

    prefill_group_s: list = field(default_factory=list)
    decode_step_s: list = field(default_factory=list)
    wall_s: float = 0.0
    finite: bool = True
    tokens: torch.Tensor | None = None  # [C, OSL] answer tokens
    logits: list = field(default_factory=list)  # per step [C, V] (only when recorded)


def run_pass(cm: CohortModel, caches: list, prompt_ids: torch.Tensor, osl: int, chunk: int,
             record_logits: bool = False, progress: Callable | None = None) -> _Trace:
    """Prefill then OSL - 1 decode steps, each interval timed with a host clock after a device sync."""
    c, isl = prompt_ids.shape
    dev = prompt_ids.device
    tr, finite = _Trace(), torch.ones((), dtype=torch.bool, device=dev)
    answer = torch.empty((c, osl), dtype=torch.int64, device=dev)
    first_logits = [] if record_logits else None
    _sync(prompt_ids)
    start = time.perf_counter()
    groups = prefill_plan(c, isl, chunk)
    for gi, group in enumerate(groups):
        t0 = time.perf_counter()
        logits = prefill_group(cm, caches, group, prompt_ids)
        finite &= torch.isfinite(logits).all()
        answer[group.first: group.first + group.batch, 0] = logits.argmax(-1)
        _sync(logits)
        tr.prefill_group_s.append(time.perf_counter() - t0)
        if record_logits:
            first_logits.append(logits)
        if progress:
            progress(f"prefill group {gi + 1}/{len(groups)}: {tr.prefill_group_s[-1]:.3f} s")
    if record_logits:
        tr.logits.append(torch.cat(first_logits))
    for j, ctx in enumerate(decode_contexts(isl, osl), start=1):
        t0 = time.perf_counter()
        logits = decode_step(cm, caches, answer[:, j - 1], ctx - 1)
        finite &= torch.isfinite(logits).all()
        answer[:, j] = logits.argmax(-1)
        _sync(logits)
        tr.decode_step_s.append(time.perf_counter() - t0)
        if record_logits:
            tr.logits.append(logits)
        if progress and (j % 16 == 0 or j == osl - 1):
            progress(f"decode step {j}/{osl - 1} at context {ctx}: {tr.decode_step_s[-1] * 1e3:.1f} ms")
    tr.finite = bool(finite.item())
    tr.wall_s = time.perf_counter() - start
    tr.tokens = answer
    return tr


def unwritten_slots(caches: list, written: int) -> int:
    """NaN elements left in slots 0 .. written - 1 of every layer's K and V caches."""
    return sum(int(torch.isnan(t[:, :, :written]).sum().item()) for kv in caches for t in kv)


# ---------------------------------------------------------------------------------------------------
# The float64 check


def reference_logits(cm: CohortModel, prompt_ids: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
    """Float64 logits [C, OSL, V] at each sequence's last prompt token and each fed answer token, from a
    cache-free causal pass over the whole sequence (prompt + answer tokens but the last), layer at a time."""
    d = cm.dims
    c, isl = prompt_ids.shape
    osl = answer.shape[1]
    seq = torch.cat([prompt_ids, answer[:, :-1]], dim=1)  # [C, T], T = ISL + OSL - 1
    t = seq.shape[1]
    x = cm.lm_head[seq.reshape(-1)]  # rounded embeddings, as the run's
    residual = torch.zeros_like(x)
    positions = torch.arange(t, device=x.device).repeat(c)
    cos, sin = cm.cos[positions], cm.sin[positions]
    empty = torch.full((c, d.kv_heads, t, d.head_dim), math.nan, dtype=torch.float64, device=x.device)
    for w in cm.layers:  # prefill_reference fills every one of the T slots before attention reads them
        x, residual = prefill_reference(d, w, x, residual, empty, empty, 0, cos, sin)
    rows = torch.arange(c, device=x.device)[:, None] * t + torch.arange(isl - 1, t, device=x.device)
    rows = rows.reshape(-1)  # each sequence's last prompt token and its fed answer tokens
    h, _ = norm.reference(x=x[rows], residual=residual[rows], w=as_float64(cm.final_norm), eps=d.norm_eps)
    (logits,) = gemm.reference(x=h, w=cm.lm_head)
    return logits.view(c, osl, -1)


@dataclass(frozen=True)
class CohortCheck:
    """The cohort's correctness: float64 reference on short cohorts, then the timed run's own checks."""

    reference_error: float  # worst ||out - ref|| / ||ref|| over the short cohorts' logits (NaN: non-finite)
    tolerance: float
    finite: bool | None = None  # every logit of the timed run finite (None: not run)
    unwritten: int | None = None  # NaN elements left in KV slots < ISL + OSL - 1 after the timed run
    reason: str = ""  # why it failed; empty when ok

    @property
    def ok(self) -> bool:
        return not self.reason

    def with_run(self, finite: bool, unwritten: int, written: int) -> CohortCheck:
        reasons = [self.reason] if self.reason else []
        if not finite:
            reasons.append("non-finite logits in the timed run")
        if unwritten:
            reasons.append(f"{unwritten} KV-cache elements of slots < {written} never written (still NaN)")
        return CohortCheck(self.reference_error, self.tolerance, finite, unwritten, "; ".join(reasons))


def verify_cohort(cm: CohortModel, dtype: str, layers: int, seed: int = 0,
                  cohorts=VERIFY_COHORTS) -> CohortCheck:
    """Run each short cohort (C, ISL, OSL, chunk) on fresh random prompts and compare every step's logits
    with the float64 reference; tolerance = the dtype's composite tolerance x sqrt(layers)."""
    tol = TOLERANCE[dtype] * math.sqrt(layers)
    worst = 0.0
    for i, (c, isl, osl, chunk) in enumerate(cohorts):
        g = generator(seed + 101 + i, cm.lm_head.device)
        prompt = torch.randint(0, cm.dims.vocab, (c, isl), generator=g, device=cm.lm_head.device)
        caches = make_caches(cm, c, isl + osl)
        tr = run_pass(cm, caches, prompt, osl, chunk, record_logits=True)
        out = torch.stack(tr.logits, dim=1)  # [C, OSL, V]
        err = relative_error(out, reference_logits(cm, prompt, tr.tokens))
        if not err <= tol:  # NaN fails
            reason = (f"logits of the cohort C={c} ISL={isl} OSL={osl} chunk={chunk}: relative error "
                      f"{err:.2e} against float64, tolerance {tol:.0e}")
            return CohortCheck(err, tol, reason=reason)
        worst = max(worst, err)
    return CohortCheck(worst, tol)


# ---------------------------------------------------------------------------------------------------
# The measured cohort


def _quantile(values: list, q: float) -> float:
    if not values:
        return math.nan
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@dataclass
class CohortRun:
    """One cohort of `concurrency` requests run end to end: prefill, then OSL - 1 decode steps."""

    model: str
    dtype: str
    backend: str
    device: str
    concurrency: int
    isl: int
    osl: int
    chunk: int
    groups: list  # sequences per prefill group, in order
    chunks: list  # tokens of each prefill chunk of one group's prompts, in order
    check: CohortCheck
    prefill_s: float = math.nan  # sum of the prefill groups' times
    decode_s: float = math.nan  # sum of the decode steps' times
    wall_s: float = math.nan  # first prefill group to last decode step
    warmup_s: float = math.nan  # untimed warm-up (see the module docstring)
    verify_s: float = math.nan  # the float64 check's time
    prefill_group_s: list = field(default_factory=list)
    decode_step_s: list = field(default_factory=list)  # one per step, in order
    decode_contexts: list = field(default_factory=list)  # each step's context
    weight_bytes: int = 0  # weights held (the LM head counted once: it is also the embedding table)
    kv_bytes: int = 0  # KV caches held: C x (ISL + OSL) slots x every layer
    peak_memory_bytes: int | None = None  # CUDA: max allocated during the run; CPU: the process's peak RSS
    memory_note: str = ""

    @property
    def ok(self) -> bool:
        return self.check.ok

    @property
    def input_tokens(self) -> int:
        return self.concurrency * self.isl

    @property
    def output_tokens(self) -> int:
        return self.concurrency * self.osl

    @property
    def memory_bytes(self) -> int:
        return self.weight_bytes + self.kv_bytes

    @property
    def first_token_s(self) -> list:
        """Each request's time to first token from the cohort's start (its prefill group's end)."""
        out, t = [], 0.0
        for n, s in zip(self.groups, self.prefill_group_s):
            t += s
            out += [t] * n
        return out

    def decode_quantile(self, q: float, steps: slice = slice(None)) -> float:
        return _quantile(self.decode_step_s[steps], q)

    @property
    def decode_p10(self) -> float:
        return self.decode_quantile(0.1)

    @property
    def decode_p50(self) -> float:
        return self.decode_quantile(0.5)

    @property
    def decode_p90(self) -> float:
        return self.decode_quantile(0.9)

    def window_p50(self, which: str, steps: int = 8) -> float:
        """Median step time over the first or last `steps` decode steps (the growth with context)."""
        return self.decode_quantile(0.5, slice(None, steps) if which == "first" else slice(-steps, None))

    def decode_fit(self) -> tuple | None:
        """Least-squares step time = a + b x context: (a s, b s per token); None under 3 steps."""
        if len(self.decode_step_s) < 3:
            return None
        slope, intercept = statistics.linear_regression(self.decode_contexts, self.decode_step_s)
        return intercept, slope

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "check"}
        out.update(check={**self.check.__dict__, "ok": self.check.ok}, ok=self.ok,
                   input_tokens=self.input_tokens, output_tokens=self.output_tokens,
                   memory_bytes=self.memory_bytes, first_token_s=self.first_token_s,
                   decode_p10=self.decode_p10, decode_p50=self.decode_p50, decode_p90=self.decode_p90)
        return out


def fit_reason(model: ModelConfig, dtype: str, device: LocalDevice, concurrency: int, isl: int,
               osl: int, weights_held: bool = False) -> str | None:
    """Why weights + KV for C x (ISL + OSL) do not fit in MEMORY_FRACTION of the free memory (None: fits).
    weights_held: the weights are already allocated (out of the free memory), so only the KV must fit."""
    kv = model.kv_cache_bytes(concurrency, isl + osl, dtype)
    need = kv if weights_held else model.weight_bytes(dtype) + kv
    have = available_bytes(device)
    if need > MEMORY_FRACTION * have:
        what = "the KV cache needs" if weights_held else "weights + KV cache need"
        return (f"{model.name} {dtype} at C={concurrency}, ISL+OSL={isl + osl}: {what} "
                f"{need / 2**30:.2f} GiB, over {MEMORY_FRACTION:.0%} of the {have / 2**30:.2f} GiB free on "
                f"{device.name}")
    return None


def _peak_memory(device: LocalDevice) -> tuple:
    if device.kind == "cuda":
        return torch.cuda.max_memory_allocated(), "CUDA max allocated during the cohort"
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "the process's peak RSS (Linux)"
    except (ImportError, OSError):
        return None, "unknown"


def run_cohort(model: ModelConfig, dtype: str, device: LocalDevice, concurrency: int, isl: int, osl: int,
               chunk: int, backend: str = "torch", seed: int = 0, progress: Callable | None = None,
               verify: bool = True, cohort_model: CohortModel | None = None) -> CohortRun:
    """Check, warm up, then run one cohort for real (the module docstring gives the engine model).

    Raises UserError (one line) for bad sizes, an MoE model, Triton on a CPU, or a cohort whose weights + KV
    do not fit. A failed float64 check returns the CohortRun untimed (check.ok False); a failed check of the
    timed run returns it timed with check.ok False: the caller must not report either.
    cohort_model: weights built by make_cohort_model for this model, dtype and backend, reused (with their
    float64 check) instead of drawing new ones; the caller keeps them between concurrencies."""
    if min(concurrency, isl, osl, chunk) < 1:
        raise UserError(f"concurrency, ISL, OSL and chunk must be positive (got {concurrency}, {isl}, {osl}, "
                        f"{chunk})")
    refuse_moe(model, "the end-to-end cohort")
    if dtype not in TOLERANCE:
        raise UserError(f"dtype {dtype!r} not supported by the end-to-end cohort; choose one of: "
                        f"{', '.join(TOLERANCE)}")
    try:
        chosen = parse_backend(backend)
    except BackendError as exc:
        raise UserError(str(exc)) from exc
    if device.kind == "cpu" and "triton" in chosen.values():
        raise UserError(f"backend {backend!r}: Triton runs on a CPU only under its interpreter, which is not "
                        "timed (check it with `tokenbench verify`)")
    if cohort_model is not None and (cohort_model.name, cohort_model.dtype, cohort_model.backend) != \
            (model.name, dtype, backend):
        given = f"{cohort_model.name} {cohort_model.dtype} {cohort_model.backend}"
        raise UserError(f"the cohort model given is {given}, the cohort asks for {model.name} {dtype} "
                        f"{backend}")
    if device.kind == "cuda":  # the previous cohort's caches are garbage: give their blocks back before the test
        torch.cuda.empty_cache()
    reason = fit_reason(model, dtype, device, concurrency, isl, osl, weights_held=cohort_model is not None)
    if reason:
        raise UserError(reason)

    say = progress or (lambda msg: None)
    plan = prefill_plan(concurrency, isl, chunk)
    slots = isl + osl
    max_pos = max([slots] + [i + o for _, i, o, _ in VERIFY_COHORTS])
    run = CohortRun(model.name, dtype, backend, device.name, concurrency, isl, osl, chunk,
                    groups=[g.batch for g in plan], chunks=[c.tokens for c in plan[0].chunks],
                    check=CohortCheck(math.nan, TOLERANCE[dtype] * math.sqrt(model.layers)),
                    decode_contexts=decode_contexts(isl, osl))
    cm = cohort_model
    if cm is None:
        say(f"building {model.name} {dtype}: {model.layers} layers with their own weights")
        cm = make_cohort_model(model, dtype, device, backend, max_pos, seed)
    cm.ensure_positions(max_pos)
    run.weight_bytes = cm.weight_bytes

    if verify:
        t0 = time.perf_counter()
        if cm.checked is None:
            cm.checked = verify_cohort(cm, dtype, model.layers, seed)
        run.check = cm.checked
        run.verify_s = time.perf_counter() - t0  # ~0 when the model's check is reused
        say(f"float64 check: relative error {run.check.reference_error:.2e} "
            f"(tolerance {run.check.tolerance:.0e})"
            f"{'' if run.check.ok else ' FAILED: ' + run.check.reason}")
        if not run.check.ok:
            return run

    caches = make_caches(cm, concurrency, slots)
    run.kv_bytes = sum(t.numel() * t.element_size() for kv in caches for t in kv)
    g = generator(seed + 2, cm.lm_head.device)
    prompt = torch.randint(0, model.vocab, (concurrency, isl), generator=g, device=cm.lm_head.device)

    # warm-up: each distinct group shape, one decode step at batch C; caches zeroed first so nothing reads NaN
    t0 = time.perf_counter()
    for k, v in caches:
        k.zero_()
        v.zero_()
    warm = [plan[0]] + ([plan[-1]] if plan[-1].batch != plan[0].batch else [])
    for group in warm:
        prefill_group(cm, caches, group, prompt)
    if osl > 1:
        decode_step(cm, caches, prompt[:, 0], isl)
    for k, v in caches:
        k.fill_(math.nan)
        v.fill_(math.nan)
    _sync(cm.lm_head)
    run.warmup_s = time.perf_counter() - t0
    say(f"warm-up {run.warmup_s:.2f} s; timing C={concurrency} ISL={isl} OSL={osl} chunk={chunk}")

    if device.kind == "cuda":
        torch.cuda.reset_peak_memory_stats()
    tr = run_pass(cm, caches, prompt, osl, chunk, progress=progress)
    run.prefill_group_s, run.decode_step_s, run.wall_s = tr.prefill_group_s, tr.decode_step_s, tr.wall_s
    run.prefill_s, run.decode_s = sum(tr.prefill_group_s), sum(tr.decode_step_s)
    run.peak_memory_bytes, run.memory_note = _peak_memory(device)
    written = isl + osl - 1
    run.check = run.check.with_run(tr.finite, unwritten_slots(caches, written), written)
    return run

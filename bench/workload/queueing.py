"""The wait a serving benchmark's time to first token includes, and the per-user rate of a chunked-prefill
engine at low concurrency (torch-free): the arithmetic compose.chunked_point applies to the measured steps.

At concurrency C the composition has D decode rows (plan.py), the mixed step S (D rows + m = k x t prompt
tokens, the plan's average load), the decode-only step Sd of the same D rows, and P, one prompt's prefill
alone (pi = P / ISL a prompt token). An engine policy (ENGINE_POLICIES) gives a token budget B a step and
whether decode rows take their share of it first (vLLM, llama.cpp) or not.

  B' = B - min(C - 1, D) where decode rows count in the budget, else B (at least 1): prompt tokens a step
  g  = min(C, max(1, floor(B' / ISL))): the prompts one step finishes together. A closed loop (a benchmark
       at fixed C) keeps them together: requests whose first token came in the same step finish in the
       same step and are replaced together.
  a  = (S - Sd) / m: what a prompt token adds to a step beside decode rows (measured)
Tokens/s per user: a request's OSL - 1 decode steps carry the prompts of the other C - g requests (its own
group's ran before its first token); in units of the mixed step's load
  f    = min(1, (C - g) x ISL / ((OSL - 1) x m));  1 where prefill-bound (D < C); 0 at C = 1
  TPOT = (1 - f) x Sd + f x S;  tokens/s per user = 1 / TPOT
Time to first token:
  own      = g x P + (ceil(ISL / B') x Sd where other requests decode beside it, C > g): its group's prompts
  T_dev    = C x ISL x (a where C > g, else pi) + (OSL - 1) x Sd: the device time one round of all C
             requests needs (prompts beside decode rows, or alone)
  W        = max(own + (OSL - 1) x TPOT, T_dev): a request's lifetime; where the device needs longer than
             a request's own path, arrivals queue behind the prompts ahead of them. Prefill-bound (D < C):
             W = C x OSL x S / D, every step the mixed step of D rows (output tokens/s D / S, as before)
  TTFT     = W - (OSL - 1) x TPOT (steady state: one request arrives as one finishes; Little's law,
             C = requests/s x W, holds by construction)
  first wave (C requests at once, nothing decoding yet, FCFS under B): the k-th prompt ends in step
             n_k = ceil(k x ISL / B); TTFT_k = pi x min(C x ISL, n_k x B); the figure is the median over k
Throughput: output tokens/s = C x OSL / W;  input = output x ISL / OSL;  total = output x (ISL + OSL) / OSL;
  input time share = C x ISL x (a or pi) / T_dev ((S - Sd) / S where prefill-bound, as before).
Board energy (where every step was metered): T_dev's formula over the steps' joules, / (C x (ISL + OSL)): the
  work done; where W > T_dev the board's idle time is not in it. Prefill-bound: the mixed step's joules /
  (D x (1 + ISL / OSL)), as before.
At C = 1: TTFT = P, tokens/s per user = 1 / Sd (a request prefilled alone, then decoding alone).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from bench.errors import UserError

TTFT_MODEL = ("steady state of a closed loop at fixed concurrency (bench/workload/queueing.py): prompts "
              "finished in the same step stay together, arrivals queue behind the prompts ahead; first-wave "
              "median kept beside it")
# What a record written before the queueing model used (its points are shown as written).
OLD_TTFT_MODEL = "one prompt's prefill alone + ceil(ISL / chunk) decode-only steps (no queueing)"


@dataclass(frozen=True)
class EnginePolicy:
    """How an engine fills a step: its token budget where it is stated, and whether decode rows count in it."""

    name: str
    decode_counts: bool  # decode rows take their tokens of the budget first; prompt chunks fill the rest
    source: str  # where the default is stated

    def budget(self, kind: str, memory_bytes: int | None, device_name: str, tokenbench_chunk: int) -> int:
        gib = None if not memory_bytes else memory_bytes / 2**30
        if self.name == "vllm":  # vllm/engine/arg_utils.py get_batch_defaults, OpenAI API server
            big = kind == "cuda" and gib is not None and gib >= 70 and "a100" not in device_name.lower()
            return 8192 if big else 2048
        if self.name == "sglang":  # sglang/srt/server_args.py, chunked_prefill_size by GPU memory
            if kind != "cuda" or gib is None:
                return 4096
            return 2048 if gib < 35 else 8192 if gib < 160 else 16384
        if self.name == "llamacpp":  # llama-server -b / --batch-size (logical batch)
            return 2048
        return tokenbench_chunk


ENGINE_POLICIES = {
    "tokenbench": EnginePolicy("tokenbench", False, "tokenbench's --chunk (256 on CPU, 2048 on GPU): a budget "
                                                    "of prompt tokens a step beside every decode row"),
    "vllm": EnginePolicy("vllm", True, "vLLM max_num_batched_tokens, OpenAI server default 2048 (8192 on GPUs "
                                       "of 70 GiB or more other than A100): vllm/engine/arg_utils.py "
                                       "EngineArgs.get_batch_defaults; decode rows first, prompt chunks fill "
                                       "the rest of the budget (docs.vllm.ai, chunked prefill)"),
    "sglang": EnginePolicy("sglang", False, "SGLang chunked_prefill_size: 2048 below 35 GiB of GPU memory, 8192 "
                                            "below 160 GiB, 16384 above, 4096 where no GPU memory is known: "
                                            "python/sglang/srt/server_args.py; a prefill batch budget of prompt "
                                            "tokens"),
    "llamacpp": EnginePolicy("llamacpp", True, "llama.cpp llama-server -b/--batch-size (n_batch) 2048, computed "
                                               "in -ub/--ubatch-size 512 pieces (llama-server --help); the slots' "
                                               "sampled tokens go into the batch first, then prompt tokens"),
}
DEFAULT_POLICY = "tokenbench"


def policy(name: str) -> EnginePolicy:
    if name not in ENGINE_POLICIES:
        raise UserError(f"--engine-policy must be one of {', '.join(ENGINE_POLICIES)}, got {name!r}")
    return ENGINE_POLICIES[name]


@dataclass(frozen=True)
class Served:
    """One chunked-prefill point's serving figures under a policy (the formulas of the module docstring)."""

    decode_share: float  # f
    tpot: float
    group: int  # g
    own_prefill: float
    device_round: float  # T_dev
    lifetime: float  # W
    ttft: float
    ttft_first_wave: float
    queue_wait: float
    output_tokens_per_s: float
    input_time_share: float


def prompt_tokens_a_step(budget: int, decode_counts: bool, c: int, d: int) -> int:
    return max(1, budget - min(c - 1, d)) if decode_counts else max(1, budget)


def first_wave(isl: int, c: int, budget: int, prefill_s: float) -> list[float]:
    """TTFT of each of C requests that arrive at once, in order (FCFS under the budget, at the alone rate)."""
    per_token = prefill_s / isl
    return [per_token * min(c * isl, math.ceil(k * isl / budget) * budget) for k in range(1, c + 1)]


def device_round(isl: int, osl: int, c: int, beside: bool, step: float, decode_only: float, prefill: float,
                 mixed_load: int) -> tuple[float, float]:
    """(the prompts' part, the whole) of one round of all C requests: C x ISL x (a, or pi where nothing decodes
    beside the prompts) + (OSL - 1) x Sd. Seconds from step seconds; joules from step joules."""
    a = max(0.0, step - decode_only) / mixed_load
    prompts = c * isl * (a if beside else prefill / isl)
    return prompts, prompts + (osl - 1) * decode_only


def serve(isl: int, osl: int, c: int, d: int, mixed_load: int, step: float, decode_only: float, prefill_s: float,
          budget: int, decode_counts: bool) -> Served:
    """The chunked-prefill engine's point at concurrency c from its measured steps (module docstring)."""
    b = prompt_tokens_a_step(budget, decode_counts, c, d)
    g = min(c, max(1, b // isl))
    if d < c:
        f = 1.0
    else:
        f = min(1.0, (c - g) * isl / ((osl - 1) * mixed_load))
    tpot = (1 - f) * decode_only + f * step
    beside = c > g
    own = g * prefill_s + (math.ceil(isl / b) * decode_only if beside else 0.0)
    prompt_s, device = device_round(isl, osl, c, beside, step, decode_only, prefill_s, mixed_load)
    own_path = own + (osl - 1) * tpot
    # prefill-bound: every step is the mixed step of D rows (plan.py); the other C - D wait in prefill
    w = c * osl * step / d if d < c else max(own_path, device)
    ttft = w - (osl - 1) * tpot
    return Served(decode_share=f, tpot=tpot, group=g, own_prefill=own, device_round=device, lifetime=w, ttft=ttft,
                  ttft_first_wave=statistics.median(first_wave(isl, c, budget, prefill_s)),
                  queue_wait=max(0.0, ttft - own), output_tokens_per_s=c * osl / w,
                  input_time_share=min(1.0, max(0.0, (step - decode_only) / step if d < c else prompt_s / device)))

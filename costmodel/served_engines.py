"""The result files serving benchmarks write, read into one typed record (EngineRun) per benchmark run.

Each format is told by its keys, never by its file name:

  vLLM `vllm bench serve --save-result` (vllm/benchmarks/serve.py; before it, benchmarks/benchmark_serving.py):
      one JSON object with duration, completed, total_input_tokens, total_output_tokens, output_throughput,
      total_token_throughput, max_concurrency, {mean,median,std,p99}_{ttft,tpot,itl,e2el}_ms, model_id.
  SGLang `python -m sglang.bench_serving --output-file F` (python/sglang/bench_serving.py): one JSON object
      per line, appended run after run: the same totals plus input_throughput, random_input_len,
      random_output_len, *_e2e_latency_ms; some versions write no total-throughput key (it is then
      input + output throughput).
  NVIDIA AIPerf `profile_export_aiperf.json`: one object of metric blocks {unit, avg, p50, p99, ...}
      (time_to_first_token, inter_token_latency, output_token_throughput, total_token_throughput,
      request_count, total_isl, total_osl, benchmark_duration) and the run's input_config, which holds the
      concurrency (its profiling phase, or loadgen in older versions).
  llama.cpp `llama-batched-bench --output-format jsonl` (tools/batched-bench/batched-bench.cpp): one line per
      (pp, tg, pl): pl sequences of pp prompt and tg generated tokens each, t_pp / t_tg / t seconds.
  llama.cpp `llama-bench -o json` (tools/llama-bench/llama-bench.cpp): a list of tests, each one sequence of
      n_prompt prompt tokens and/or n_gen generated tokens at avg_ts tokens/s.

Figures are the whole run's (all GPUs together); per GPU is the caller's division by the GPU count the file
does not hold. Every problem is one CostInputError naming the file (and the line or entry).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

from costmodel.input_errors import CostInputError

# what each format is called in output
FORMATS = {
    "vllm": "vLLM bench serve result (JSON)",
    "sglang": "SGLang bench_serving result (JSONL)",
    "aiperf": "NVIDIA AIPerf profile_export_aiperf.json",
    "llama-batched-bench": "llama.cpp llama-batched-bench (JSONL)",
    "llama-bench": "llama.cpp llama-bench (JSON)",
}


@dataclass(frozen=True)
class EngineRun:
    """One benchmark run as its tool reported it: whole-run rates (not per GPU), medians, token totals.

    None where the file does not say. `isl` and `osl` are the mean prompt and answer length over completed
    requests (total tokens / completed), as InferenceX labels a run by them.
    """

    format: str  # a key of FORMATS
    where: str  # file, and line or entry within it
    model: str | None
    engine: str  # what served it, as the file names it ("" when it does not)
    concurrency: int | None
    completed: int | None
    duration_s: float | None
    total_input_tokens: float | None
    total_output_tokens: float | None
    total_tokens_per_s: float
    output_tokens_per_s: float | None
    input_tokens_per_s: float | None
    median_tpot_ms: float | None  # median over requests of (latency - TTFT) / (output tokens - 1)
    median_ttft_ms: float | None
    median_e2e_ms: float | None
    note: str = ""

    @property
    def isl(self) -> int | None:
        return _per_request(self.total_input_tokens, self.completed)

    @property
    def osl(self) -> int | None:
        return _per_request(self.total_output_tokens, self.completed)

    @property
    def interactivity(self) -> float | None:
        """Median tokens/s per user = 1000 / median TPOT in ms (InferenceX's median_intvty)."""
        return None if not self.median_tpot_ms else 1000.0 / self.median_tpot_ms


def _per_request(total: float | None, completed: int | None) -> int | None:
    if total is None or not completed:
        return None
    return int(round(total / completed))


# --- field readers --------------------------------------------------------------------------------------

def _num(where: str, d: dict, key: str, *, required: bool = False, positive: bool = True) -> float | None:
    v = d.get(key)
    if v is None:
        if required:
            raise CostInputError(f"{where}: missing {key!r}")
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise CostInputError(f"{where}: {key} must be a number, got {v!r}")
    if positive and v <= 0:
        if required:
            raise CostInputError(f"{where}: {key} must be positive, got {v!r}")
        return None  # a latency of 0 where the tool had nothing to time (e.g. TPOT of one-token answers)
    return float(v)


def _whole(where: str, d: dict, key: str, *, required: bool = False) -> int | None:
    x = _num(where, d, key, required=required)
    if x is None:
        return None
    if not x.is_integer():
        raise CostInputError(f"{where}: {key} must be a whole number, got {d[key]!r}")
    return int(x)


def _first(d: dict, *keys: str) -> str | None:
    return next((k for k in keys if d.get(k) is not None), None)


# --- vLLM and SGLang (the same totals, a few names apart) ---------------------------------------------

def _serve_result(d: dict, where: str, fmt: str) -> EngineRun:
    duration = _num(where, d, _first(d, "duration", "benchmark_duration") or "duration", required=True)
    completed = _whole(where, d, "completed", required=True)
    tin = _num(where, d, _first(d, "total_input_tokens", "total_input") or "total_input_tokens", required=True)
    tout_key = _first(d, "total_output_tokens", "total_generated_tokens", "total_output") or "total_output_tokens"
    tout = _num(where, d, tout_key, required=True)
    out_rate = _num(where, d, "output_throughput", required=True)
    in_rate = _num(where, d, "input_throughput")
    total_key = _first(d, "total_token_throughput", "total_throughput")
    note = ""
    if total_key:
        total = _num(where, d, total_key, required=True)
    elif in_rate is not None:
        total, note = in_rate + out_rate, "total tokens/s = input + output throughput (no total key in this file)"
    else:
        raise CostInputError(f"{where}: no total_token_throughput, total_throughput or input_throughput: "
                             f"cannot tell the total tokens/s")
    if in_rate is None:
        in_rate = total - out_rate if total > out_rate else None
    conc = d.get("max_concurrency")
    conc = _whole(where, d, "max_concurrency") if conc is not None else _whole(where, d, "concurrency_limit")
    model = d.get("model_id") or d.get("model")
    return EngineRun(
        format=fmt, where=where, model=str(model) if model else None,
        engine=str(d.get("backend") or ""), concurrency=conc, completed=completed, duration_s=duration,
        total_input_tokens=tin, total_output_tokens=tout, total_tokens_per_s=total, output_tokens_per_s=out_rate,
        input_tokens_per_s=in_rate, median_tpot_ms=_num(where, d, "median_tpot_ms"),
        median_ttft_ms=_num(where, d, "median_ttft_ms"),
        median_e2e_ms=_num(where, d, _first(d, "median_e2el_ms", "median_e2e_latency_ms") or "median_e2el_ms"),
        note=note)


def is_serve_result(d: dict) -> bool:
    return "completed" in d and "output_throughput" in d and ("duration" in d or "benchmark_duration" in d)


def serve_format(d: dict) -> str:
    """SGLang's result has input_throughput or names itself; vLLM's has neither."""
    backend = str(d.get("backend") or "").lower()
    return "sglang" if backend.startswith("sglang") or "input_throughput" in d else "vllm"


# --- AIPerf ---------------------------------------------------------------------------------------------

AIPERF_UNITS = {"ms": 1.0, "sec": 1000.0, "s": 1000.0}
AIPERF_RATE_UNITS = ("tokens/sec", "tokens/s")


def is_aiperf(d: dict) -> bool:
    return isinstance(d.get("request_throughput"), dict) and "unit" in d["request_throughput"]


def _block(where: str, d: dict, key: str, stat: str, *, required: bool = False) -> tuple[float | None, str]:
    b = d.get(key)
    if b is None:
        if required:
            raise CostInputError(f"{where}: missing metric {key!r}")
        return None, ""
    if not isinstance(b, dict) or "unit" not in b:
        raise CostInputError(f"{where}: metric {key} is not a {{unit, avg, ...}} block")
    return _num(f"{where}: {key}", b, stat, required=required), str(b["unit"])


def _ms(where: str, d: dict, key: str) -> float | None:
    v, unit = _block(where, d, key, "p50")
    if v is None:
        return None
    if unit not in AIPERF_UNITS:
        raise CostInputError(f"{where}: {key} is in {unit!r}; expected ms or sec")
    return v * AIPERF_UNITS[unit]


def _rate(where: str, d: dict, key: str, *, required: bool = False) -> float | None:
    v, unit = _block(where, d, key, "avg", required=required)
    if v is not None and unit not in AIPERF_RATE_UNITS:
        raise CostInputError(f"{where}: {key} is in {unit!r}; expected tokens/sec")
    return v


def _aiperf_concurrency(where: str, cfg) -> int | None:
    if not isinstance(cfg, dict):
        return None
    phases = [p for p in cfg.get("phases") or [] if isinstance(p, dict) and not p.get("exclude_from_results")]
    for p in phases:
        if p.get("concurrency") is not None:
            return _whole(f"{where}: input_config phase {p.get('name', '?')}", p, "concurrency")
    loadgen = cfg.get("loadgen")
    if isinstance(loadgen, dict) and loadgen.get("concurrency") is not None:
        return _whole(f"{where}: input_config.loadgen", loadgen, "concurrency")
    return None


def _aiperf_model(cfg) -> str | None:
    if not isinstance(cfg, dict):
        return None
    models = cfg.get("models")
    if isinstance(models, dict):
        items = models.get("items") or []
        if items and isinstance(items[0], dict) and items[0].get("name"):
            return str(items[0]["name"])
    names = cfg.get("model_names")
    if isinstance(names, list) and names:
        return str(names[0])
    return None


def _aiperf(d: dict, where: str) -> EngineRun:
    duration, unit = _block(where, d, "benchmark_duration", "avg", required=True)
    if unit not in ("sec", "s"):
        raise CostInputError(f"{where}: benchmark_duration is in {unit!r}; expected sec")
    completed, _ = _block(where, d, "request_count", "avg", required=True)
    tin, _ = _block(where, d, "total_isl", "avg")
    tout, _ = _block(where, d, "total_osl", "avg")
    out_rate = _rate(where, d, "output_token_throughput", required=True)
    total = _rate(where, d, "total_token_throughput")
    note = ""
    if total is None:
        if tin is None or tout is None:
            raise CostInputError(f"{where}: no total_token_throughput, and no total_isl/total_osl to derive it")
        total, note = (tin + tout) / duration, "total tokens/s = (total_isl + total_osl) / benchmark_duration"
    in_rate = total - out_rate if total > out_rate else None
    cfg = d.get("input_config")
    return EngineRun(
        format="aiperf", where=where, model=_aiperf_model(cfg), engine="", concurrency=_aiperf_concurrency(where, cfg),
        completed=int(round(completed)), duration_s=duration, total_input_tokens=tin, total_output_tokens=tout,
        total_tokens_per_s=total, output_tokens_per_s=out_rate, input_tokens_per_s=in_rate,
        median_tpot_ms=_ms(where, d, "inter_token_latency"), median_ttft_ms=_ms(where, d, "time_to_first_token"),
        median_e2e_ms=_ms(where, d, "request_latency"), note=note)


# --- llama.cpp ------------------------------------------------------------------------------------------

BATCHED_KEYS = ("pp", "tg", "pl", "t_pp", "t_tg")


def is_batched_bench(d: dict) -> bool:
    return all(k in d for k in BATCHED_KEYS)


def _batched(d: dict, where: str) -> EngineRun:
    pp, tg, pl = (_whole(where, d, k, required=True) for k in ("pp", "tg", "pl"))
    t_pp, t_tg = _num(where, d, "t_pp", required=True), _num(where, d, "t_tg", required=True)
    shared = bool(d.get("is_pp_shared"))
    prompt_tokens = pp if shared else pl * pp  # a shared prompt is processed once for all pl sequences
    gen_tokens = pl * tg
    t = t_pp + t_tg
    # t_tg times the pl sequences' tg decode steps together: each user sees one token per step,
    # tg tokens in t_tg, so a token every t_tg / tg seconds (the TPOT of every sequence, hence the median)
    return EngineRun(
        format="llama-batched-bench", where=where, model=None, engine="llama.cpp", concurrency=pl, completed=pl,
        duration_s=t, total_input_tokens=float(pl * pp),
        total_output_tokens=float(gen_tokens), total_tokens_per_s=(prompt_tokens + gen_tokens) / t,
        output_tokens_per_s=gen_tokens / t, input_tokens_per_s=prompt_tokens / t,
        median_tpot_ms=1000.0 * t_tg / tg, median_ttft_ms=1000.0 * t_pp, median_e2e_ms=1000.0 * t,
        note="one batch of pl sequences started together; TTFT = the batch's prompt time t_pp"
             + ("; prompt shared by all sequences (processed once)" if shared else ""))


def is_llama_bench(d: dict) -> bool:
    return "avg_ts" in d and "n_prompt" in d and "n_gen" in d


def _llama_bench(d: dict, where: str) -> EngineRun:
    n_prompt, n_gen = (_num(where, d, k, positive=False, required=True) for k in ("n_prompt", "n_gen"))
    ts = _num(where, d, "avg_ts", required=True)
    if n_prompt + n_gen <= 0:
        raise CostInputError(f"{where}: a test of no tokens (n_prompt and n_gen both 0)")
    t = (n_prompt + n_gen) / ts  # avg_ts is the test's tokens over its time, averaged over repetitions
    model = d.get("model_type") or d.get("model_filename")
    depth = d.get("n_depth") or 0
    note = "one sequence (batch 1); " + ("prompt processing only" if not n_gen else
                                          "generation only" if not n_prompt else "prompt then generation")
    if depth:
        note += f", after {depth} tokens already in the cache"
    return EngineRun(
        format="llama-bench", where=where, model=str(model) if model else None, engine="llama.cpp", concurrency=1,
        completed=1, duration_s=t, total_input_tokens=n_prompt, total_output_tokens=n_gen, total_tokens_per_s=ts,
        output_tokens_per_s=n_gen / t if n_gen else None, input_tokens_per_s=n_prompt / t if n_prompt else None,
        # generation only: every token is a decode step, so its time per token is 1 / avg_ts; with a prompt in
        # the same test the split is not reported
        median_tpot_ms=1000.0 / ts if n_gen and not n_prompt else None,
        median_ttft_ms=1000.0 / ts * n_prompt if n_prompt and not n_gen else None, median_e2e_ms=None, note=note)


# --- the file -------------------------------------------------------------------------------------------

def engine_runs(data, name: str, *, jsonl: bool) -> list[EngineRun] | None:
    """The runs in parsed JSON `data` (a JSONL file: the list of its line objects) if it is one of these
    formats; None when it is none of them (the caller tries its own)."""
    objects = data if isinstance(data, list) else [data]
    if not objects or not all(isinstance(o, dict) for o in objects):
        return None
    label = "line" if jsonl else "entry"

    def where(i: int) -> str:
        return f"served results {name}" + (f": {label} {i + 1}" if len(objects) > 1 or jsonl else "")

    first = objects[0]
    if is_aiperf(first):
        return [_aiperf(o, where(i)) for i, o in enumerate(objects)]
    if is_serve_result(first):
        return [_serve_result(o, where(i), serve_format(o)) for i, o in enumerate(objects)]
    if is_batched_bench(first):
        return [_batched(o, where(i)) for i, o in enumerate(objects)]
    if is_llama_bench(first):
        return [_llama_bench(o, where(i)) for i, o in enumerate(objects)]
    return None


def read_jsonl(text: str, name: str) -> list:
    """Every non-empty line of a JSONL file, parsed (a line that is not one JSON object is an error: a log line
    captured into the file would otherwise vanish unread)."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        try:
            out.append(json.loads(s))
        except json.JSONDecodeError as e:
            raise CostInputError(f"served results {name}: line {n} is not valid JSON: {e.msg}") from None
        if not isinstance(out[-1], dict):
            raise CostInputError(f"served results {name}: line {n} is not a JSON object")
    return out

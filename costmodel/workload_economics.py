"""A serving workload's operating points and their per-token economics (torch-free).

A workload is a prompt length (ISL) and an answer length (OSL) served at a fixed concurrency C. A point
is what a serving benchmark reports for one C, per device, and what tokenbench composes from measured
steps (bench/workload/):

  total tokens/s per device  = (input + output tokens) / s / devices     (InferenceX's tput_per_gpu)
  interactivity              = 1 / time per output token                 (tokens/s per user)
  $/M tokens (InferenceX)    = $/device-hour / (tokens/s per device x 3600 / 1e6), computed separately
                               for total, output and input tokens/s, so the three do NOT add up
  $/M tokens (additive)      = each kind charged only its own share of device time:
                               $/M input  = $/h x input_share / (input tokens/s x 3600 / 1e6)
                               $/M output = $/h x (1 - input_share) / (output tokens/s x 3600 / 1e6)
                               so input tokens x $/M input + output tokens x $/M output = what the hour cost
  tokens/s per MW            = total tokens/s per device x 1000 / all-in kW
  J/token (all-in)           = all-in W / total tokens/s
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from costmodel.economics import SECONDS_PER_HOUR, cost_per_mtok, joules_per_token, require_positive
from costmodel.economics import tokens_per_s_per_mw as _per_mw
from costmodel.input_errors import CostInputError

# Which engine behaviour a point models (or that it was served by a real engine).
ENGINE_MODELS = {
    "chunked-prefill": "continuous batching with chunked prefill: every step carries the C running sequences' "
                       "decode tokens plus C x ISL / OSL prompt tokens on average (vLLM/SGLang's default)",
    "prefill-then-decode": "a cohort of C requests: the prefill of C x ISL tokens (it gives each request its "
                           "first token), then OSL - 1 decode steps at "
                           "growing context (the simpler bound)",
    "served": "a serving engine's published result",
}
SOURCES = ("measured", "projected", "served")


def workload_label(isl: int, osl: int) -> str:
    """1024/1024 -> '1k/1k', 8192/1024 -> '8k/1k', 256/64 -> '256/64' (InferenceX's names)."""
    def one(n: int) -> str:
        return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else str(n)

    return f"{one(isl)}/{one(osl)}"


@dataclass(frozen=True)
class WorkloadPoint:
    """One concurrency of one workload on one device (per device: a TP group's figures divided by its size).

    Rates are tokens/s per device; None where unknown (a served result may publish no input rate).
    `input_time_share` is the fraction of device time the prompt tokens took (for the additive $/M);
    None where it is not known (served results).
    """

    device: str  # catalog key where known (h200), else the measured device's name
    model: str
    precision: str  # bf16, fp8, fp32 ...
    isl: int
    osl: int
    concurrency: int
    engine_model: str  # a key of ENGINE_MODELS
    source: str  # measured | projected | served
    tp: int = 1
    total_tokens_per_s: float | None = None
    output_tokens_per_s: float | None = None
    input_tokens_per_s: float | None = None
    interactivity: float | None = None  # tokens/s per user = 1 / time per output token
    ttft_s: float | None = None  # median time to first token (tokenbench's chunked model: the steady state)
    e2e_latency_s: float | None = None
    input_time_share: float | None = None
    fits: bool = True
    bytes_needed: int | None = None
    memory_bytes: int | None = None
    board_joules_per_token: float | None = None  # measured board energy over total tokens, where metered
    label: str = ""  # what a legend shows (device / precision / workload), set by whoever makes the point
    note: str = ""
    reference: str = ""  # where a served figure was published (URL or citation); empty for tokenbench's own
    ttft_first_wave_s: float | None = None  # median TTFT of C requests sent at once (a benchmark's start)

    def __post_init__(self):
        if self.engine_model not in ENGINE_MODELS:
            raise CostInputError(f"unknown engine model {self.engine_model!r}; one of: {', '.join(ENGINE_MODELS)}")
        if self.source not in SOURCES:
            raise CostInputError(f"unknown point source {self.source!r}; one of: {', '.join(SOURCES)}")
        for name in ("isl", "osl", "concurrency", "tp"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CostInputError(f"{name} must be a positive integer, got {value!r}")
        if self.input_time_share is not None and not 0.0 <= self.input_time_share <= 1.0:
            raise CostInputError(f"input time share must be within [0, 1], got {self.input_time_share!r}")

    @property
    def workload(self) -> str:
        return workload_label(self.isl, self.osl)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, where: str = "workload point") -> WorkloadPoint:
        """Read a point written by to_dict; a wrong or missing field is one CostInputError naming it."""
        if not isinstance(data, dict):
            raise CostInputError(f"{where} must be an object, got {type(data).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise CostInputError(f"{where}: unknown field(s) {', '.join(unknown)}")
        for name in ("device", "model", "precision", "isl", "osl", "concurrency", "engine_model", "source"):
            if name not in data:
                raise CostInputError(f"{where}: missing field {name}")
        for name, value in data.items():
            if value is None:
                continue
            kind = known[name].type
            if kind.startswith("int") and (isinstance(value, bool) or not isinstance(value, int)):
                raise CostInputError(f"{where}: {name} must be an integer, got {value!r}")
            if kind.startswith("float") and (isinstance(value, bool) or not isinstance(value, (int, float))
                                             or not math.isfinite(value)):
                raise CostInputError(f"{where}: {name} must be a number, got {value!r}")
            if kind.startswith(("int", "float")) and value < 0:  # rates, times and sizes are never negative
                raise CostInputError(f"{where}: {name} must not be negative, got {value!r}")
            if kind.startswith("str") and not isinstance(value, str):
                raise CostInputError(f"{where}: {name} must be a string, got {value!r}")
            if kind.startswith("bool") and not isinstance(value, bool):
                raise CostInputError(f"{where}: {name} must be true or false, got {value!r}")
        return cls(**data)


@dataclass(frozen=True)
class WorkloadEconomics:
    """A point's per-token economics at one price and power (None where an input is missing)."""

    price_per_hour: float | None
    power_kw: float | None
    # InferenceX's convention: the whole hour charged to each kind of token in turn (not additive)
    cost_per_mtok_total: float | None
    cost_per_mtok_output: float | None
    cost_per_mtok_input: float | None
    # additive: each kind charged its own share of device time
    additive_cost_per_mtok_output: float | None
    additive_cost_per_mtok_input: float | None
    tokens_per_s_per_mw: float | None
    joules_per_token: float | None  # all-in
    board_joules_per_token: float | None  # measured board energy, where metered

    def to_dict(self) -> dict:
        return asdict(self)


def _rate(value: float | None) -> float | None:
    return value if value is not None and value > 0 else None


def workload_economics(point: WorkloadPoint, price_per_hour: float | None,
                       power_kw: float | None) -> WorkloadEconomics:
    """Every figure the point and the given price/power determine. A point that does not fit in memory is
    not an operating point: its figures are all None."""
    price = None if price_per_hour is None else require_positive("price per hour", price_per_hour)
    kw = None if power_kw is None else require_positive("power (kW)", power_kw)
    total, out, inp = (_rate(point.total_tokens_per_s), _rate(point.output_tokens_per_s),
                       _rate(point.input_tokens_per_s))
    if not point.fits:
        total = out = inp = None
    share = point.input_time_share

    def cpm(rate):
        return None if price is None or rate is None else cost_per_mtok(price, rate)

    add_in = add_out = None
    if price is not None and share is not None:
        if inp is not None:
            add_in = price * share / (inp * SECONDS_PER_HOUR / 1e6)
        if out is not None:
            add_out = price * (1.0 - share) / (out * SECONDS_PER_HOUR / 1e6)
    return WorkloadEconomics(
        price_per_hour=price, power_kw=kw,
        cost_per_mtok_total=cpm(total), cost_per_mtok_output=cpm(out), cost_per_mtok_input=cpm(inp),
        additive_cost_per_mtok_output=add_out, additive_cost_per_mtok_input=add_in,
        tokens_per_s_per_mw=None if kw is None or total is None else _per_mw(total, kw),
        joules_per_token=None if kw is None or total is None else joules_per_token(kw * 1000.0, total),
        board_joules_per_token=point.board_joules_per_token if point.fits else None,
    )

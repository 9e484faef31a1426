"""The per-token formulas, as the public InferenceX benchmark (SemiAnalysis) defines them.

$/M tokens       = ($ per device-hour) / (tokens/s per device * 3600 / 1e6)
tokens/s per MW  = tokens/s per device * 1000 / (all-in kW per device)
J/token          = all-in W / tokens/s
kWh per M tokens = all-in kW * (hours to make 1e6 tokens) = J/token / 3.6
FLOPS per $      = peak TFLOP/s / ($ per device-hour), i.e. TFLOP/s bought per dollar-per-hour
effective $/M    = $/M tokens / utilisation (the device is paid for every hour, serves tokens in a share of them)

`economics()` computes every output it can from whatever inputs are present and leaves the rest None,
so one dataclass serves `tokenbench cost`, `compare` and `project`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from costmodel.input_errors import CostInputError

SECONDS_PER_HOUR = 3600.0


def require_positive(name: str, value: float) -> float:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CostInputError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise CostInputError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def require_utilisation(value: float) -> float:
    """Utilisation is the share of hours that serve tokens: in (0, 1]."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CostInputError(f"utilisation must be a number in (0, 1], got {value!r}")
    if not 0 < value <= 1:
        raise CostInputError(f"utilisation must be in (0, 1], got {value!r}")
    return float(value)


def cost_per_mtok(price_per_hour: float, tokens_per_s: float) -> float:
    """Dollars per million tokens for one device serving `tokens_per_s`."""
    price = require_positive("price per hour", price_per_hour)
    rate = require_positive("tokens/s", tokens_per_s)
    return price / (rate * SECONDS_PER_HOUR / 1e6)


def tokens_per_s_per_mw(tokens_per_s: float, power_kw: float) -> float:
    """Tokens per second that one megawatt of all-in power buys at this per-device rate."""
    rate = require_positive("tokens/s", tokens_per_s)
    kw = require_positive("power (kW)", power_kw)
    return rate * 1000.0 / kw


def joules_per_token(power_w: float, tokens_per_s: float) -> float:
    watts = require_positive("power (W)", power_w)
    rate = require_positive("tokens/s", tokens_per_s)
    return watts / rate


def kwh_per_mtok(power_kw: float, tokens_per_s: float) -> float:
    """Energy for one million tokens: kW times the hours one device needs to make them."""
    kw = require_positive("power (kW)", power_kw)
    rate = require_positive("tokens/s", tokens_per_s)
    return kw * 1e6 / (rate * SECONDS_PER_HOUR)


def tokens_per_dollar(price_per_hour: float, tokens_per_s: float) -> float:
    return 1e6 / cost_per_mtok(price_per_hour, tokens_per_s)


def flops_per_dollar(peak_tflops: float, price_per_hour: float) -> float:
    """TFLOP/s of peak bought per dollar-per-hour (the public comparison's "FLOPS per dollar")."""
    peak = require_positive("peak TFLOP/s", peak_tflops)
    price = require_positive("price per hour", price_per_hour)
    return peak / price


@dataclass(frozen=True)
class Economics:
    """Inputs of one configuration and every figure derivable from them (None where an input is missing).

    tokens_per_s is output (decode) tokens/s per device; input_tokens_per_s, when given, counts prompt
    tokens separately, and then $/M total spreads the cost over both while $/M output charges it all to
    output tokens.
    """

    # inputs, with where they came from
    price_per_hour: float | None
    tokens_per_s: float | None
    power_kw: float | None
    input_tokens_per_s: float | None = None
    utilisation: float = 1.0
    spec_tflops: float | None = None
    measured_tflops: float | None = None
    board_joules_per_token: float | None = None
    price_source: str | None = None
    power_source: str | None = None
    board_power_source: str | None = None
    # outputs
    total_tokens_per_s: float | None = None
    cost_per_mtok: float | None = None
    cost_per_mtok_output: float | None = None
    tokens_per_dollar: float | None = None
    tokens_per_s_per_mw: float | None = None
    joules_per_token: float | None = None
    kwh_per_mtok: float | None = None
    board_kwh_per_mtok: float | None = None
    spec_flops_per_dollar: float | None = None
    measured_flops_per_dollar: float | None = None
    effective_cost_per_mtok: float | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["notes"] = list(self.notes)
        return d


def _optional_positive(name: str, value: float | None) -> float | None:
    return None if value is None else require_positive(name, value)


def economics(
    price_per_hour: float | None = None,
    tokens_per_s: float | None = None,
    power_kw: float | None = None,
    *,
    input_tokens_per_s: float | None = None,
    utilisation: float = 1.0,
    spec_tflops: float | None = None,
    measured_tflops: float | None = None,
    board_joules_per_token: float | None = None,
    price_source: str | None = None,
    power_source: str | None = None,
    board_power_source: str | None = None,
) -> Economics:
    """Every per-token figure that the given inputs determine; validated, None where underdetermined."""
    price = _optional_positive("price per hour", price_per_hour)
    out_rate = _optional_positive("tokens/s", tokens_per_s)
    kw = _optional_positive("power (kW)", power_kw)
    in_rate = None
    if input_tokens_per_s is not None:
        # zero input tokens is legitimate (pure decode), so only negatives are refused
        if isinstance(input_tokens_per_s, bool) or not isinstance(input_tokens_per_s, (int, float)) \
                or not math.isfinite(input_tokens_per_s) or input_tokens_per_s < 0:
            raise CostInputError(f"input tokens/s must be a number >= 0, got {input_tokens_per_s!r}")
        in_rate = float(input_tokens_per_s)
    util = require_utilisation(utilisation)
    spec = _optional_positive("spec peak TFLOP/s", spec_tflops)
    meas = _optional_positive("measured peak TFLOP/s", measured_tflops)
    board_jpt = _optional_positive("board J/token", board_joules_per_token)

    total = None if out_rate is None else out_rate + (in_rate or 0.0)
    notes: list[str] = []
    if price is None:
        notes.append("no price given: $ figures not computed")
    if kw is None:
        notes.append("no all-in power given: power figures not computed")
    if board_jpt is None:
        # board_power_source then says why there is no reading (a CPU run, no NVML, counter unsupported)
        notes.append(f"no measured board power ({board_power_source or 'needs NVML on an NVIDIA GPU'})")

    cpm = None if price is None or total is None else cost_per_mtok(price, total)
    cpm_out = None
    if in_rate and price is not None and out_rate is not None:
        cpm_out = cost_per_mtok(price, out_rate)
    return Economics(
        price_per_hour=price,
        tokens_per_s=out_rate,
        power_kw=kw,
        input_tokens_per_s=in_rate,
        utilisation=util,
        spec_tflops=spec,
        measured_tflops=meas,
        board_joules_per_token=board_jpt,
        price_source=price_source,
        power_source=power_source,
        board_power_source=board_power_source,
        total_tokens_per_s=total,
        cost_per_mtok=cpm,
        cost_per_mtok_output=cpm_out,
        tokens_per_dollar=None if cpm is None else 1e6 / cpm,
        tokens_per_s_per_mw=None if kw is None or total is None else tokens_per_s_per_mw(total, kw),
        joules_per_token=None if kw is None or total is None else joules_per_token(kw * 1000.0, total),
        kwh_per_mtok=None if kw is None or total is None else kwh_per_mtok(kw, total),
        board_kwh_per_mtok=None if board_jpt is None else board_jpt * 1e6 / 3.6e6,
        spec_flops_per_dollar=None if spec is None or price is None else flops_per_dollar(spec, price),
        measured_flops_per_dollar=None if meas is None or price is None else flops_per_dollar(meas, price),
        effective_cost_per_mtok=None if cpm is None else cpm / util,
        notes=tuple(notes),
    )

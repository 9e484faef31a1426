"""The per-token formulas, as the public InferenceX benchmark (SemiAnalysis) defines them.

$/M tokens       = ($ per device-hour) / (tokens/s per device * 3600 / 1e6)
tokens/s per MW  = tokens/s per device * 1000 / (all-in kW per device)
J/token          = all-in W / tokens/s
"""
from __future__ import annotations

import math

from costmodel.errors import CostInputError

SECONDS_PER_HOUR = 3600.0


def require_positive(name: str, value: float) -> float:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CostInputError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise CostInputError(f"{name} must be a positive number, got {value!r}")
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

"""Every figure the report prints, formatted here and nowhere else (the tests format with these too)."""
from __future__ import annotations

import math

MISSING = "-"


def num(value) -> str:
    """Four significant figures; whole numbers from 10,000 up, with thousands separators; '-' when absent."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    v = float(value)
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e4:
        return f"{v:,.0f}"
    if a >= 1e-3:
        decimals = max(0, 3 - math.floor(math.log10(a)))
        return f"{v:.{decimals}f}"
    return f"{v:.3e}"


def pct(fraction) -> str:
    """A fraction as a percentage with three significant figures ('12.3%'); '-' when absent."""
    if fraction is None or (isinstance(fraction, float) and not math.isfinite(fraction)):
        return MISSING
    return num(fraction * 100) + "%"


def scaled(value, scale: float) -> str:
    """A value shown in another unit (seconds as ms or us)."""
    return MISSING if value is None else num(value * scale)

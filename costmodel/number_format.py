"""Number formatting: pure, so every command prints figures the same way."""
from __future__ import annotations

import math


def sig(x: float | None, digits: int = 3) -> str:
    """`digits` significant figures in fixed notation with thousands separators: 906,000 / 0.000432."""
    if x is None:
        return "-"
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    return f"{x:,.{decimals}f}"


def si(x: float | None, digits: int = 3) -> str:
    """Compact: 54.0K, 2.80M, 1.20G; below 1000 like sig()."""
    if x is None:
        return "-"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= scale:
            return sig(x / scale, digits) + suffix
    return sig(x, digits)


def money(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    # cents are what a price is quoted in; keep at least two decimals for dollar amounts
    if abs(x) >= 1:
        return f"${x:,.2f}" if abs(x) < 1000 else "$" + sig(x, digits)
    return "$" + sig(x, digits)


def ratio(b: float | None, a: float | None) -> str:
    if a is None or b is None or a == 0:
        return "-"
    r = b / a
    return f"{r:.2f}x" if r < 10 else f"{r:,.0f}x" if r >= 100 else f"{r:.1f}x"


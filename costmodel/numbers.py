"""The one reader of numbers a user types: '4.20', '$1.41', '906,000', '54K', '2.8M', '4.3e-4'.

Commas are thousands separators only in groups of three after a first group of one to three digits, so
'1,8' or '1,8,32' (a list typed where one number belongs) are refused rather than read as 18 or 1,832."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from costmodel.input_errors import CostInputError

SUFFIX = {"": 1.0, "K": 1e3, "k": 1e3, "M": 1e6, "G": 1e9, "B": 1e9}
_NUMBER = re.compile(
    r"^(?P<sign>[-+]?)\$?"
    r"(?P<mant>(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:[eE](?P<exp>[-+]?[0-9]+))?(?P<suf>[kKMGB]?)$")


@dataclass(frozen=True)
class Written:
    """A number as written: its mantissa digits (commas removed), exponent, suffix and value."""

    mantissa: str
    exponent: int
    suffix: str
    negative: bool
    value: float

    @property
    def scale(self) -> float:
        return SUFFIX[self.suffix] * 10.0 ** self.exponent


def read_number(name: str, text) -> Written:
    """Parse `text` (a str, int or float); a CostInputError naming `name` when it is not one finite number."""
    if isinstance(text, bool) or text is None:
        raise CostInputError(f"{name} must be a number, got {text!r}")
    raw = repr(text) if isinstance(text, (int, float)) else str(text).strip()
    m = _NUMBER.match(raw.replace("_", ""))
    if not m:
        hint = " (commas group thousands in threes; give one number)" if "," in raw else ""
        raise CostInputError(f"{name} must be a number (like 4.20, 906,000, 54K or 2.8M){hint}, got {raw!r}")
    mantissa, suffix = m.group("mant").replace(",", ""), m.group("suf")
    exponent = int(m.group("exp") or 0)
    negative = m.group("sign") == "-"
    if abs(exponent) > 400:
        raise CostInputError(f"{name} must be a finite number, got {raw!r}")
    value = float(mantissa) * SUFFIX[suffix] * 10.0 ** exponent if exponent < 309 else math.inf
    if not math.isfinite(value):
        raise CostInputError(f"{name} must be a finite number, got {raw!r}")
    return Written(mantissa, exponent, suffix, negative, -value if negative else value)


def parse_number(name: str, text) -> float:
    return read_number(name, text).value


def parse_positive(name: str, text) -> float:
    value = parse_number(name, text)
    if value <= 0:
        raise CostInputError(f"{name} must be a positive number, got {text}")
    return value

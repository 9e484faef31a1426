"""Checks on command-line values that turn a user's mistake into one clear line (UserError)."""
from __future__ import annotations

import math

from bench.errors import UserError


def positive_int_list(text: str, what: str) -> list[int]:
    values = []
    for item in str(text).split(","):
        item = item.strip()
        try:
            value = int(item)
        except ValueError:
            raise UserError(f"{what} must be positive integers separated by commas, got {item!r}") from None
        if value <= 0:
            raise UserError(f"{what} must be positive, got {value}")
        values.append(value)
    if not values:
        raise UserError(f"{what} is empty")
    return values


def positive_float(value, what: str) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise UserError(f"{what} must be a positive number, got {value}")
    return number


def choice(value: str, choices, what: str) -> str:
    if value not in choices:
        raise UserError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")
    return value

"""Checks on command-line values that turn a user's mistake into one clear line (UserError).

Numbers go through costmodel's one number reader, so `run --price-per-hour 54K` and `cost` read alike."""
from __future__ import annotations

from bench.errors import UserError
from costmodel.input_errors import CostInputError
from costmodel.numbers import parse_positive


def positive_int_list(text: str, what: str) -> list[int]:
    """'1,8,32' -> [1, 8, 32]; an empty list, an empty item, a non-integer, a non-positive value or a value
    given twice (which would be measured twice) is an error."""
    if text is None or not str(text).strip():
        raise UserError(f"{what} is empty; give positive integers separated by commas")
    values = []
    for item in str(text).split(","):
        item = item.strip()
        try:
            value = int(item)
        except ValueError:
            raise UserError(f"{what} must be positive integers separated by commas, got {item!r}") from None
        if value <= 0:
            raise UserError(f"{what} must be positive, got {value}")
        if value in values:
            raise UserError(f"{what} lists {value} twice")
        values.append(value)
    return values


def unique_names(items: list[str], what: str) -> list[str]:
    seen = []
    for item in items:
        if item in seen:
            raise UserError(f"{what} lists {item!r} twice")
        seen.append(item)
    return seen


def positive_float(value, what: str) -> float | None:
    if value is None:
        return None
    try:
        return parse_positive(what, value)
    except CostInputError as exc:
        raise UserError(str(exc)) from None


def positive_int(value, what: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise UserError(f"{what} must be a positive integer, got {value!r}") from None
    if number <= 0:
        raise UserError(f"{what} must be a positive integer, got {number}")
    return number


def non_negative_int(value, what: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise UserError(f"{what} must be a non-negative integer, got {value!r}") from None
    if number < 0:
        raise UserError(f"{what} must be a non-negative integer, got {number}")
    return number


def non_empty(value: str | None, what: str) -> str | None:
    """None stays None (the flag was not given); an empty string is an error, never a silent default."""
    if value is not None and not str(value).strip():
        raise UserError(f"{what} is empty")
    return value


def choice(value: str, choices, what: str) -> str:
    if value not in choices:
        raise UserError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")
    return value

"""The rules every command's flags follow, applied once by the command line (bench/cli.py) to whichever
command is chosen, so no command can differ:

- one number reader: every numeric flag goes through costmodel.numbers (4.20, 906,000, 54K, 2.8M), and a
  float flag is a positive figure (a price, a power, a rate, a share, a time);
- a flag given twice is refused (never "the last one wins"), unless it is declared repeatable;
- options given before a nested subcommand (`cost --x check`) are refused: they would belong to the parent;
- an empty value (`--out ""`) is refused, never read as "here" or as a default;
- a price is at most MAX_PRICE_PER_HOUR, and a catalog tier beside an explicit price is refused (one of them
  would be ignored).
"""
from __future__ import annotations

import argparse

from costmodel.input_errors import CostInputError
from costmodel.numbers import parse_number

# Above any accelerator's rental or all-in cost by two orders of magnitude (a GB300 NVL72 rack's GPU rents
# for single-digit dollars an hour): a figure beyond it is a typo (a price per month, per rack, in cents).
MAX_PRICE_PER_HOUR = 10_000.0
REPEATABLE = (argparse._AppendAction, argparse._AppendConstAction, argparse._CountAction, argparse._ExtendAction)


class FlagError(Exception):
    """A flag broke one of the rules: the command line prints it as one line and exits 2."""


def positive_number_type(flag: str):
    def read(text: str) -> float:
        try:
            value = parse_number("the value", text)
        except CostInputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    read.positive = True  # checked after parsing (check_values), so the error is the command's one line
    return read


def integer_type(flag: str):
    def read(text: str) -> int:
        try:
            value = parse_number("the value", text)
        except CostInputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if value != int(value):
            raise argparse.ArgumentTypeError(f"must be an integer, got {text}")
        return int(value)

    return read


def unify_number_types(parser: argparse.ArgumentParser) -> None:
    """Replace argparse's float and int with costmodel's number reader, in this parser and its subparsers."""
    for action in parser._actions:
        flag = action.option_strings[-1] if action.option_strings else action.dest
        if action.type is float:
            action.type = positive_number_type(flag)
        elif action.type is int:
            action.type = integer_type(flag)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                unify_number_types(sub)


def _action_of(parser: argparse.ArgumentParser, token: str):
    """The optional action a command-line token names (exactly, as --flag=value, or by a unique prefix)."""
    name = token.split("=", 1)[0]
    actions = parser._option_string_actions
    if name in actions:
        return actions[name]
    if name.startswith("--"):
        matches = {a for s, a in actions.items() if s.startswith(name)}
        if len(matches) == 1:
            return matches.pop()
    return None


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def check_command_line(parser: argparse.ArgumentParser, argv: list) -> None:
    """Duplicate flags and options before a nested subcommand, from the tokens of the chosen command
    (`parser` is its subparser; argv starts after the command's name)."""
    counts: dict = {}
    expect_value = 0
    for token in argv:
        if token == "--":
            break
        if expect_value and not (token.startswith("-") and _action_of(parser, token)):
            expect_value -= 1
            continue
        expect_value = 0
        if token.startswith("-") and (action := _action_of(parser, token)) is not None:
            if not isinstance(action, REPEATABLE):
                counts.setdefault(action, []).append(token.split("=", 1)[0])
            if "=" not in token and action.nargs != 0:
                expect_value = action.nargs if isinstance(action.nargs, int) else 1
            continue
        sub = _subparsers(parser)
        if sub is not None and token in sub.choices:
            given = [names[0] for a, names in counts.items() if not isinstance(a, argparse._HelpAction)]
            if given:
                raise FlagError(f"{', '.join(given)} given before `{token}` would belong to the command, not to "
                                f"`{token}`: put {'it' if len(given) == 1 else 'them'} after `{token}`")
            return check_command_line(sub.choices[token], argv[argv.index(token) + 1:])
    for action, names in counts.items():
        if len(names) > 1:
            raise FlagError(f"{action.option_strings[-1]} is given {len(names)} times; give it once "
                            "(a repeated flag is never read as the last one)")


def check_values(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Empty values, a price beyond MAX_PRICE_PER_HOUR, and a tier beside an explicit price."""
    actions = list(parser._actions)
    sub = _subparsers(parser)
    if sub is not None:
        chosen = getattr(args, sub.dest, None)
        if chosen in sub.choices:
            actions += sub.choices[chosen]._actions
    for action in actions:
        if not action.option_strings or not hasattr(args, action.dest):
            continue
        value = getattr(args, action.dest)
        values = value if isinstance(value, list) else [value]
        flag = action.option_strings[-1]
        if any(isinstance(v, str) and not v.strip() for v in values):
            raise FlagError(f"{flag} is empty; give a value or leave the flag out")
        if getattr(action.type, "positive", False):
            for v in values:
                if v is not None and v <= 0:
                    raise FlagError(f"{flag} must be a positive number, got {v:g}")
        if action.dest == "price_per_hour":
            for v in values:
                if v is None:
                    continue
                try:
                    price = parse_number(flag, v)
                except CostInputError:
                    continue  # the command says what is wrong with it
                if price > MAX_PRICE_PER_HOUR:
                    shown = v if isinstance(v, str) else f"{v:,.10g}"
                    raise FlagError(f"{flag} {shown} is above ${MAX_PRICE_PER_HOUR:,.0f} per device-hour: no accelerator "
                                    "costs that much an hour (a price per month, per rack or in cents?)")
    if getattr(args, "tier", None) is not None and getattr(args, "price_per_hour", None) is not None:
        raise FlagError("--tier picks the catalog's price and --price-per-hour gives one: pass one of them "
                        "(one would be ignored)")

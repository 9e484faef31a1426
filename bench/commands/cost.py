"""`tokenbench cost`: the economics of one configuration, of every step of a run, or a check of figures.

    tokenbench cost --device h200 --tier hyperscaler-4y --tokens-per-s 93.4
    tokenbench cost --price-per-hour 2.10 --power-kw 1.9 --tokens-per-s 1200 --json
    tokenbench cost --tco costmodel/data/tco_example.json --tokens-per-s 900
    tokenbench cost --from results/RUN.json [--tier rental-3y]
    tokenbench cost check --price-per-hour 1.41 --tokens-per-s 906,000 --cost-per-mtok 4.20
"""
from __future__ import annotations

import argparse
import json

from costmodel import catalog as prices
from costmodel.check import Figure, check
from costmodel.economics import economics
from costmodel.input_errors import CostInputError
from bench.report.terminal_tables import print_report, print_report_table, stdout_console
from costmodel.number_format import money, si, sig
from costmodel.inputs import resolve_power, resolve_price
from costmodel.cost_report import Table, check_report, economics_report

# Figures are read as text so `cost check` can tell how many digits were given ("4.20" is +-0.005).
FIGURE_HELP = "a number; 906,000, 54K and 2.8M are accepted"


def _price_and_power_options(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--price-per-hour", metavar="P", help="$ per device-hour (overrides catalog and TCO)")
    g.add_argument("--tco", metavar="FILE", help="TCO JSON file (fields: costmodel/tco.py; example: "
                                                 "costmodel/data/tco_example.json)")
    p.add_argument("--device", metavar="NAME", help="catalog device key (h100-sxm, h200, b200, gb300, ...)")
    p.add_argument("--tier", metavar="TIER", help="catalog price tier: hyperscaler-4y, neocloud-4y, rental-3y")
    p.add_argument("--power-kw", metavar="K", help="all-in kW per device (overrides catalog and TCO)")
    p.add_argument("--overhead", metavar="F", type=float,
                   help="all-in power = the device's TDP x F (instead of the catalog's all-in kW)")
    p.add_argument("--utilisation", metavar="U", type=float, help="share of hours that serve tokens, in (0, 1]")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the docstring's examples as laid out
    _price_and_power_options(parser)
    parser.add_argument("--tokens-per-s", metavar="T", help="output tokens/s per device")
    parser.add_argument("--input-tokens-per-s", metavar="I", help="input tokens/s per device, counted separately")
    parser.add_argument("--dtype", default="bf16", help="dtype whose peak gives FLOPS per $ (default bf16)")
    parser.add_argument("--from", dest="from_file", metavar="RUN.json", help="economics of every step of a run")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sub = parser.add_subparsers(dest="cost_action", metavar="check")
    c = sub.add_parser("check", help="derive missing figures from any subset; flag contradictions (exit 1)",
                       description="Give any subset of the five figures; the rest are derived, and every "
                                   "pair that contradicts beyond the rounding of its digits is flagged.")
    c.add_argument("--price-per-hour", metavar="P", help=f"$ per device-hour; {FIGURE_HELP}")
    c.add_argument("--tokens-per-s", metavar="T", help=f"tokens/s per device; {FIGURE_HELP}")
    c.add_argument("--cost-per-mtok", metavar="C", help=f"$ per million tokens; {FIGURE_HELP}")
    c.add_argument("--power-kw", metavar="K", help=f"all-in kW per device; {FIGURE_HELP}")
    c.add_argument("--tokens-per-s-per-mw", metavar="M", help=f"tokens/s per MW; {FIGURE_HELP}")
    c.add_argument("--rtol", type=float, default=1e-6,
                   help="extra relative slack beyond the rounding of the digits given (default 1e-6)")
    c.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _number(name: str, text: str | None) -> float | None:
    return None if text is None else Figure.parse(name, text).value


def _input_tokens(text: str | None) -> float | None:
    # zero input tokens (pure decode) is allowed here, unlike every other figure
    if text is None or text.strip() in ("0", "0.0"):
        return None if text is None else 0.0
    return Figure.parse("input tokens/s", text).value


def refuse_idle_flags(args) -> None:
    """A flag that would do nothing in this combination is refused by name, never silently ignored."""
    if args.dtype not in ("fp32", "tf32", "bf16", "fp16", "fp8", "fp4"):
        raise CostInputError(f"unknown --dtype {args.dtype!r}; choose one of: fp32, tf32, bf16, fp16, fp8, fp4")
    if args.from_file:
        for flag, value in (("--tokens-per-s", args.tokens_per_s), ("--input-tokens-per-s", args.input_tokens_per_s)):
            if value is not None:
                raise CostInputError(f"{flag} does nothing with --from: the run's measured steps give tokens/s")
        return
    if args.device is None:
        for flag, value in (("--tier", args.tier), ("--overhead", args.overhead)):
            if value is not None:
                raise CostInputError(f"{flag} needs --device NAME (a catalog device to price or to take a TDP from)")


def main(args) -> int:
    if getattr(args, "cost_action", None) == "check":
        return _check(args)
    refuse_idle_flags(args)
    if args.from_file:
        return _from_run(args)
    if args.tokens_per_s is None:
        raise CostInputError("cost needs --tokens-per-s T (or --from RUN.json, or `cost check`)")
    spec = _spec_for(args.device)
    quote = resolve_price(_number("price per hour", args.price_per_hour), args.device, args.tier, args.tco,
                          args.utilisation)
    power = resolve_power(_number("power (kW)", args.power_kw), args.device, spec.tdp_w if spec else None,
                          args.overhead, quote)
    e = economics(
        quote.price_per_hour if quote else None,
        _number("tokens/s", args.tokens_per_s),
        power.kw if power else None,
        input_tokens_per_s=_input_tokens(args.input_tokens_per_s),
        utilisation=quote.utilisation if quote else (args.utilisation if args.utilisation is not None else 1.0),
        spec_tflops=spec.peak_tflops.get(args.dtype) if spec else None,
        price_source=quote.source if quote else None,
        power_source=power.source if power else None,
        board_power_source="figures given by hand; nothing was measured",
    )
    if args.json:
        out = {"economics": e.to_dict(), "tco": quote.tco.to_dict() if quote and quote.tco else None}
        print(json.dumps(out, indent=2))
        return 0
    print(f"tokenbench cost: {args.device or 'configuration'}" + (f", tier {args.tier}" if args.tier else ""))
    if quote and quote.tco:
        print(_tco_line(quote.tco))
    print_report(stdout_console(), economics_report(e, args.dtype if spec else None))
    return 0


def _tco_line(t) -> str:
    return (f"TCO: capital {money(t.capital_per_hour)}/h + energy {money(t.energy_per_hour)}/h + hosting "
            f"{money(t.hosting_per_hour)}/h + operations {money(t.operations_per_hour)}/h = "
            f"{money(t.price_per_hour)}/device-hour (capex {money(t.capex)}, capital recovery factor "
            f"{t.capital_recovery_factor:.4f})")


def _spec_for(device: str | None):
    """The bench catalog's spec for a device key, None for a priced device it lacks; unknown -> UserError."""
    if device is None:
        return None
    from bench.configs.device_catalog import catalog, lookup

    if device in catalog():
        return lookup(device)
    if device in prices.devices():
        return None
    return lookup(device)  # raises the UserError naming the known devices


def _check(args) -> int:
    figures = {"price_per_hour": args.price_per_hour, "tokens_per_s": args.tokens_per_s,
               "cost_per_mtok": args.cost_per_mtok, "power_kw": args.power_kw,
               "tokens_per_s_per_mw": args.tokens_per_s_per_mw}
    result = check({k: v for k, v in figures.items() if v is not None}, rtol=args.rtol)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print_report(stdout_console(), check_report(result))
    return 0 if result.ok else 1


def _from_run(args) -> int:
    from bench.derive.stored_run_pricing import board_reason, price_steps, stored_run_power, stored_run_price
    from bench.records.store import label, load_run

    run = load_run(args.from_file)
    key = args.device or run.device.key
    if args.device:
        _spec_for(args.device)  # unknown device: one line
        if args.device != run.device.key:  # its tokens/s were measured on another device: not a b200's rate
            raise CostInputError(f"--device {args.device}: {args.from_file} was measured on {run.device.described}, "
                                 f"not a {args.device}; to cost it there, project it: tokenbench project --to "
                                 f"{args.device} --from {args.from_file}")
    quote = stored_run_price(_number("price per hour", args.price_per_hour), args.tco, args.tier,
                             args.utilisation, key, run.price, run.device)
    power = stored_run_power(_number("power (kW)", args.power_kw), args.overhead, key, run.price,
                             run.device.tdp_w, quote)
    dtype = run.dtype
    reason = board_reason(run)
    rows, dicts = [], []
    for p in price_steps(run, quote, power):
        step, board, e = p.step, p.board_joules_per_token, p.economics
        dicts.append({"batch": step.batch, "context": step.context, "backend": step.backend,
                      "tokens_per_s_per_user": step.tokens_per_s_per_user, "economics": e.to_dict()})
        rows.append([str(step.batch), str(step.context), step.backend, sig(step.tokens_per_s),
                     sig(step.tokens_per_s_per_user), money(e.cost_per_mtok),
                     money(e.effective_cost_per_mtok), si(e.tokens_per_s_per_mw), sig(e.joules_per_token),
                     sig(board) if board else "-"])
    if not rows:
        raise CostInputError(f"{args.from_file}: the run has no step that fits in memory; nothing to cost")
    # a step that is no operating point (no valid timing, not fitting) is said, never silently dropped
    left_out = [f"b={s.batch} ctx={s.context} {s.backend}: {_why_not_usable(s)}"
                for s in run.steps if not s.usable]
    if args.json:
        print(json.dumps({"run": label(run), "model": run.model_name, "dtype": dtype,
                          "price": None if quote is None else {"price_per_hour": quote.price_per_hour,
                                                               "source": quote.source,
                                                               "utilisation": quote.utilisation},
                          "power": None if power is None else power.__dict__,
                          "board_power": reason if not any(r[-1] != "-" for r in rows) else "NVML",
                          "steps": dicts, "not_costed": left_out}, indent=2))
        return 0
    print(f"tokenbench cost: {label(run)}, model {run.model_name}, {dtype}")
    print("price: " + (f"{money(quote.price_per_hour)}/device-hour [{quote.source}]" if quote else
                       "- (none recorded; give --price-per-hour, --device with --tier, or --tco)"))
    if quote and quote.tco:
        print(_tco_line(quote.tco))
    print("power: " + (f"{sig(power.kw)} kW all-in per device [{power.source}]" if power else
                       "- (none recorded; give --power-kw or --device)"))
    if quote and quote.utilisation != 1.0:
        print(f"utilisation: {quote.utilisation:.0%} (effective $/M = $/M / utilisation)")
    print_report_table(stdout_console(), Table(
        "Economics per step", ["batch", "context", "backend", "tok/s", "tok/s/user", "$/M tok", "eff. $/M",
                               "tok/s/MW", "J/tok all-in", "J/tok board"], rows, keys=3))
    if all(r[-1] == "-" for r in rows):
        print(f"board power: {reason}")
    for line in left_out:
        print(f"not costed: {line}")
    return 0


def _why_not_usable(step) -> str:
    if step.valid is False:
        return step.reason or "its check failed"
    if step.fits is False:
        return "does not fit in the device's memory"
    return step.reason or "no tokens/s (no valid timing)"

"""The sides of a comparison or projection: a recorded run, or a catalog device (its spec, price and power),
built here below the commands so that `compare`, `project` and the report share them without importing
one command from another."""
from __future__ import annotations

from bench.records.schema import RunRecord
from bench.records.store import label
from costmodel.ceilings import DeviceSpec
from costmodel.generation_compare import Side
from costmodel.inputs import PriceQuote, resolve_power, resolve_price
from costmodel.power import PowerFigure
from costmodel.roofline_projection import project_run


def device_spec(key: str) -> DeviceSpec:
    """The catalog's spec-sheet entry (one DeviceSpec for bench and costmodel)."""
    from bench.configs.device_catalog import lookup

    return lookup(key)  # unknown key: UserError naming the known ones


def target_price_and_power(key: str, spec: DeviceSpec, args):
    """Catalog price and all-in power for the target, overridden by the user's figures; None if unpriced."""
    from costmodel import catalog as prices
    priced = key in prices.devices()
    quote = None
    if args.price_per_hour is not None or getattr(args, "tco", None) or priced:
        quote = resolve_price(args.price_per_hour, key if priced else None, args.tier, getattr(args, "tco", None),
                              args.utilisation)
    elif args.tier:
        prices.require_tier(args.tier)
    power = resolve_power(args.power_kw, key, spec.tdp_w, args.overhead, quote)
    return quote, power


class SideArgs:
    """The per-side view of the options (target_price_and_power reads single figures)."""

    def __init__(self, args, i: int):
        self.price_per_hour = args.price_per_hour[i] if args.price_per_hour else None
        self.power_kw = args.power_kw[i] if args.power_kw else None
        self.tier, self.utilisation, self.overhead, self.tco = args.tier, None, None, None


def run_side(run: RunRecord, sargs: SideArgs) -> Side:
    key, recorded = run.device.key, run.price
    tdp_w = run.device.tdp_w
    if sargs.price_per_hour is None and recorded and recorded.price_per_hour and not sargs.tier:
        quote = PriceQuote(float(recorded.price_per_hour),
                           f"recorded in the run: {recorded.source or 'source not recorded'}")
        power = resolve_power(sargs.power_kw or recorded.power_kw, key, tdp_w, None, quote)
        if sargs.power_kw is None and recorded.power_kw:
            power = PowerFigure(float(recorded.power_kw), "recorded",
                                f"recorded in the run: {recorded.power_source or 'source not recorded'}")
    elif key:
        quote, power = target_price_and_power(key, device_spec(key), sargs)
    else:
        quote = None if sargs.price_per_hour is None else PriceQuote(sargs.price_per_hour, "user (--price-per-hour)")
        power = resolve_power(sargs.power_kw, None, tdp_w, None, quote)
    return Side(label(run), quote, power, spec_tflops=run.ceilings.spec_tflops,
                measured_tflops=run.ceilings.measured_tflops,
                steps=run.usable_steps(), kind="measured", model=run.model_name,
                dtype=run.dtype)


def device_side(key: str, sargs: SideArgs, dtype: str, run: RunRecord | None, tokens_per_s: float | None) -> Side:
    spec = device_spec(key)
    quote, power = target_price_and_power(key, spec, sargs)
    if run is None:
        return Side(f"{key} (catalog)", quote, power, spec_tflops=spec.peak(dtype), tokens_per_s=tokens_per_s,
                    kind="catalog", dtype=dtype)
    proj = project_run(run, spec, source=label(run))
    side = Side(f"{key} (projected from {label(run)})", quote, power, spec_tflops=spec.peak(run.dtype),
                steps=[s for s in proj.steps if s.fits is not False], kind="projected",
                model=run.model_name, dtype=run.dtype)
    side.notes = [proj.assumption] + proj.notes
    return side

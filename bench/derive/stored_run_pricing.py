"""A stored run priced after the fact: for `tokenbench cost --from` the price and power quote (the user's
figures, then what the run recorded, then the catalog) and every usable step's economics with its board
energy beside the all-in figure; for `tokenbench project` the economics of each projected step at the
target's quote. (bench/derive/run_pricing.py prices a run while it is measured.)"""
from __future__ import annotations

from dataclasses import dataclass

from bench.records.schema import Price, RunRecord, Step
from costmodel import catalog as prices
from costmodel.economics import Economics, economics, require_utilisation
from costmodel.input_errors import CostInputError
from costmodel.inputs import PriceQuote, resolve_power, resolve_price
from costmodel.power import PowerFigure, step_board_joules_per_token


def stored_run_price(price: float | None, tco: str | None, tier: str | None, utilisation: float | None,
                     key: str | None, recorded: Price | None, device=None) -> PriceQuote | None:
    """price (--price-per-hour) > tco (--tco) > tier (catalog) > the price recorded in the run > catalog
    default tier > for a CPU run, the CPU catalog's estimate (device: the run's DeviceRecord)."""
    if price is not None or tco or tier:
        if tier and not key:
            raise CostInputError("--tier needs a catalog device: the run's device has none; add --device NAME")
        return resolve_price(price, key if tier else None, tier, tco, utilisation)
    util = require_utilisation(utilisation) if utilisation is not None else 1.0
    if recorded is not None and recorded.price_per_hour:
        return PriceQuote(float(recorded.price_per_hour),
                          f"recorded in the run: {recorded.source or 'source not recorded'}", util)
    if key and key in prices.devices():
        return resolve_price(None, key, None, None, util)
    if device is not None and device.is_cpu and not key:
        from costmodel.cpu_prices import cpu_price

        if (estimate := cpu_price(device.name, device.extra.get("cores"))) is not None:
            return PriceQuote(estimate.price_per_hour, estimate.source, util)
    return None


def stored_run_power(power_kw: float | None, overhead: float | None, key: str | None, recorded: Price | None,
                     tdp_w: float | None, quote) -> PowerFigure | None:
    """power_kw (--power-kw) > TDP x overhead (--overhead) > the power recorded in the run > TCO > catalog >
    TDP x default."""
    if power_kw is None and overhead is None and recorded is not None and recorded.power_kw:
        return PowerFigure(float(recorded.power_kw), "recorded",
                           f"recorded in the run: {recorded.power_source or 'source not recorded'}")
    return resolve_power(power_kw, key, tdp_w, overhead, quote)


def board_reason(run: RunRecord) -> str:
    """Why a run has no board energy reading, in words."""
    if run.device.kind == "cpu":
        return "no power reading: CPU run (NVML reads NVIDIA GPUs only)"
    return (run.energy or {}).get("reason") or "no NVML energy reading recorded in this run"


@dataclass(frozen=True)
class PricedStep:
    step: Step
    board_joules_per_token: float | None  # NVML, GPU board only; None without a reading
    economics: Economics


def price_steps(run: RunRecord, quote: PriceQuote | None, power: PowerFigure | None) -> list[PricedStep]:
    """Every usable step of a stored run at this quote and power, with its board J/token where measured
    (recorded on the step, else composed from its rows like the step)."""
    reason = board_reason(run)
    out = []
    for step in run.usable_steps():
        board = step.board_joules_per_token or step_board_joules_per_token(
            {op: r.board_joules_per_call for op, r in run.rows_of(step).items()}, run.layers or 0, step.batch)
        e = economics(
            quote.price_per_hour if quote else None, step.tokens_per_s, power.kw if power else None,
            utilisation=quote.utilisation if quote else 1.0,
            spec_tflops=run.ceilings.spec_tflops, measured_tflops=run.ceilings.measured_tflops,
            board_joules_per_token=board,
            price_source=quote.source if quote else None, power_source=power.source if power else None,
            board_power_source="NVML energy counter, GPU board only" if board else reason,
        )
        out.append(PricedStep(step, board, e))
    return out


def price_projected_steps(steps: list, quote: PriceQuote | None, power: PowerFigure | None,
                          spec_tflops: float | None) -> list[Economics]:
    """Each projected step's economics at the target's quote and power (a projection measures no power)."""
    return [economics(quote.price_per_hour if quote else None, s.tokens_per_s, power.kw if power else None,
                      utilisation=quote.utilisation if quote else 1.0, spec_tflops=spec_tflops,
                      price_source=quote.source if quote else None, power_source=power.source if power else None,
                      board_power_source="a projection measures no power") for s in steps]


def reprice_record(record, price_per_hour: float | None, power_kw: float | None):
    """A stored run or workload record as `show` and `report` print it at a price and power: the user's
    (--price-per-hour, --power-kw), else what the run recorded, else for a CPU the CPU catalog's estimate;
    each step's (or point's) $/M tokens and tokens/s per MW recomputed at them, the price's source said in
    `price`. A record of another kind, or with nothing to change, is returned as it is."""
    from dataclasses import replace

    from costmodel.economics import cost_per_mtok, tokens_per_s_per_mw

    if record.kind == "peak":
        return record
    recorded = record.price or Price()
    price, source = recorded.price_per_hour, recorded.source
    power, power_source = recorded.power_kw, recorded.power_source
    if price_per_hour is not None:
        price, source = price_per_hour, "--price-per-hour (given when read)"
    elif price is None and record.device.is_cpu and not record.device.key:
        quote = stored_run_price(None, None, None, None, None, None, record.device)
        if quote is not None:
            price, source = quote.price_per_hour, quote.source
    if power_kw is not None:
        power, power_source = power_kw, "--power-kw (given when read)"
    hints = []  # what works from here: the reading command's own flags, or `cost --from`
    if price is None:
        hints.append("no price: pass --price-per-hour X here, or: tokenbench cost --from RUN --price-per-hour X")
    if power is None:
        hints.append("no power figure: pass --power-kw K here, or: tokenbench cost --from RUN --power-kw K")
    hint = "; ".join(hints) or None
    unpriced_points = record.kind == "workload" and not record.economics and (price or power)
    if (price, power, hint) == (recorded.price_per_hour, recorded.power_kw, recorded.hint) and not unpriced_points:
        return record
    new_price = replace(recorded, price_per_hour=price, source=source, power_kw=power, power_source=power_source,
                        hint=hint)
    if record.kind == "workload":
        from costmodel.workload_economics import workload_economics

        return replace(record, price=new_price,
                       economics=[workload_economics(p, price, power).to_dict() for p in record.workload_points])
    steps = [replace(s, cost_per_mtok=cost_per_mtok(price, s.tokens_per_s) if price and s.usable else None,
                     tokens_per_s_per_mw=tokens_per_s_per_mw(s.tokens_per_s, power) if power and s.usable
                     else None) for s in record.steps]
    return replace(record, price=new_price, steps=steps)

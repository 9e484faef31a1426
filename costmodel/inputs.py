"""Resolve a price and a power figure from what the user gave, with the source of each.

Precedence (a user's figure overrides the next):
  price:  --price-per-hour  >  --tco FILE  >  catalog (--device, --tier)
  power:  --power-kw  >  TCO all-in kW (it_kw_per_device * pue)  >  catalog all-in kW  >  TDP x overhead
  utilisation: --utilisation  >  the TCO file's  >  1.0 (every hour serves tokens)
"""
from __future__ import annotations

from dataclasses import dataclass

from costmodel import catalog
from costmodel.economics import require_positive, require_utilisation
from costmodel.power import DEFAULT_TDP_OVERHEAD, PowerFigure, tdp_power
from costmodel.tco import Tco, load_tco


@dataclass(frozen=True)
class PriceQuote:
    price_per_hour: float
    source: str
    utilisation: float = 1.0
    provisional: bool = False
    tco: Tco | None = None


def resolve_price(
    price_per_hour: float | None = None,
    device: str | None = None,
    tier: str | None = None,
    tco_path: str | None = None,
    utilisation: float | None = None,
) -> PriceQuote | None:
    """The $/device-hour to use, or None when nothing names one; a device the catalog does not price is
    a CostInputError (give --price-per-hour for it)."""
    tco = load_tco(tco_path) if tco_path else None
    util = require_utilisation(utilisation) if utilisation is not None else (tco.utilisation if tco else 1.0)
    if price_per_hour is not None:
        return PriceQuote(require_positive("price per hour", price_per_hour), "user (--price-per-hour)", util,
                          tco=tco)
    if tco is not None:
        return PriceQuote(tco.price_per_hour, tco.source, util, tco=tco)
    if device is not None:
        p = catalog.require_catalog_price(device, tier)  # unpriced device: one line naming priced ones
        return PriceQuote(p.price_per_hour, p.source + (" (provisional)" if p.provisional else ""), util,
                          provisional=p.provisional)
    if tier is not None:
        catalog.require_tier(tier)  # a tier without a device names no price, but a misspelt one is an error
    return None


def resolve_power(
    power_kw: float | None = None,
    device: str | None = None,
    tdp_w: float | None = None,
    overhead: float | None = None,
    quote: PriceQuote | None = None,
) -> PowerFigure | None:
    """The all-in kW per device to use, or None when no source gives one."""
    if power_kw is not None:
        return PowerFigure(require_positive("power (kW)", power_kw), "user", "user (--power-kw)")
    if overhead is not None and tdp_w is not None:
        # an explicit overhead factor is the user asking for TDP x overhead, so it outranks the catalog
        return tdp_power(tdp_w, overhead)
    if quote is not None and quote.tco is not None:
        return PowerFigure(quote.tco.all_in_kw, "tco",
                           f"{quote.tco.source}: IT kW x PUE = {quote.tco.inputs.it_kw_per_device:g} x "
                           f"{quote.tco.inputs.pue:g}")
    if device is not None:
        kw = catalog.all_in_kw(device)
        if kw is not None:
            return PowerFigure(kw, "catalog", catalog.power_source(device))
    if tdp_w is not None:
        return tdp_power(tdp_w, DEFAULT_TDP_OVERHEAD)
    return None

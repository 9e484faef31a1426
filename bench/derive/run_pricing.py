"""A run's price and power quote (flags first, then the catalog) and the per-step economics it implies.
Shared by run, tp, moe and fp8; it lives here, below the commands, so no command imports another."""
from __future__ import annotations

from bench.parsing import positive_float


def run_price_quote(args, device) -> dict:
    from costmodel.catalog import all_in_kw, catalog_price

    price = positive_float(args.price_per_hour, "--price-per-hour")
    power = positive_float(args.power_kw, "--power-kw")
    out = {"price_per_hour": price, "source": "--price-per-hour" if price else None,
           "power_kw": power, "power_source": "--power-kw" if power else None}
    if device.key is not None:
        if price is None and (cat := catalog_price(device.key)) is not None:
            out.update(price_per_hour=cat.price_per_hour, source=cat.source)
        if power is None and (kw := all_in_kw(device.key)) is not None:
            out.update(power_kw=kw, power_source="catalog all-in kW per device (SemiAnalysis InferenceX)")
    elif device.kind == "cpu" and price is None:
        if (estimate := cpu_price_estimate(device.name, device.details.get("cores"))) is not None:
            out.update(price_per_hour=estimate.price_per_hour, source=estimate.source)
    hints = []
    if out["price_per_hour"] is None:
        hints.append("no price for this device: pass --price-per-hour for $/M tokens (or later: "
                     "tokenbench cost --from RUN --price-per-hour X)")
    elif price is None and device.key is None:
        hints.append("the price is the CPU catalog's estimate: pass --price-per-hour for this machine's own "
                     "(or later: tokenbench cost --from RUN --price-per-hour X)")
    if out["power_kw"] is None:
        hints.append("no power figure for this device: pass --power-kw for tokens/s per MW (or later: "
                     "tokenbench cost --from RUN --power-kw K)")
    out["hint"] = "; ".join(hints) or None
    return out


def cpu_price_estimate(cpu_name: str | None, vcpus):
    """The CPU catalog's price for this many vCPUs of this CPU (costmodel/cpu_prices.py), or None."""
    from costmodel.cpu_prices import cpu_price

    return cpu_price(cpu_name, vcpus)


def economics_for(price: dict):
    from costmodel.economics import cost_per_mtok, tokens_per_s_per_mw

    def compute(tokens_per_s: float) -> dict:
        return {
            "cost_per_mtok": cost_per_mtok(price["price_per_hour"], tokens_per_s)
            if price["price_per_hour"] else None,
            "tokens_per_s_per_mw": tokens_per_s_per_mw(tokens_per_s, price["power_kw"])
            if price["power_kw"] else None,
        }

    return compute

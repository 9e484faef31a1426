"""Catalog prices and all-in power per device, read from data/prices.json (each figure with its source)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from costmodel.input_errors import CostInputError


@dataclass(frozen=True)
class CatalogPrice:
    device: str
    tier: str
    price_per_hour: float
    all_in_kw: float | None
    source: str
    provisional: bool


@lru_cache(maxsize=1)
def load_prices() -> dict:
    text = resources.files("costmodel").joinpath("data/prices.json").read_text()
    return json.loads(text)


def tiers() -> list[str]:
    return list(load_prices()["tiers"])


def devices() -> list[str]:
    return list(load_prices()["devices"])


def require_tier(tier: str) -> str:
    data = load_prices()
    if tier not in data["tiers"]:
        raise CostInputError(f"unknown price tier {tier!r}; choose one of: {', '.join(data['tiers'])}")
    return tier


def all_in_kw(device: str) -> float | None:
    """All-in kW per device from the catalog, or None for a device the catalog does not price."""
    entry = load_prices()["devices"].get(device)
    return None if entry is None else entry["all_in_kw"]


def catalog_price(device: str, tier: str | None = None) -> CatalogPrice | None:
    """The catalog's $/device-hour for `device` in `tier` (default tier when None); None if unpriced."""
    data = load_prices()
    tier = require_tier(tier or data["default_tier"])
    entry = data["devices"].get(device)
    if entry is None:
        return None
    return CatalogPrice(
        device=device,
        tier=tier,
        price_per_hour=entry["price_per_hour"][tier],
        all_in_kw=entry["all_in_kw"],
        source=f"{data['source']} ({data['as_of']}), tier {tier}",
        provisional=bool(entry.get("provisional", False)),
    )


def require_catalog_price(device: str, tier: str | None = None) -> CatalogPrice:
    """Like catalog_price, but an unknown device is a CostInputError naming the devices that are priced."""
    price = catalog_price(device, tier)
    if price is None:
        raise CostInputError(f"no catalog price for device {device!r}; priced devices: {', '.join(devices())}")
    return price


def power_source(device: str) -> str:
    data = load_prices()
    return f"all-in kW per device, {data['source']} ({data['as_of']})"

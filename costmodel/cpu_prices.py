"""What an hour of a CPU costs when its owner gives no price: a public on-demand price of a general-purpose
cloud VM with a CPU of the same vendor, divided by its vCPUs, times the vCPUs measured on (data/cpu_prices.json,
with its source and the day it was read). Labelled an estimate wherever it is used."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources


@dataclass(frozen=True)
class CpuPrice:
    price_per_hour: float  # for the vCPUs measured on
    per_vcpu_hour: float
    vcpus: int
    instance: str
    source: str  # one line: what it is, where from, when

    @property
    def label(self) -> str:
        return self.source


@lru_cache(maxsize=1)
def load_cpu_prices() -> dict:
    return json.loads(resources.files("costmodel").joinpath("data/cpu_prices.json").read_text())


def cpu_price(cpu_name: str | None, vcpus: int | None) -> CpuPrice | None:
    """The catalog's estimate for `vcpus` vCPUs of a CPU named `cpu_name` (matched by vendor words), or None
    for a CPU of no listed vendor or an unknown vCPU count."""
    if not cpu_name or not isinstance(vcpus, int) or isinstance(vcpus, bool) or vcpus < 1:
        return None
    data = load_cpu_prices()
    for entry in data["entries"]:
        if entry["match"].lower() in cpu_name.lower():
            per_vcpu = entry["price_per_hour"] / entry["vcpus"]
            source = (f"CPU catalog estimate, not this machine's price: {vcpus} vCPU x ${per_vcpu:.5f}/vCPU-hour "
                      f"(AWS {entry['instance']} {entry['cpu']}, ${entry['price_per_hour']}/h for {entry['vcpus']} "
                      f"vCPU on demand in {entry['region']}, retrieved {data['retrieved']}; "
                      "costmodel/data/cpu_prices.json)")
            return CpuPrice(per_vcpu * vcpus, per_vcpu, vcpus, entry["instance"], source)
    return None

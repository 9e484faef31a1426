"""The TCO builder: $/device-hour from what owning and running one device costs.

A TCO file is a JSON object; money in US dollars, per device unless the name says otherwise.

Required fields
  capex_per_device       number > 0  purchase price of the accelerator itself
  depreciation_years     number > 0  years over which the capex is recovered
  cost_of_capital        number >= 0 annual rate (0.10 = 10%); the capex is recovered as an annuity
  power_price_per_kwh    number >= 0 electricity price, $/kWh
  pue                    number >= 1 facility power usage effectiveness (total facility / IT power)
  it_kw_per_device       number > 0  IT power drawn per device: its TDP plus its share of host CPUs,
                                     memory, NICs and switches (kW)
  utilisation            number in (0, 1]  share of hours that serve tokens

Optional fields (default 0 unless stated)
  server_share           number >= 0 the device's share of the server chassis, CPUs, memory
  network_share          number >= 0 its share of NICs, switches, optics, cabling
  facility_share         number >= 0 its share of owned facility build-out (set 0 when renting colocation)
  hosting_per_kw_month   number >= 0 colocation / hosting price per kW of IT power per month
  operations_per_year    number >= 0 staff, maintenance, support contracts, software per device-year
  name, source, notes    strings, carried into the output so the figure keeps its provenance

Model (why each term is there):
  capex          = capex_per_device + server_share + network_share + facility_share
  capital/hour   = capex * CRF / 8760, CRF = r (1+r)^n / ((1+r)^n - 1)  (= 1/n when r = 0): the level
                   yearly payment that repays the capex and the return its capital could have earned
  energy/hour    = it_kw_per_device * pue * power_price_per_kwh: charged for every hour, because an idle
                   device in a provisioned rack still draws and its power is still paid for (conservative)
  hosting/hour   = hosting_per_kw_month * it_kw_per_device * 12 / 8760
  operations/hour= operations_per_year / 8760
  price/hour     = the sum: per wall-clock device-hour, whether or not it serves tokens. Utilisation is
                   kept apart and applied by the economics (effective $/M tokens = $/M tokens / utilisation).
  all-in kW      = it_kw_per_device * pue, offered as the power figure when no other is given.
Unknown fields are refused so a typo cannot silently zero a cost.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from costmodel.economics import require_utilisation
from costmodel.input_errors import CostInputError

HOURS_PER_YEAR = 8760.0

# field -> (lower bound, whether the bound itself is allowed); None marks the utilisation rule
_REQUIRED = {
    "capex_per_device": (0.0, False),
    "depreciation_years": (0.0, False),
    "cost_of_capital": (0.0, True),
    "power_price_per_kwh": (0.0, True),
    "pue": (1.0, True),
    "it_kw_per_device": (0.0, False),
    "utilisation": None,
}
_OPTIONAL_NUMBERS = ("server_share", "network_share", "facility_share", "hosting_per_kw_month",
                     "operations_per_year")
_OPTIONAL_STRINGS = ("name", "source", "notes")


@dataclass(frozen=True)
class TcoInputs:
    capex_per_device: float
    depreciation_years: float
    cost_of_capital: float
    power_price_per_kwh: float
    pue: float
    it_kw_per_device: float
    utilisation: float
    server_share: float = 0.0
    network_share: float = 0.0
    facility_share: float = 0.0
    hosting_per_kw_month: float = 0.0
    operations_per_year: float = 0.0
    name: str | None = None
    source: str | None = None
    notes: str | None = None


@dataclass(frozen=True)
class Tco:
    """The breakdown of one device-hour; every term in $/device-hour."""

    inputs: TcoInputs
    capex: float
    capital_recovery_factor: float
    capital_per_hour: float
    energy_per_hour: float
    hosting_per_hour: float
    operations_per_hour: float
    price_per_hour: float
    all_in_kw: float
    utilisation: float

    @property
    def source(self) -> str:
        label = self.inputs.name or "TCO file"
        return f"TCO builder: {label}" + (f" ({self.inputs.source})" if self.inputs.source else "")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["source"] = self.source
        return d


def _number(data: dict, key: str, where: str) -> float:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CostInputError(f"{where}: field {key!r} must be a number, got {value!r}")
    return float(value)


def parse_tco(data: object, where: str = "TCO") -> TcoInputs:
    """Validate a TCO mapping; any problem is one CostInputError line naming the field."""
    if not isinstance(data, dict):
        raise CostInputError(f"{where}: expected a JSON object, got {type(data).__name__}")
    known = set(_REQUIRED) | set(_OPTIONAL_NUMBERS) | set(_OPTIONAL_STRINGS)
    unknown = sorted(set(data) - known)
    if unknown:
        raise CostInputError(f"{where}: unknown field {unknown[0]!r}; known fields: {', '.join(sorted(known))}")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise CostInputError(f"{where}: missing required field {missing[0]!r}")
    values: dict = {}
    for key, rule in _REQUIRED.items():
        value = _number(data, key, where)
        if rule is None:
            try:
                value = require_utilisation(value)
            except CostInputError as e:
                raise CostInputError(f"{where}: {e}") from None
        else:
            bound, inclusive = rule
            if value < bound or (value == bound and not inclusive):
                op = ">=" if inclusive else ">"
                raise CostInputError(f"{where}: field {key!r} must be {op} {bound:g}, got {value!r}")
        values[key] = value
    for key in _OPTIONAL_NUMBERS:
        if key in data:
            value = _number(data, key, where)
            if value < 0:
                raise CostInputError(f"{where}: field {key!r} must be >= 0, got {value!r}")
            values[key] = value
    for key in _OPTIONAL_STRINGS:
        if key in data:
            if not isinstance(data[key], str):
                raise CostInputError(f"{where}: field {key!r} must be a string, got {data[key]!r}")
            values[key] = data[key]
    return TcoInputs(**values)


def capital_recovery_factor(rate: float, years: float) -> float:
    """Share of the capex to pay each year so that n equal payments repay it at interest `rate`."""
    if rate == 0:
        return 1.0 / years
    growth = (1.0 + rate) ** years
    return rate * growth / (growth - 1.0)


def build_tco(inputs: TcoInputs) -> Tco:
    capex = inputs.capex_per_device + inputs.server_share + inputs.network_share + inputs.facility_share
    crf = capital_recovery_factor(inputs.cost_of_capital, inputs.depreciation_years)
    capital = capex * crf / HOURS_PER_YEAR
    energy = inputs.it_kw_per_device * inputs.pue * inputs.power_price_per_kwh
    hosting = inputs.hosting_per_kw_month * inputs.it_kw_per_device * 12.0 / HOURS_PER_YEAR
    operations = inputs.operations_per_year / HOURS_PER_YEAR
    return Tco(
        inputs=inputs,
        capex=capex,
        capital_recovery_factor=crf,
        capital_per_hour=capital,
        energy_per_hour=energy,
        hosting_per_hour=hosting,
        operations_per_hour=operations,
        price_per_hour=capital + energy + hosting + operations,
        all_in_kw=inputs.it_kw_per_device * inputs.pue,
        utilisation=inputs.utilisation,
    )


def load_tco(path: str | Path) -> Tco:
    """Read, validate and build a TCO file; missing file or bad JSON is a CostInputError too."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise CostInputError(f"cannot read TCO file {str(p)!r}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise CostInputError(f"TCO file {str(p)!r} is not text (a binary file?): expected JSON") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise CostInputError(f"TCO file {str(p)!r} is not valid JSON: {e.msg} at line {e.lineno}") from None
    return build_tco(parse_tco(data, where=f"TCO file {str(p)!r}"))

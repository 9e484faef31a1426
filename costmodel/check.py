"""`tokenbench cost check`: derive the missing figures from any subset and catch contradictions.

Five figures, two relations (InferenceX definitions):
  A  $/M tokens      = price/h / (tokens/s * 3600 / 1e6)
  B  tokens/s per MW = tokens/s * 1000 / all-in kW
tokens/s is the only figure both relations share, so every contradiction shows up as two different
tokens/s: the one given, the one price and $/M imply (A), the one power and tokens/s per MW imply (B).
Each pair of those that cannot agree is reported, naming the given figures behind it.

"Beyond rounding": each figure is an interval, from the digits it was written with (4.20 -> 4.195..4.205,
54K -> 53.5K..54.5K, 906,000 -> 905,500..906,500; an integer's trailing zeros are taken as not
significant beyond two significant figures, 1000 -> 950..1050) widened by an optional relative slack. A contradiction is two intervals that do not overlap.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from costmodel.economics import SECONDS_PER_HOUR, require_positive
from costmodel.input_errors import CostInputError
from costmodel.number_format import money, si, sig
from costmodel.numbers import read_number

FIGURES = {
    "price_per_hour": "price per device-hour ($)",
    "tokens_per_s": "tokens/s per device",
    "cost_per_mtok": "$/M tokens",
    "power_kw": "all-in kW per device",
    "tokens_per_s_per_mw": "tokens/s per MW",
}


@dataclass(frozen=True)
class Figure:
    """A figure as written, with the interval its rounding allows."""

    value: float
    low: float
    high: float
    text: str

    @property
    def dollars(self) -> str:
        return "$" + self.text.lstrip("$")

    @classmethod
    def parse(cls, name: str, given: str | float) -> Figure:
        """'4.20', '$1.41', '906,000', '54K', '2.8M', '4.3e-4', or a float (its shortest repr's digits)."""
        if isinstance(given, bool):
            raise CostInputError(f"{name} must be a number, got {given!r}")
        # repr gives a float's shortest round-tripping digits, so 4.2 reads as written (to +-0.05)
        text = repr(given) if isinstance(given, (int, float)) else str(given).strip()
        if isinstance(given, float) and text.endswith(".0"):
            text = text[:-2]  # 2.8e6 is 2800000.0: its zeros are not a claim of precision
        written = read_number(name, text)
        mant, scale, value = written.mantissa, written.scale, written.value
        if "." in mant:
            step = 10.0 ** -(len(mant) - mant.index(".") - 1)
        else:
            # an integer's trailing zeros may or may not be significant; read it as having at least two
            # significant figures (1000 -> 1.0K +-50, 906,000 -> 906K +-500, 2800000 -> 2.8M +-50K)
            digits = mant.lstrip("0")
            significant = max(len(digits.rstrip("0")), min(2, len(digits)))
            step = 10.0 ** (len(digits) - significant)
        require_positive(name, value)
        half = 0.5 * step * scale
        return cls(value=value, low=max(value - half, 0.0), high=value + half, text=text)

    def widened(self, rtol: float) -> Figure:
        return Figure(self.value, self.low * (1 - rtol), self.high * (1 + rtol), self.text)


@dataclass(frozen=True)
class Estimate:
    """tokens/s from one source, as a value and the interval its inputs' rounding allows."""

    value: float
    low: float
    high: float
    source: str  # "given" | "A" | "B"
    explain: str


@dataclass(frozen=True)
class Contradiction:
    figures: tuple[str, ...]  # the given figures involved
    message: str


@dataclass
class CheckResult:
    given: dict[str, Figure]
    derived: dict[str, float] = field(default_factory=dict)
    derived_from: dict[str, str] = field(default_factory=dict)
    contradictions: list[Contradiction] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.contradictions

    def to_dict(self) -> dict:
        return {
            "given": {k: {"value": f.value, "low": f.low, "high": f.high, "text": f.text}
                      for k, f in self.given.items()},
            "derived": dict(self.derived),
            "derived_from": dict(self.derived_from),
            "contradictions": [{"figures": list(c.figures), "message": c.message} for c in self.contradictions],
            "ok": self.ok,
        }


def _tps_from_price(price: Figure, cpm: Figure) -> Estimate:
    # tokens/s = price / (cpm * 3600 / 1e6): smallest with the lowest price over the highest $/M
    k = SECONDS_PER_HOUR / 1e6
    return Estimate(price.value / (cpm.value * k), price.low / (cpm.high * k), price.high / (cpm.low * k), "A",
                    f"price {price.dollars}/h and {cpm.dollars}/M tokens imply")


def _tps_from_power(kw: Figure, tpsmw: Figure) -> Estimate:
    return Estimate(tpsmw.value * kw.value / 1000.0, tpsmw.low * kw.low / 1000.0, tpsmw.high * kw.high / 1000.0,
                    "B", f"{kw.text} kW and {tpsmw.text} tokens/s per MW imply")


def _overlap(a: Estimate, b: Estimate) -> bool:
    return a.low <= b.high and b.low <= a.high


def check(figures: dict[str, str | float | None], rtol: float = 1e-6) -> CheckResult:
    """Derive what the given figures determine and list every pair that contradicts beyond rounding."""
    unknown = set(figures) - set(FIGURES)
    if unknown:
        raise CostInputError(f"unknown figure {min(unknown)!r}; known: {', '.join(FIGURES)}")
    if not (isinstance(rtol, (int, float)) and 0 <= rtol < 1):
        raise CostInputError(f"relative tolerance must be in [0, 1), got {rtol!r}")
    given = {k: Figure.parse(FIGURES[k], v).widened(rtol) for k, v in figures.items() if v is not None}
    if not given:
        raise CostInputError("cost check needs at least one figure (price, tokens/s, $/M tokens, power, "
                             "tokens/s per MW)")
    result = CheckResult(given=given)
    price, tps, cpm = given.get("price_per_hour"), given.get("tokens_per_s"), given.get("cost_per_mtok")
    kw, tpsmw = given.get("power_kw"), given.get("tokens_per_s_per_mw")

    estimates: list[Estimate] = []
    if tps is not None:
        estimates.append(Estimate(tps.value, tps.low, tps.high, "given", "tokens/s as given"))
    if price is not None and cpm is not None:
        estimates.append(_tps_from_price(price, cpm))
    if kw is not None and tpsmw is not None:
        estimates.append(_tps_from_power(kw, tpsmw))

    for i, a in enumerate(estimates):
        for b in estimates[i + 1:]:
            if not _overlap(a, b):
                result.contradictions.append(_describe(a, b, given))

    # Derive from the first tokens/s estimate: the given one if any (a figure stated outranks one implied).
    if estimates:
        best = estimates[0]
        rate = best.value
        result.derived["tokens_per_s"] = rate
        result.derived_from["tokens_per_s"] = {"given": "given", "A": "price and $/M tokens",
                                               "B": "power and tokens/s per MW"}[best.source]
        k = SECONDS_PER_HOUR / 1e6
        if price is not None:
            result.derived["cost_per_mtok"] = price.value / (rate * k)
            result.derived_from.setdefault("cost_per_mtok", "price and tokens/s")
        elif cpm is not None:
            result.derived["price_per_hour"] = cpm.value * rate * k
            result.derived_from["price_per_hour"] = "$/M tokens and tokens/s"
        if kw is not None:
            result.derived["tokens_per_s_per_mw"] = rate * 1000.0 / kw.value
            result.derived_from.setdefault("tokens_per_s_per_mw", "tokens/s and power")
        elif tpsmw is not None:
            result.derived["power_kw"] = rate * 1000.0 / tpsmw.value
            result.derived_from["power_kw"] = "tokens/s and tokens/s per MW"
        cost = price.value if price is not None else result.derived.get("price_per_hour")
        if cost is not None:
            result.derived.setdefault("cost_per_mtok", cost / (rate * k))
            result.derived["tokens_per_dollar"] = rate * SECONDS_PER_HOUR / cost
            result.derived_from["tokens_per_dollar"] = "price and tokens/s"
        power = kw.value if kw is not None else result.derived.get("power_kw")
        if power is not None:
            result.derived.setdefault("tokens_per_s_per_mw", rate * 1000.0 / power)
            result.derived["joules_per_token"] = power * 1000.0 / rate
            result.derived["kwh_per_mtok"] = power * 1e6 / (rate * SECONDS_PER_HOUR)
            result.derived_from["joules_per_token"] = result.derived_from["kwh_per_mtok"] = "power and tokens/s"
    # Figures both given and derived are the given ones; keep only what the user did not state.
    for key in list(result.derived):
        if key in given:
            del result.derived[key]
            result.derived_from.pop(key, None)
    return result


def _describe(a: Estimate, b: Estimate, given: dict[str, Figure]) -> Contradiction:
    """One line naming the figures and what they imply; the relation-specific wording reads better."""
    k = SECONDS_PER_HOUR / 1e6
    if a.source == "given" and b.source == "A":
        price, cpm = given["price_per_hour"], given["cost_per_mtok"]
        implied = price.value / (a.value * k)
        msg = (f"price {price.dollars}/h at {given['tokens_per_s'].text} tokens/s gives {money(implied)}/M tokens, "
               f"contradicting the {cpm.dollars}/M tokens given (which implies {sig(b.value)} tokens/s)")
        return Contradiction(("price_per_hour", "tokens_per_s", "cost_per_mtok"), msg)
    if a.source == "given" and b.source == "B":
        kw, tpsmw = given["power_kw"], given["tokens_per_s_per_mw"]
        implied = a.value * 1000.0 / kw.value
        msg = (f"{given['tokens_per_s'].text} tokens/s at {kw.text} kW gives {si(implied)} tokens/s per MW, "
               f"contradicting the {tpsmw.text} given (which implies {sig(b.value)} tokens/s)")
        return Contradiction(("tokens_per_s", "power_kw", "tokens_per_s_per_mw"), msg)
    msg = (f"{a.explain} {sig(a.value)} tokens/s, but {b.explain} {sig(b.value)} tokens/s "
           f"(a factor of {max(a.value, b.value) / min(a.value, b.value):,.3g} apart)")
    return Contradiction(("price_per_hour", "cost_per_mtok", "power_kw", "tokens_per_s_per_mw"), msg)

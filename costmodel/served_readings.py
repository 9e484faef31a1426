"""Published served figures that are not one benchmark run: readings on a published frontier (InferenceX's
compare pages interpolate each curve at a chosen interactivity) and vendors' headline claims. They carry
no exact concurrency or TP, so they are kept apart from the served points (costmodel/served_results.py) and
printed, never placed on a curve as if measured.

CSV columns: model, hardware, precision, isl, osl, tokens_per_s_per_gpu_total, interactivity,
cost_per_mtok_total, approx_concurrency, what, source, date, note. Every row needs a source; a figure its
source does not state stays empty. Each row is checked for the price it implies:
$/GPU-hour = $/M x tokens/s per GPU x 3600 / 1e6, so a claim whose own figures disagree is seen.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from costmodel.catalog import devices
from costmodel.input_errors import CostInputError
from costmodel.numbers import parse_number
from costmodel.served_names import hardware_key, model_key, precision_key

COLUMNS = ("model", "hardware", "precision", "isl", "osl", "tokens_per_s_per_gpu_total", "interactivity",
           "cost_per_mtok_total", "approx_concurrency", "what", "source", "date", "note")
KINDS = ("frontier reading", "vendor claim")


@dataclass(frozen=True)
class ServedReading:
    model: str
    hardware: str  # catalog key
    precision: str | None
    isl: int | None
    osl: int | None
    tokens_per_s_per_gpu: float
    interactivity: float | None
    cost_per_mtok: float | None
    approx_concurrency: int | None
    what: str  # one of KINDS
    source: str
    date: str
    note: str

    @property
    def implied_price_per_hour(self) -> float | None:
        """The $/GPU-hour the row's own $/M and tokens/s imply (None without a $/M)."""
        return None if self.cost_per_mtok is None else self.cost_per_mtok * self.tokens_per_s_per_gpu * 3600 / 1e6


def is_readings_csv(text: str) -> bool:
    first = text.lstrip().splitlines()[0] if text.strip() else ""
    return "approx_concurrency" in first and "what" in first


def _opt(where: str, name: str, value, whole: bool = False):
    if value is None or not str(value).strip():
        return None
    x = parse_number(f"{where}: {name}", value)
    if x <= 0 or (whole and not float(x).is_integer()):
        raise CostInputError(f"{where}: {name} must be a positive {'whole ' if whole else ''}number, got {value!r}")
    return int(x) if whole else x


def read_readings(text: str, name: str) -> list[ServedReading]:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    if tuple(header) != COLUMNS:
        raise CostInputError(f"served readings {name}: columns must be {', '.join(COLUMNS)}")
    out = []
    for n, row in enumerate(reader, 1):
        where = f"served readings {name}: row {n}"
        if None in row or any(v is None for v in row.values()):
            raise CostInputError(f"{where}: not as many fields as the header has columns")
        if not row["source"].strip():
            raise CostInputError(f"{where}: no source: every reading says where it was published")
        if row["what"] not in KINDS:
            raise CostInputError(f"{where}: what must be one of {', '.join(KINDS)}, got {row['what']!r}")
        hw = hardware_key(row["hardware"])
        if hw is None or hw not in devices():
            raise CostInputError(f"{where}: unknown hardware {row['hardware']!r}")
        total = _opt(where, "tokens_per_s_per_gpu_total", row["tokens_per_s_per_gpu_total"])
        if total is None:
            raise CostInputError(f"{where}: tokens_per_s_per_gpu_total is empty (a required figure)")
        out.append(ServedReading(
            model=model_key(row["model"]), hardware=hw,
            precision=precision_key(row["precision"]) if row["precision"].strip() else None,
            isl=_opt(where, "isl", row["isl"], True), osl=_opt(where, "osl", row["osl"], True),
            tokens_per_s_per_gpu=total, interactivity=_opt(where, "interactivity", row["interactivity"]),
            cost_per_mtok=_opt(where, "cost_per_mtok_total", row["cost_per_mtok_total"]),
            approx_concurrency=_opt(where, "approx_concurrency", row["approx_concurrency"], True),
            what=row["what"], source=row["source"].strip(), date=row["date"].strip(), note=row["note"].strip()))
    if not out:
        raise CostInputError(f"served readings {name} has no rows")
    return out

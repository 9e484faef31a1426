"""Reports of Economics and check results: every figure with its unit, every input with its source.

Pure data (formatted cells and lines): how a table is laid out on a terminal is bench's (bench/report/terminal_tables.py),
so costmodel stays free of rich, torch and bench."""
from __future__ import annotations

from dataclasses import dataclass, field

from costmodel.check import FIGURES, CheckResult
from costmodel.economics import Economics
from costmodel.number_format import money, si, sig


@dataclass(frozen=True)
class Table:
    """One table, every cell formatted. The first `keys` columns name the row (left-aligned, kept with every
    part of a table split to fit); columns in `text` are free text that may wrap at spaces; the rest are
    figures, never wrapped or cut."""
    title: str
    headers: list[str]
    rows: list[list[str]]
    keys: int = 1
    text: tuple[int, ...] = ()


@dataclass(frozen=True)
class Report:
    tables: list[Table]
    lines: list[str] = field(default_factory=list)  # printed after the tables


def economics_report(e: Economics, dtype: str | None = None) -> Report:
    """Inputs (with sources) then outputs; a missing input shows '-' and the note says why."""
    tag = f" {dtype}" if dtype else ""
    inputs = [
        ["price", f"{money(e.price_per_hour)}/device-hour" if e.price_per_hour else "-", e.price_source or ""],
        ["power (all-in)", f"{sig(e.power_kw)} kW/device" if e.power_kw else "-", e.power_source or ""],
        ["tokens/s", f"{sig(e.tokens_per_s)} per device", "output (decode) tokens"],
    ]
    if e.input_tokens_per_s is not None:
        inputs.append(["input tokens/s", sig(e.input_tokens_per_s), "counted separately"])
    inputs.append(["utilisation", f"{e.utilisation:.0%}", "share of hours that serve tokens"])
    if e.spec_tflops:
        inputs.append([f"spec peak{tag}", f"{sig(e.spec_tflops)} TFLOP/s", "spec sheet, dense"])
    if e.measured_tflops:
        inputs.append([f"measured peak{tag}", f"{sig(e.measured_tflops)} TFLOP/s", "tokenbench peak"])

    # with input tokens given, the total figures count input + output tokens: the labels say so
    both = " (input + output tokens)" if e.input_tokens_per_s is not None else ""
    outputs = [[f"$/M tokens{both}", money(e.cost_per_mtok)]]
    if e.cost_per_mtok_output is not None:
        outputs.append(["$/M output tokens", money(e.cost_per_mtok_output)])
    outputs += [
        [f"effective $/M tokens{both} (at {e.utilisation:.0%} utilisation)", money(e.effective_cost_per_mtok)],
        [f"tokens per ${both}", sig(e.tokens_per_dollar)],
        [f"tokens/s per MW{both} (all-in)", si(e.tokens_per_s_per_mw)],
        [f"J/token{both} (all-in)", sig(e.joules_per_token)],
        [f"kWh per M tokens{both} (all-in)", sig(e.kwh_per_mtok)],
        ["J/token (GPU board, measured by NVML)",
         sig(e.board_joules_per_token) if e.board_joules_per_token else "- (no power reading)"],
        [f"spec FLOPS per $ (TFLOP/s{tag} per $/h)", sig(e.spec_flops_per_dollar)],
        [f"measured FLOPS per $ (TFLOP/s{tag} per $/h)", sig(e.measured_flops_per_dollar)],
    ]
    if e.board_kwh_per_mtok is not None:
        outputs.insert(-2, ["kWh per M tokens (GPU board, measured)", sig(e.board_kwh_per_mtok)])
    lines = []
    if e.board_power_source and e.board_joules_per_token is not None:
        lines.append(f"board power: {e.board_power_source}")
    lines += [f"note: {n}" for n in e.notes]
    # a figure's name is a phrase (up to ~60 characters): it may wrap at spaces on a narrow terminal
    return Report([Table("Inputs", ["input", "value", "source"], inputs, text=(2,)),
                   Table("Figures", ["figure", "value"], outputs, text=(0,))], lines)


_UNITS = {
    "price_per_hour": lambda v: f"{money(v)}/h",
    "tokens_per_s": lambda v: sig(v),
    "cost_per_mtok": lambda v: f"{money(v)}/M",
    "power_kw": lambda v: f"{sig(v)} kW",
    "tokens_per_s_per_mw": si,
    "tokens_per_dollar": sig,
    "joules_per_token": sig,
    "kwh_per_mtok": sig,
}
_LABELS = {**FIGURES, "tokens_per_dollar": "tokens per $", "joules_per_token": "J/token (all-in)",
           "kwh_per_mtok": "kWh per M tokens (all-in)"}


def check_report(r: CheckResult) -> Report:
    rows = [[_LABELS[k], f.text, "given"] for k, f in r.given.items()]
    rows += [[_LABELS[k], _UNITS[k](v), f"derived from {r.derived_from.get(k, '?')}"] for k, v in r.derived.items()]
    if r.ok:
        lines = ["consistent: no two given figures contradict each other beyond rounding"]
    else:
        lines = [f"CONTRADICTION: {c.message}" for c in r.contradictions]
    return Report([Table("Figures", ["figure", "value", "how"], rows, text=(2,))], lines)

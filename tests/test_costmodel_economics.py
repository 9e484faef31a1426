"""Per-token formulas against hand calculations, written out in each test."""
import math

import pytest

from costmodel.economics import (
    cost_per_mtok,
    economics,
    flops_per_dollar,
    joules_per_token,
    kwh_per_mtok,
    tokens_per_dollar,
    tokens_per_s_per_mw,
)
from costmodel.input_errors import CostInputError


def test_cost_per_mtok_by_hand():
    # $2/h at 1000 tokens/s: 3.6M tokens an hour -> $2 / 3.6 = $0.5556 per M
    assert cost_per_mtok(2.0, 1000) == pytest.approx(2.0 / 3.6)


def test_round_trip_price_tokens_cost():
    price, rate = 1.41, 93.25
    cpm = cost_per_mtok(price, rate)
    # back: tokens/s = price / (cpm * 3600 / 1e6); price = cpm * tokens/s * 3600 / 1e6
    assert price / (cpm * 3600 / 1e6) == pytest.approx(rate, rel=1e-12)
    assert cpm * rate * 3600 / 1e6 == pytest.approx(price, rel=1e-12)
    assert tokens_per_dollar(price, rate) * cpm == pytest.approx(1e6)


def test_article_hopper_row_is_self_consistent_at_93_tokens_per_s():
    # $1.41/h and 54K tokens/s per MW at 1.73 kW: 54000 * 1.73 / 1000 = 93.42 tokens/s -> $4.19/M
    rate = 54_000 * 1.73 / 1000
    assert rate == pytest.approx(93.42)
    assert cost_per_mtok(1.41, rate) == pytest.approx(4.19, abs=0.01)
    assert tokens_per_s_per_mw(rate, 1.73) == pytest.approx(54_000)


def test_article_hopper_906k_contradicts_its_cost():
    # the article's 906,000 tokens/s at $1.41/h would be 1.41 / (906000 * 0.0036) = $0.000432/M, not $4.20
    assert cost_per_mtok(1.41, 906_000) == pytest.approx(0.000432, rel=1e-3)


def test_power_figures_by_hand():
    # 1.73 kW at 93.42 tokens/s: 1730 W / 93.42 = 18.52 J/token; 1.73 kW * 1e6 / (93.42*3600) h = 5.144 kWh/M
    assert joules_per_token(1730, 93.42) == pytest.approx(18.518, rel=1e-4)
    assert kwh_per_mtok(1.73, 93.42) == pytest.approx(5.1440, rel=1e-4)
    # kWh per M tokens is J/token * 1e6 / 3.6e6
    assert kwh_per_mtok(1.73, 93.42) == pytest.approx(joules_per_token(1730, 93.42) / 3.6)


def test_flops_per_dollar_by_hand():
    # H200 bf16 989 TFLOP/s at $1.41/h -> 701.4 TFLOP/s per $/h
    assert flops_per_dollar(989, 1.41) == pytest.approx(701.42, rel=1e-4)


def test_economics_all_outputs():
    e = economics(2.0, 1000, 2.0, utilisation=0.5, spec_tflops=1000, measured_tflops=800)
    assert e.cost_per_mtok == pytest.approx(2.0 / 3.6)
    assert e.effective_cost_per_mtok == pytest.approx(2 * 2.0 / 3.6)  # half the hours serve tokens
    assert e.tokens_per_dollar == pytest.approx(1.8e6)  # 3.6M tokens/h for $2
    assert e.tokens_per_s_per_mw == pytest.approx(500_000)  # 1000 tokens/s per 2 kW
    assert e.joules_per_token == pytest.approx(2.0)  # 2000 W / 1000 tokens/s
    assert e.kwh_per_mtok == pytest.approx(2.0 / 3.6)  # 2 kW for 1e6/3.6e6 h
    assert e.spec_flops_per_dollar == pytest.approx(500)
    assert e.measured_flops_per_dollar == pytest.approx(400)
    assert e.cost_per_mtok_output is None  # no input tokens counted separately


def test_economics_input_tokens_counted_separately():
    # 1000 output + 3000 input tokens/s at $3.6/h: total 4000/s -> $0.25/M total, output only $1/M
    e = economics(3.6, 1000, input_tokens_per_s=3000)
    assert e.total_tokens_per_s == 4000
    assert e.cost_per_mtok == pytest.approx(0.25)
    assert e.cost_per_mtok_output == pytest.approx(1.0)


def test_economics_missing_inputs_leave_none_with_a_note():
    e = economics(None, 500, None)
    assert e.cost_per_mtok is None and e.tokens_per_s_per_mw is None and e.joules_per_token is None
    assert any("no price" in n for n in e.notes) and any("power" in n for n in e.notes)
    assert any("NVML" in n for n in e.notes)  # no board reading: said, not hidden


def test_board_energy_is_separate_from_all_in():
    e = economics(1.0, 100, 1.0, board_joules_per_token=3.6)
    assert e.joules_per_token == pytest.approx(10.0)  # all-in 1000 W / 100 tokens/s
    assert e.board_joules_per_token == 3.6
    assert e.board_kwh_per_mtok == pytest.approx(1.0)  # 3.6 J * 1e6 = 3.6 MJ = 1 kWh


@pytest.mark.parametrize("kwargs", [
    {"price_per_hour": 0, "tokens_per_s": 1},
    {"price_per_hour": -1, "tokens_per_s": 1},
    {"price_per_hour": 1, "tokens_per_s": 0},
    {"price_per_hour": 1, "tokens_per_s": 1, "power_kw": -2},
    {"price_per_hour": float("nan"), "tokens_per_s": 1},
    {"price_per_hour": 1, "tokens_per_s": 1, "utilisation": 0},
    {"price_per_hour": 1, "tokens_per_s": 1, "utilisation": 1.2},
    {"price_per_hour": "1", "tokens_per_s": 1},
    {"price_per_hour": 1, "tokens_per_s": 1, "input_tokens_per_s": -1},
])
def test_bad_inputs_raise_one_line(kwargs):
    with pytest.raises(CostInputError) as e:
        economics(**kwargs)
    assert "\n" not in str(e.value)


def test_foundation_signatures_unchanged():
    assert cost_per_mtok(price_per_hour=1.0, tokens_per_s=1e6 / 3600) == pytest.approx(1.0)
    assert tokens_per_s_per_mw(tokens_per_s=1.0, power_kw=1.0) == 1000.0
    assert math.isclose(joules_per_token(power_w=10, tokens_per_s=5), 2.0)

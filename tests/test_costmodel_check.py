"""`cost check`: derive the missing figures, and catch contradictions beyond rounding."""
import pytest

from costmodel.check import Figure, check
from costmodel.input_errors import CostInputError


def test_article_906k_tokens_per_s_contradicts_its_price_and_cost():
    # 1.41 $/h at 906,000 tokens/s is 1.41 / (906000 * 3600 / 1e6) = $0.000432/M: not the $4.20 printed
    r = check({"price_per_hour": "1.41", "tokens_per_s": "906,000", "cost_per_mtok": "4.20"})
    assert not r.ok
    assert len(r.contradictions) == 1
    msg = r.contradictions[0].message
    assert "$0.000432/M" in msg and "$4.20" in msg and "93.3 tokens/s" in msg
    assert set(r.contradictions[0].figures) == {"price_per_hour", "tokens_per_s", "cost_per_mtok"}


def test_article_full_hopper_row_flags_both_relations():
    r = check({"price_per_hour": "1.41", "tokens_per_s": "906,000", "cost_per_mtok": "4.20",
               "power_kw": "1.73", "tokens_per_s_per_mw": "54K"})
    assert len(r.contradictions) == 2
    # 906,000 * 1000 / 1.73 = 523.7M tokens/s per MW, not 54K
    assert "524M tokens/s per MW" in r.contradictions[1].message


def test_article_hopper_row_without_906k_is_consistent_and_derives_the_rest():
    # price + $/M give 1.41 / (4.20 * 0.0036) = 93.25 tokens/s; 54K/MW at 1.73 kW gives 93.42: within rounding
    r = check({"price_per_hour": "1.41", "cost_per_mtok": "4.20", "power_kw": "1.73",
               "tokens_per_s_per_mw": "54K"})
    assert r.ok
    assert r.derived["tokens_per_s"] == pytest.approx(93.254, abs=1e-3)
    assert r.derived_from["tokens_per_s"] == "price and $/M tokens"
    assert r.derived["joules_per_token"] == pytest.approx(1730 / 93.254, rel=1e-4)


def test_article_blackwell_row_is_consistent():
    # 2.65 / (0.12 * 0.0036) = 6134 tokens/s; 2.8M/MW * 2.10 kW = 5880; $/M 0.12 is +-0.005, so 5.9K..6.4K
    r = check({"price_per_hour": "2.65", "cost_per_mtok": "0.12", "power_kw": "2.10",
               "tokens_per_s_per_mw": "2.8M"})
    assert r.ok


def test_tokens_per_s_from_power_contradicting_price():
    # 2.8M/MW at 1.73 kW is 4844 tokens/s, but $1.41/h at $4.20/M is 93.3: 52x apart
    r = check({"price_per_hour": 1.41, "cost_per_mtok": 4.2, "power_kw": 1.73, "tokens_per_s_per_mw": 2.8e6})
    assert len(r.contradictions) == 1
    assert "4,844 tokens/s" in r.contradictions[0].message


def test_derives_price_and_power_from_the_rest():
    # 1000 tokens/s at $0.50/M: price = 0.5 * 1000 * 0.0036 = $1.80/h; 400K/MW -> 1000 * 1000 / 400000 = 2.5 kW
    r = check({"tokens_per_s": "1000", "cost_per_mtok": "0.50", "tokens_per_s_per_mw": "400K"})
    assert r.ok
    assert r.derived["price_per_hour"] == pytest.approx(1.8)
    assert r.derived["power_kw"] == pytest.approx(2.5)
    assert "tokens_per_s" not in r.derived  # given figures are not repeated as derived


def test_round_trip_through_check():
    # price + tokens/s -> $/M -> given back with the price, the same tokens/s comes out
    first = check({"price_per_hour": "2.00", "tokens_per_s": "1234.5"})
    cpm = first.derived["cost_per_mtok"]
    back = check({"price_per_hour": "2.00", "cost_per_mtok": repr(cpm)})
    assert back.derived["tokens_per_s"] == pytest.approx(1234.5, rel=1e-12)


def test_rounding_intervals():
    assert (Figure.parse("x", "4.20").low, Figure.parse("x", "4.20").high) == pytest.approx((4.195, 4.205))
    assert (Figure.parse("x", "54K").low, Figure.parse("x", "54K").high) == pytest.approx((53_500, 54_500))
    assert Figure.parse("x", "906,000").high == pytest.approx(906_500)
    assert Figure.parse("x", "$1.41").value == 1.41
    assert Figure.parse("x", 2.8e6).high == pytest.approx(2.85e6)  # float zeros claim no precision
    assert Figure.parse("x", "4.3e-4").high == pytest.approx(4.35e-4)


def test_just_outside_rounding_is_flagged_and_slack_absorbs_it():
    # $1/h at 1000 tokens/s is $0.2778/M; "0.27" (0.265..0.275) misses, rtol 2% widens it to meet
    figs = {"price_per_hour": "1.000", "tokens_per_s": "1000.0", "cost_per_mtok": "0.27"}
    assert not check(figs).ok
    assert check(figs, rtol=0.02).ok


@pytest.mark.parametrize("figs, needle", [
    ({}, "at least one figure"),
    ({"price_per_hour": "-1"}, "must be a positive number, got -1"),
    ({"price_per_hour": "0"}, "positive"),
    ({"price_per_hour": "abc"}, "must be a number"),
    ({"watts": "1"}, "unknown figure"),
])
def test_bad_figures(figs, needle):
    with pytest.raises(CostInputError, match=needle):
        check(figs)


def test_integer_trailing_zeros_keep_two_significant_figures():
    assert Figure.parse("x", "1000").high == pytest.approx(1050)
    assert Figure.parse("x", "7").high == pytest.approx(7.5)
    assert Figure.parse("x", "1200").high == pytest.approx(1250)
    assert Figure.parse("x", "1234").high == pytest.approx(1234.5)

"""compare: matched operating points, the ratio column, and the public Hopper vs Blackwell table."""
import pytest

from bench.records.schema import Step
from costmodel.generation_compare import Side, compare, versus
from costmodel.input_errors import CostInputError
from costmodel.inputs import resolve_power, resolve_price


def catalog_side(device, tokens_per_s=None, spec=None):
    return Side(device, resolve_price(device=device, tier="hyperscaler-4y"), resolve_power(device=device),
                spec_tflops=spec, tokens_per_s=tokens_per_s, dtype="bf16")


def test_public_table_from_catalog_figures():
    # H200 at 93.4 tokens/s vs GB300 at 5880: $/M = 1.41/(93.4*.0036) = 4.19 vs 2.652/(5880*.0036) = 0.125
    c = compare(catalog_side("h200", 93.4, 989), catalog_side("gb300", 5880, 2250))
    assert c.econ_a.cost_per_mtok == pytest.approx(4.193, abs=1e-3)
    assert c.econ_b.cost_per_mtok == pytest.approx(0.1253, abs=1e-4)
    # tokens/s per MW: 93.4 * 1000 / 1.73 = 54.0K vs 5880 * 1000 / 2.10 = 2.80M -> 51.9x
    assert c.econ_a.tokens_per_s_per_mw == pytest.approx(53_988, abs=1)
    assert c.econ_b.tokens_per_s_per_mw == pytest.approx(2.8e6)
    rows = {r[0]: r for r in c.rows()}
    assert rows["price per device-hour"][1:] == ["$1.41", "$2.65", "1.88x"]
    assert rows["tokens/s per MW"][3] == "51.9x"
    assert rows["$/M tokens"][3] == "33.5x lower"
    assert rows["spec FLOPS per $ (bf16 TFLOP/s per $/h)"][1:] == ["701", "848", "1.21x"]  # 989/1.41, 2250/2.652
    assert not any(k.startswith("measured FLOPS") for k in rows)  # neither side measured a peak


def test_versus_wording():
    assert versus(1.0, 2.0, True) == "2.00x"
    assert versus(4.2, 0.12, False) == "35.0x lower"
    assert versus(1.0, 2.0, False) == "2.00x"  # a cost that rose is shown as a plain ratio
    assert versus(None, 2.0, True) == "-"


def steps(rate_by_batch, context=128, backend="torch"):
    return [Step(batch=b, context=context, backend=backend, tokens_per_s=r, tokens_per_s_per_user=r / b, fits=True)
            for b, r in rate_by_batch.items()]


def run_side(label, rates, model="m", dtype="bf16"):
    return Side(label, resolve_price(price_per_hour=1.0), None, steps=steps(rates), kind="measured",
                model=model, dtype=dtype)


def test_matched_batch_defaults_to_largest_common():
    a = run_side("a", {1: 10.0, 4: 30.0, 8: 50.0})
    b = run_side("b", {1: 20.0, 4: 70.0})
    c = compare(a, b)
    assert c.point.batch == 4 and "largest common batch" in c.point.how
    assert (a.tokens_per_s, b.tokens_per_s) == (30.0, 70.0)


def test_matched_tokens_per_user_floor():
    # floor 5 tokens/s per user: a's batch 4 gives 7.5 (ok), batch 8 gives 6.25 (ok, more throughput);
    # b's batch 4 gives 17.5 -> each side at its best throughput above the floor
    a = run_side("a", {1: 10.0, 4: 30.0, 8: 50.0})
    b = run_side("b", {1: 20.0, 4: 70.0})
    compare(a, b, tokens_per_s_per_user=7.0)
    assert a.step.batch == 4 and b.step.batch == 4
    compare(a, b, tokens_per_s_per_user=6.0)
    assert a.step.batch == 8


def test_unmatched_runs_are_refused():
    with pytest.raises(CostInputError, match="model"):
        compare(run_side("a", {1: 1.0}, model="x"), run_side("b", {1: 1.0}, model="y"))
    with pytest.raises(CostInputError, match="batch 2"):
        compare(run_side("a", {1: 1.0}), run_side("b", {1: 1.0}), batch=2)
    with pytest.raises(CostInputError, match="no step meets"):
        compare(run_side("a", {1: 1.0}), run_side("b", {1: 1.0}), tokens_per_s_per_user=5.0)

"""The TCO builder against a worked example written out here."""
import json

import pytest

from costmodel.input_errors import CostInputError
from costmodel.tco import build_tco, capital_recovery_factor, load_tco, parse_tco

EXAMPLE = {
    "capex_per_device": 30000, "server_share": 8000, "network_share": 3000, "facility_share": 4000,
    "depreciation_years": 4, "cost_of_capital": 0.10, "power_price_per_kwh": 0.08, "pue": 1.25,
    "it_kw_per_device": 1.4, "hosting_per_kw_month": 0, "operations_per_year": 1000, "utilisation": 0.7,
}


def test_worked_example():
    # capex: 30,000 + 8,000 + 3,000 + 4,000 = 45,000
    # CRF at 10% over 4 years: 0.1 * 1.1^4 / (1.1^4 - 1) = 0.1 * 1.4641 / 0.4641 = 0.315471
    # capital: 45,000 * 0.315471 = 14,196.19 a year / 8760 h = $1.620570/h
    # energy: 1.4 kW * PUE 1.25 = 1.75 kW * $0.08 = $0.140/h
    # operations: $1000 / 8760 h = $0.114155/h; hosting 0
    # price: 1.620570 + 0.140 + 0.114155 = $1.874725 per device-hour; all-in 1.75 kW
    t = build_tco(parse_tco(EXAMPLE))
    assert t.capex == 45000
    assert t.capital_recovery_factor == pytest.approx(0.315471, abs=1e-6)
    assert t.capital_per_hour == pytest.approx(1.620570, abs=1e-6)
    assert t.energy_per_hour == pytest.approx(0.140)
    assert t.operations_per_hour == pytest.approx(0.114155, abs=1e-6)
    assert t.hosting_per_hour == 0
    assert t.price_per_hour == pytest.approx(1.874725, abs=1e-6)
    assert t.all_in_kw == pytest.approx(1.75)
    assert t.utilisation == 0.7


def test_hosting_and_zero_interest():
    # $150/kW-month at 2 kW: 150 * 2 * 12 / 8760 = $0.410959/h; capital 8760 * 3 over 3 years at 0% = $1/h
    t = build_tco(parse_tco({**EXAMPLE, "capex_per_device": 26280, "server_share": 0, "network_share": 0,
                             "facility_share": 0, "depreciation_years": 3, "cost_of_capital": 0,
                             "it_kw_per_device": 2, "pue": 1, "power_price_per_kwh": 0,
                             "hosting_per_kw_month": 150, "operations_per_year": 0}))
    assert capital_recovery_factor(0, 3) == pytest.approx(1 / 3)
    assert t.capital_per_hour == pytest.approx(1.0)
    assert t.hosting_per_hour == pytest.approx(0.410959, abs=1e-6)
    assert t.price_per_hour == pytest.approx(1.410959, abs=1e-6)


def test_shipped_example_file_loads():
    from importlib import resources
    path = resources.files("costmodel").joinpath("data/tco_example.json")
    t = load_tco(str(path))
    assert t.price_per_hour == pytest.approx(1.874725, abs=1e-6)
    assert "example" in t.source


@pytest.mark.parametrize("change, needle", [
    ({"capex_per_device": None}, "'capex_per_device' must be a number"),
    ({"pue": "1.2"}, "'pue' must be a number"),
    ({"pue": 0.9}, "'pue' must be >= 1"),
    ({"depreciation_years": 0}, "'depreciation_years' must be > 0"),
    ({"utilisation": 1.5}, "utilisation must be in (0, 1]"),
    ({"utilisation": 0}, "utilisation must be in (0, 1]"),
    ({"operations_per_year": -5}, "'operations_per_year' must be >= 0"),
    ({"capex_per_devcie": 1}, "unknown field 'capex_per_devcie'"),
    ({"name": 3}, "'name' must be a string"),
])
def test_bad_fields(change, needle):
    with pytest.raises(CostInputError) as e:
        parse_tco({**EXAMPLE, **change})
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_missing_field_and_bad_files(tmp_path):
    data = dict(EXAMPLE)
    del data["pue"]
    p = tmp_path / "tco.json"
    p.write_text(json.dumps(data))
    with pytest.raises(CostInputError, match="missing required field 'pue'"):
        load_tco(p)
    p.write_text("{not json")
    with pytest.raises(CostInputError, match="not valid JSON"):
        load_tco(p)
    with pytest.raises(CostInputError, match="cannot read TCO file"):
        load_tco(tmp_path / "absent.json")
    p.write_text("[1, 2]")
    with pytest.raises(CostInputError, match="expected a JSON object"):
        load_tco(p)

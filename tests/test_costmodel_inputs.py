"""Catalog figures carry their source; user figures override; unknown tier/device is one clear line."""
import subprocess
import sys
from pathlib import Path

import pytest

from costmodel import catalog
from costmodel.input_errors import CostInputError
from costmodel.inputs import resolve_power, resolve_price


def test_catalog_price_carries_source_and_date():
    q = resolve_price(device="h200", tier="hyperscaler-4y")
    assert q.price_per_hour == 1.41
    assert "InferenceX" in q.source and "2026-11" in q.source and "hyperscaler-4y" in q.source
    assert "provisional" in resolve_price(device="gb300", tier="hyperscaler-4y").source


def test_user_price_overrides_catalog():
    q = resolve_price(price_per_hour=2.0, device="h200", tier="rental-3y")
    assert q.price_per_hour == 2.0 and q.source.startswith("user")


def test_tco_price_power_and_utilisation(tmp_path):
    from importlib import resources
    path = str(resources.files("costmodel").joinpath("data/tco_example.json"))
    q = resolve_price(tco_path=path)
    assert q.price_per_hour == pytest.approx(1.874725, abs=1e-6) and q.utilisation == 0.7
    p = resolve_power(quote=q, device="h200")
    assert p.kw == pytest.approx(1.75) and p.kind == "tco"  # the user's TCO outranks the catalog kW
    assert resolve_price(tco_path=path, utilisation=0.5).utilisation == 0.5


def test_power_precedence():
    assert resolve_power(power_kw=3.0, device="h200").kind == "user"
    assert resolve_power(device="h200").kw == 1.73
    assert "InferenceX" in resolve_power(device="h200").source
    assert resolve_power(device="l40s", tdp_w=350).kw == pytest.approx(0.7)  # 350 W x default 2.0
    assert resolve_power(device="h200", tdp_w=700, overhead=2.5).kw == pytest.approx(1.75)
    assert resolve_power() is None


@pytest.mark.parametrize("kwargs, needle", [
    ({"device": "h200", "tier": "spot"}, "unknown price tier 'spot'"),
    ({"tier": "spot"}, "unknown price tier"),
    ({"device": "tpu-v9", "tier": "rental-3y"}, "no catalog price for device 'tpu-v9'"),
    ({"price_per_hour": -3}, "positive"),
    ({"price_per_hour": 1, "utilisation": 2}, "utilisation"),
])
def test_bad_inputs(kwargs, needle):
    with pytest.raises(CostInputError, match=needle):
        resolve_price(**kwargs)


def test_foundation_catalog_signatures():
    assert catalog.catalog_price("h200").price_per_hour == 1.41
    assert catalog.catalog_price("no-such-device") is None
    assert catalog.all_in_kw("b200") == 2.17


def test_costmodel_imports_no_torch():
    code = ("import sys, costmodel, costmodel.economics, costmodel.catalog, costmodel.tco, costmodel.check, "
            "costmodel.generation_compare, costmodel.roofline_projection, costmodel.power, costmodel.inputs, costmodel.ceilings, "
            "costmodel.number_format, costmodel.step, costmodel.workload_economics, costmodel.served_results, costmodel.served_engines, costmodel.served_names, costmodel.served_readings, costmodel.frontier; "
            "bad = [m for m in ('torch', 'bench', 'kernels', 'pynvml') if m in sys.modules]; "
            "assert not bad, bad")
    repo = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=repo)

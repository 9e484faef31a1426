"""Power sources: TDP x overhead, and the board J/token composed from rows (the NVML reading: test_energy.py)."""

import pytest

from costmodel import power
from costmodel.input_errors import CostInputError
from costmodel.power import tdp_power


def test_tdp_times_overhead():
    p = tdp_power(700, 2.5)  # 700 W * 2.5 = 1.75 kW
    assert p.kw == pytest.approx(1.75)
    assert p.kind == "tdp" and "700 W x overhead 2.5" in p.source
    with pytest.raises(CostInputError, match=">= 1"):
        tdp_power(700, 0.5)
    with pytest.raises(CostInputError):
        tdp_power(-1, 2)


def test_step_board_energy_composed_like_the_step():
    # 2 layers x 0.5 J + 0.01 J + 0.2 J = 1.21 J per step, over batch 4 -> 0.3025 J/token
    joules = {"layer": 0.5, "final_norm": 0.01, "lm_head": 0.2}
    assert power.step_board_joules_per_token(joules, 2, 4) == pytest.approx(0.3025)
    assert power.step_board_joules_per_token({**joules, "lm_head": None}, 2, 4) is None  # lm_head unread
    assert power.step_board_joules_per_token({"layer": 0.5, "final_norm": 0.01}, 2, 4) is None  # no lm_head row


def test_cost_from_run_reports_board_energy_beside_all_in(tmp_path, capsys):
    # a recorded CPU run, given board readings as a GPU run would record them: the board J/token appears
    # in its own column, the all-in J/token is untouched
    import json
    from pathlib import Path

    from bench.cli import main

    rec = json.loads((Path(__file__).parent / "data" / "cpu-tiny-fp32.json").read_text())
    for r in rec["rows"]:
        r["board_joules_per_call"] = 0.1
    path = tmp_path / "run.json"
    path.write_text(json.dumps(rec))
    assert main(["cost", "--from", str(path), "--power-kw", "1", "--json"]) == 0
    steps = json.loads(capsys.readouterr().out)["steps"]
    first = rec["steps"][0]
    e = steps[0]["economics"]
    assert e["board_joules_per_token"] == pytest.approx((2 * 0.1 + 0.1 + 0.1) / first["batch"])
    assert e["joules_per_token"] == pytest.approx(1000 / first["tokens_per_s"])

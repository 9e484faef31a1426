"""`tokenbench moe` measures the model's MoE block at uniform and Zipf routing, with its own router (or
--router), and prints and records the active experts and the heaviest expert's tokens per step; bad routing
or router arguments are one line and exit 2."""
import json

import pytest

from bench.cli import main


def only_record(out_dir):
    (path,) = out_dir.glob("*.json")
    return json.loads(path.read_text())


def test_moe_command_routings_and_router(tmp_path, capsys):
    assert main(["moe", "--device", "cpu", "--model", "tiny-moe", "--batch", "16", "--backend", "torch-gather",
                 "--router", "gptoss", "--routing", "uniform,zipf:1.5", "--budget-s", "0.01",
                 "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "router gpt-oss" in err and "experts active, heaviest" in err and "MoE step" in err
    record = only_record(tmp_path)
    assert record["settings"]["router"]["kind"] == "gptoss" and record["settings"]["routings"] == ["uniform", "zipf:1.5"]
    rows = {r["routing"]: r for r in record["rows"] if r["op"] == "moe_block"}
    assert set(rows) == {"uniform", "zipf:1.5"}
    routers = [r for r in record["rows"] if r["op"] == "router"]  # the router alone, torch for torch-gather
    assert [(r["routing"], r["backend"]) for r in routers] == [("uniform", "torch"), ("zipf:1.5", "torch")]
    assert all(r["valid"] and r["seconds_p50"] > 0 and r["shape"]["router"]["kind"] == "gptoss" for r in routers)
    for r in rows.values():
        assert r["valid"] and r["seconds_p50"] > 0 and r["router"] == "gptoss"
        assert len(r["max_tokens_per_expert_per_set"]) == len(r["active_experts_per_set"]) == r["rotation_sets"]
        assert r["shape"]["routing"] == r["routing"] and r["shape"]["max_tokens_per_expert"] >= 4  # 32 picks / 8
        assert r["max_tokens_per_expert"] == pytest.approx(sum(r["max_tokens_per_expert_per_set"]) / r["rotation_sets"])
    # 16 tokens x top-2 over 8 experts: Zipf at s = 1.5 loads its hottest expert well beyond uniform's
    assert rows["zipf:1.5"]["max_tokens_per_expert"] > rows["uniform"]["max_tokens_per_expert"] + 2
    assert rows["uniform"]["expected_active_experts"] == pytest.approx(8 * (1 - 0.75**16))
    assert rows["zipf:1.5"]["expected_active_experts"] is None
    steps = {s["routing"]: s for s in record["steps"]}
    assert steps["zipf:1.5"]["max_tokens_per_expert"] == rows["zipf:1.5"]["max_tokens_per_expert"]


@pytest.mark.parametrize("args,message", [
    (["--routing", "zipf:0"], "--routing: zipf exponent must be in (0, 10]"),
    (["--routing", "uniform,uniform"], "--routing lists uniform twice"),
    (["--routing", "pareto"], "--routing: routing must be uniform, zipf or zipf:S"),
    (["--router", "deepseek_group_sigmoid"], "needs n_group and topk_group"),
    (["--router", "sinkhorn"], "--router"),
])
def test_moe_command_refuses_bad_routing_and_router(tmp_path, capsys, args, message):
    assert main(["moe", "--device", "cpu", "--model", "tiny-moe", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tokenbench: error:") and message in err[0]
    assert not list(tmp_path.glob("*.json"))  # refused before anything is written


def test_moe_command_refuses_routing_with_low_precision_experts(tmp_path, capsys):
    assert main(["moe", "--device", "cpu", "--model", "tiny-moe", "--weights", "mxfp4", "--routing", "zipf",
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--weights mxfp4 times the Mixtral-style MoE op" in err[0]

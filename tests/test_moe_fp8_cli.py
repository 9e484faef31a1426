"""The `moe` and `fp8` commands on the CPU, `models` listing the MoE configs, `run` refusing an MoE model."""
import json

import pytest

from bench.cli import main


def only_record(out_dir):
    (path,) = out_dir.glob("*.json")
    return json.loads(path.read_text())


def test_moe_command_times_activated_work(tmp_path):
    assert main(["moe", "--device", "cpu", "--model", "tiny-moe", "--batch", "1,4", "--backend", "torch",
                 "--routing", "uniform", "--budget-s", "0.01", "--out", str(tmp_path), "--price-per-hour", "2"]) == 0
    record = only_record(tmp_path)
    assert record["kind"] == "moe" and record["complete"]
    assert [(r["op"], r["batch"]) for r in record["rows"]] == [("router", 1), ("moe_block", 1), ("router", 4),
                                                                ("moe_block", 4)]
    for r in record["rows"][1::2]:
        assert r["valid"] and r["seconds_p50"] > 0
        assert 2 <= r["active_experts_measured"] <= 8
        if r["batch"] == 1:
            assert r["expected_active_experts"] == pytest.approx(2) and r["active_experts_measured"] == 2
        assert r["gbps_actual"] == pytest.approx(r["bytes_actual"] / r["seconds_p50"] / 1e9)
        assert len(r["active_experts_per_set"]) == r["rotation_sets"]
    assert record["steps"][1]["expected_active_experts"] == pytest.approx(8 * (1 - 0.75**4))


def test_fp8_command_skips_fp8_rows_with_the_reason_on_cpu(fp8_cpu_run):
    record, _ = fp8_cpu_run  # fp8 --device cpu --model tiny --batch 1 --budget-s 0.01 (tests/conftest.py)
    assert record["kind"] == "fp8" and record["settings"]["fp8_supported"] is False
    bf16 = [r for r in record["rows"] if r["precision"] == "bf16"]
    assert {r["op"] for r in bf16} == {"qkv_proj", "o_proj", "gate_up_proj", "down_proj", "lm_head"}
    assert all(r["valid"] and r["seconds_p50"] > 0 for r in bf16)
    fp8_rows = [r for r in record["rows"] if r["precision"] == "fp8"]
    assert len(fp8_rows) == 5 * 3 * 2 and all("8.9" in r["skipped"] for r in fp8_rows)
    steps = {s["precision"]: s for s in record["steps"]}
    assert steps["bf16"]["valid"] and steps["bf16"]["tokens_per_s"] == pytest.approx(1 / steps["bf16"]["step_seconds"])
    assert not steps["fp8-torch-tensor"]["valid"] and "8.9" in steps["fp8-torch-tensor"]["reason"]
    assert steps["fp8-torch-tensor"]["weight_bytes"] < 0.51 * steps["bf16"]["weight_bytes"]


def test_models_lists_moe_configs(capsys):
    assert main(["models", "--json"]) == 0
    entries = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    for name in ("mixtral-8x7b", "deepseek-v3", "gpt-oss-120b", "qwen3-30b-a3b"):
        assert entries[name]["experts"] > 0 and entries[name]["active_params"] < entries[name]["params"]
    assert main(["models"]) == 0
    assert "mixtral" in capsys.readouterr().out  # the table may wrap long names


def test_run_refuses_moe_model(tmp_path, capsys):
    assert main(["run", "--device", "cpu", "--model", "tiny-moe", "--out", str(tmp_path)]) == 2
    assert "tokenbench moe" in capsys.readouterr().err

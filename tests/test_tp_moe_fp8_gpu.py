"""tp, moe and fp8 on CUDA devices (skipped without CUDA; the 2-rank NCCL test needs two GPUs)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.cli import main

pytestmark = pytest.mark.gpu
ROOT = Path(__file__).resolve().parents[1]


def _tp(tmp_path, ranks: int, *extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "bench", "tp", "--tp", str(ranks), "--model", "tiny", "--device",
                           "cuda", "--batch", "1,4", "--context", "33", "--budget-s", "0.05", "--out", str(tmp_path),
                           "--timeout-s", "240", *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(next(tmp_path.glob("*.json")).read_text())


@pytest.mark.parametrize("graph", [True, False])
def test_tp_one_rank_nccl(tmp_path, graph):
    record = _tp(tmp_path, 1, *([] if graph else ["--no-cuda-graph"]))
    assert record["tp"]["process_group_backend"] == "nccl"
    for step in record["steps"]:
        assert step["valid"] and step["fits"]
    timers = {r["timer"] for r in record["rows"] if r["op"] == "tp_layer"}
    assert timers == {"cuda-graph" if graph else "cuda-events"}


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_tp_two_ranks_nccl(tmp_path):
    record = _tp(tmp_path, 2)
    assert record["tp"]["world_size"] == 2
    for step in record["steps"]:
        assert step["valid"] and 0 < step["all_reduce_share"] < 1 and step["all_reduce_busbw_gbps"] > 0


def test_moe_command_torch_and_triton_on_gpu(tmp_path):
    assert main(["moe", "--model", "tiny-moe", "--device", "cuda", "--batch", "1,8", "--backend",
                 "torch,torch-gather,triton", "--budget-s", "0.05", "--out", str(tmp_path)]) == 0
    record = json.loads(next(tmp_path.glob("*.json")).read_text())
    for row in record["rows"]:
        assert row["valid"] and row["seconds_p50"] > 0, row
    triton_rows = [r for r in record["rows"] if r["backend"] == "triton"]
    assert all(r["timer"] == "cuda-graph" for r in triton_rows)  # routing and sort have no host sync


def test_fp8_command_on_gpu(tmp_path):
    from kernels import fp8

    if not fp8.support("cuda")[0]:
        pytest.skip(fp8.support("cuda")[1])
    assert main(["fp8", "--model", "tiny", "--device", "cuda", "--batch", "1,16", "--budget-s", "0.05",
                 "--out", str(tmp_path)]) == 0
    record = json.loads(next(tmp_path.glob("*.json")).read_text())
    for row in record["rows"]:
        if row.get("skipped"):
            assert "9.0" in row["skipped"]  # only rowwise scaling on a pre-Hopper FP8 device
            continue
        assert row["valid"] and row["seconds_p50"] > 0, row
    assert any(s["precision"] == "fp8-torch-tensor" and s["valid"] for s in record["steps"])

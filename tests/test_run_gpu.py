"""The harness on a CUDA device: graph-replay timing, events, L2 flush, NVML energy (skipped without CUDA)."""
import json

import pytest

from bench.cli import main

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("graph", [True, False])
def test_tiny_run_on_gpu(tmp_path, graph):
    argv = ["run", "--model", "tiny", "--device", "cuda", "--batch", "1,4", "--context", "33", "--dtype", "bf16",
            "--budget-s", "0.05", "--full-model", "--out", str(tmp_path)]
    if not graph:
        argv.append("--no-cuda-graph")
    assert main(argv) == 0
    record = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert record["device"]["kind"] == "cuda" and record["ceilings"]["measured_gbps"] > 10
    for row in record["rows"]:
        assert row["valid"], row
        assert row["timer"].startswith("cuda-graph" if graph else "cuda-events")
        assert row["seconds_p50"] > 0
    for step in record["steps"]:
        assert step["valid"] and step["measured_step_seconds"] > 0


def test_llama_layer_bf16_on_gpu(tmp_path):
    assert main(["run", "--model", "llama-3.1-8b", "--device", "cuda", "--batch", "1", "--context", "512",
                 "--budget-s", "0.2", "--layer-only", "--out", str(tmp_path)]) == 0
    record = json.loads(next(tmp_path.glob("*.json")).read_text())
    layer = next(r for r in record["rows"] if r["op"] == "layer")
    assert layer["valid"] and layer["rel_error"] < 1e-2
    # a bandwidth-bound layer cannot beat the copy bandwidth measured in the same run by much
    assert layer["pct_copy_bw"] < 1.3

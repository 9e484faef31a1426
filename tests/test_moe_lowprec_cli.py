"""`tokenbench moe --weights fp8-block|mxfp4` on the CPU: MXFP4 experts timed (dequantize-then-matmul), FP8
block experts verified but not timed (no FP8 hardware), stored bytes in rows and steps, one-line refusals."""
import json

import pytest

from bench.cli import main
from kernels import moe_lowprec


def only_record(out_dir):
    (path,) = out_dir.glob("*.json")
    return json.loads(path.read_text())


def run(tmp_path, *extra):
    return main(["moe", "--device", "cpu", "--model", "tiny-moe", "--batch", "1,4", "--budget-s", "0.01",
                 "--out", str(tmp_path), *extra])


def test_mxfp4_experts_are_timed_with_their_stored_bytes(tmp_path, capsys):
    assert run(tmp_path, "--weights", "mxfp4") == 0
    record = only_record(tmp_path)
    settings = record["settings"]
    assert settings["expert_weights"] == "mxfp4" and settings["backends"] == ["torch-dequant"]
    for r in record["rows"]:
        assert r["valid"] and r["seconds_p50"] > 0 and r["expert_weights"] == "mxfp4"
        shape = r["shape"]
        assert shape["expert_weights"] == "mxfp4"
        from kernels.moe import MoeShape

        s = MoeShape(**{k: shape[k] for k in ("tokens", "hidden", "ffn", "experts", "top_k", "shared")})
        assert r["bytes"] == moe_lowprec.min_bytes(s, "mxfp4", 4)
        assert r["bytes_actual"] == moe_lowprec.min_bytes(s, "mxfp4", 4, active=r["active_experts_measured"])
    assert "experts in mxfp4" in capsys.readouterr().err
    step = record["steps"][0]
    assert step["valid"] and step["expert_weights"] == "mxfp4"
    plain = tmp_path / "plain"
    assert run(plain, "--backend", "torch") == 0
    base = only_record(plain)["steps"][0]
    # tiny-moe (bench/data/models/tiny-moe.json, a Mixtral config): 2 MoE layers x 8 experts x 3 x 64 x 48 fp32
    # weights (4 B) against 0.5 B an element and a scale per 32 (per 16 at the end of 48)
    stored = 64 * 96 // 2 + 96 * 2 + 64 * 48 // 2 + 64 * 2
    assert base["bytes_needed"] - step["bytes_needed"] == 2 * 8 * (3 * 64 * 48 * 4 - stored)


def test_fp8_block_experts_are_verified_not_timed_on_a_cpu(tmp_path, capsys):
    assert run(tmp_path, "--weights", "fp8-block") == 0
    record = only_record(tmp_path)
    assert record["settings"]["backends"] == ["torch-dequant"]
    for r in record["rows"]:
        assert not r["valid"] and r["skipped"].startswith("verified, not timed") and "8.9" in r["skipped"]
        assert r["rel_error"] < r["tolerance"] == moe_lowprec.FP8_BLOCK_TOLERANCE
    assert all(not s["valid"] and "8.9" in s["reason"] for s in record["steps"])
    err = capsys.readouterr().err
    assert "verified, not timed" in err and "rel err" in err


@pytest.mark.parametrize("extra,message", [
    (["--weights", "mxfp4", "--backend", "torch"], "no weight-only MXFP4 GEMM"),
    (["--weights", "fp8-block", "--backend", "torch"], "no FP8 hardware"),
    (["--weights", "int4"], "unknown weights 'int4'"),
    (["--weights", "mxfp4", "--backend", "torch-gather"], "unknown backend 'torch-gather'"),
])
def test_refusals_are_one_line(tmp_path, capsys, extra, message):
    assert run(tmp_path, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("tokenbench: error:")

"""Bad input: one line naming the problem, exit code 2, no traceback."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*argv):
    return subprocess.run([sys.executable, "-m", "bench", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.mark.parametrize("argv,expect", [
    (["run", "--model", "gpt-9"], "unknown model 'gpt-9'; choose one of: llama-3.1-8b"),
    (["run", "--device", "tpu"], "unknown device 'tpu'; choose one of: auto, cuda, cpu"),
    (["run", "--model", "tiny", "--dtype", "int3"], "unknown dtype 'int3'; choose one of: fp32, bf16, fp16"),
    (["run", "--model", "tiny", "--batch", "0"], "--batch must be positive"),
    (["run", "--model", "tiny", "--batch", "two"], "--batch must be positive integers"),
    (["run", "--model", "tiny", "--context", "-5"], "--context must be positive"),
    (["run", "--model", "tiny", "--price-per-hour", "-1"], "--price-per-hour must be a positive number"),
    (["run", "--model", "tiny", "--power-kw", "abc"], "--power-kw must be a number"),
    (["run", "--model", "tiny", "--backend", "cuda-magic"], "unknown backend 'cuda-magic'"),
    (["run", "--model", "tiny", "--backend", "triton"], "cannot be timed on a CPU"),
    (["run", "--bogus-flag"], "unrecognized arguments"),
])
def test_bad_input_is_one_line_exit_2(argv, expect):
    p = run_cli(*argv, "--device", "cpu") if "--device" not in argv and argv[0] == "run" else run_cli(*argv)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("tokenbench: error:")
    assert expect in lines[0]
    assert "Traceback" not in p.stderr


def test_unreadable_results_file_names_the_file(tmp_path, capsys):
    bad = tmp_path / "broken.json"
    bad.write_text('{"schema_version": 1, "rows": [')
    assert main(["show", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "not valid JSON" in err
    assert main(["show", str(tmp_path / "missing.json")]) == 2
    assert "not found" in capsys.readouterr().err
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": 1}))
    assert main(["show", str(other)]) == 2
    assert "not a tokenbench run" in capsys.readouterr().err


def test_devices_and_models_list(capsys):
    assert main(["models", "--json"]) == 0
    models = json.loads(capsys.readouterr().out)
    llama = next(m for m in models if m["name"] == "llama-3.1-8b")
    for key in ("name", "layers", "hidden", "heads", "kv_heads", "head_dim", "ffn", "vocab", "params",
                "weight_bytes", "kv_bytes_per_token"):
        assert key in llama
    assert llama["kv_bytes_per_token"] == 131072
    assert main(["devices", "--json", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["detected"]["kind"] == "cpu"
    assert {e["key"] for e in out["catalog"]} >= {"h100-sxm", "h200", "b200", "mi355x"}
    assert not any(e["detected"] for e in out["catalog"])

"""Bad input: one line naming the problem, exit code 2, no traceback. The paths run in-process (main()
returns the exit code and prints to stderr as the installed script does); two subprocess tests keep the
real process honest: its exit status and stderr, and that the light commands start without torch."""
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
def test_bad_input_is_one_line_exit_2(argv, expect, capsys):
    if "--device" not in argv and argv[0] == "run":
        argv = [*argv, "--device", "cpu"]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors leave through _Parser.error -> exit(2)
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tokenbench: error:")
    assert expect in lines[0]


def test_a_real_process_exits_2_with_one_line_and_no_traceback():
    p = run_cli("run", "--device", "cpu", "--model", "gpt-9")
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines() == [
        p.stderr.strip()] and p.stderr.startswith("tokenbench: error: unknown model 'gpt-9'")
    assert "Traceback" not in p.stderr


LIGHT_COMMANDS = [["--help"], ["cost", "--help"], ["models", "--json"], ["devices", "--json", "--device", "none"],
                  ["cost", "--price-per-hour", "2", "--tokens-per-s", "1000"],
                  ["compare", str(ROOT / "tests/data/cpu-llama-3.2-1b-fp32-a.json"),
                   str(ROOT / "tests/data/cpu-llama-3.2-1b-fp32-b.json")]]


def test_light_commands_start_without_torch():
    """One interpreter runs each light command through main() and reports whether torch got loaded: the
    CLI must import only the chosen command's module, and these modules must not need torch."""
    script = ("import contextlib, io, json, sys\nfrom bench.cli import main\nout = []\n"
              f"for argv in {LIGHT_COMMANDS!r}:\n"
              "    with contextlib.redirect_stdout(io.StringIO()):\n"
              "        try:\n            code = main(argv)\n"
              "        except SystemExit as exc:\n            code = exc.code\n"
              "    out.append([argv, code, 'torch' in sys.modules])\n"
              "print(json.dumps(out))\n")
    p = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       check=False)
    assert p.returncode == 0, p.stderr
    for argv, code, torch_loaded in json.loads(p.stdout.strip().splitlines()[-1]):
        assert code == 0, (argv, p.stderr)
        assert not torch_loaded, f"`tokenbench {' '.join(argv)}` imported torch"


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
    assert main(["devices", "--json", "--device", "none"]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert alone["detected"] is None and alone["catalog"] == out["catalog"]

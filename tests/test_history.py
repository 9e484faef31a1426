"""The pytest-benchmark suites run for real (twice, into a temporary storage) and `tokenbench history`
reads what they stored; bad files are one clear error."""
import contextlib
import io
import json
import os
import traceback
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.configs import device_catalog
from bench.cli import main

ROOT = Path(__file__).resolve().parents[1]
# Two small benchmarks of the CPU set: one op and the whole decode step (plus their skipped triton twins).
SELECT = "b1 and (qkv_proj or decode_step)"


def run_suite(*extra, storage):
    """`pytest benchmarks ...` from the repository root as CI runs it, as a pytest session of its own in
    this process (pytest.main: its own config, plugins, benchmarks/conftest.py and pytest-benchmark session),
    which spares an interpreter importing torch per run; (returncode, stdout, stderr) as a process gives."""
    out, err = io.StringIO(), io.StringIO()
    argv = ["benchmarks", "-q", "-s", "-p", "no:cacheprovider", "-k", SELECT,
            f"--benchmark-storage=file://{storage}", "--tokenbench-rounds", "3", *extra]
    current = os.environ.get("PYTEST_CURRENT_TEST")  # the inner session sets and removes it
    with contextlib.chdir(ROOT), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = int(pytest.main(argv))
        except Exception:  # pytest-benchmark raises PerformanceRegression out of the session: a process
            traceback.print_exc()  # would print the traceback and exit 1
            code = 1
        finally:
            if current is not None:
                os.environ["PYTEST_CURRENT_TEST"] = current
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    storage = tmp_path_factory.mktemp("benchmarks")
    first = run_suite("--benchmark-save=first", storage=storage)
    assert first.returncode == 0, first.stdout + first.stderr
    # the second run compares against the first as CI does (a loose threshold: this CPU is shared and noisy)
    second = run_suite("--benchmark-save=second", "--tokenbench-baseline", "--benchmark-compare-fail=median:100000%",
                       storage=storage)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "comparing against the stored baseline" in second.stderr
    files = sorted(storage.rglob("*.json"))
    assert [f.name.split("_", 1)[1] for f in files] == ["first.json", "second.json"]
    return storage, files


def test_stored_files_carry_machine_info_and_derived_figures(stored):
    _, files = stored
    data = json.loads(files[0].read_text())
    section = data["machine_info"]["tokenbench"]
    assert section["schema"] == 1 and data["tokenbench_schema"] == 1
    assert section["device"]["name"] == device_catalog.detect("cpu").name and section["device"]["kind"] == "cpu"
    assert section["versions"]["torch"]
    benches = {b["extra_info"]["op"]: b for b in data["benchmarks"]}
    assert set(benches) == {"qkv_proj", "decode_step"}
    for b in benches.values():
        info = b["extra_info"]
        assert b["stats"]["rounds"] == 3
        assert info["median_s"] == b["stats"]["median"]  # figures derive from what pytest-benchmark timed
        assert info["gbps"] == pytest.approx(info["bytes"] / b["stats"]["median"] / 1e9)
        assert info["timer"] == "cpu-perf-counter" and info["backend"] == "torch"
    step = benches["decode_step"]["extra_info"]
    assert step["tokens_per_s"] == pytest.approx(step["batch"] / benches["decode_step"]["stats"]["median"])
    assert benches["qkv_proj"]["extra_info"]["rel_error"] < 1e-4  # the gate ran before timing


def test_history_prints_the_op_across_both_runs(stored, capsys):
    storage, files = stored
    assert main(["history", "qkv_proj", str(storage), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2 and {r["file"] for r in rows} == {str(f) for f in files}
    assert all(r["op"] == "qkv_proj" and r["device"] == device_catalog.detect("cpu").name for r in rows)
    assert rows[0]["datetime"] <= rows[1]["datetime"]
    assert main(["history", "decode_step", *map(str, files)]) == 0
    out = capsys.readouterr().out
    assert "decode_step: 2 result(s) from 2 file(s), 1 device(s)" in out and "tok/s" in out


def test_history_fits_an_80_column_terminal_without_cutting_a_cell(stored, capsys, monkeypatch):
    storage, _ = stored
    assert main(["history", "decode_step", str(storage), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["history", "decode_step", str(storage)]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80
    for r in rows:  # every key and figure printed whole
        for cell in (r["datetime"][:16].replace("T", " "), r["commit"], f"{r['median_s'] * 1e6:,.1f}"):
            assert cell in out, cell


def test_history_unknown_op_lists_the_recorded_ones(stored, capsys):
    storage, _ = stored
    assert main(["history", "flash_attention", str(storage)]) == 2
    err = capsys.readouterr().err
    assert "no benchmark of op 'flash_attention'" in err and "decode_step, qkv_proj" in err


@pytest.mark.parametrize("content,expect", [
    ({"hello": 1}, "is not a pytest-benchmark file (missing machine_info, benchmarks, datetime, version)"),
    ({"machine_info": {}, "benchmarks": [], "datetime": "2026-01-01", "version": "9.0.1"},
     "unknown schema: written by pytest-benchmark '9.0.1'"),
    ({"machine_info": {}, "benchmarks": [{"name": "x"}], "datetime": "2026-01-01", "version": "5.3.0"},
     "unknown schema: benchmark 0 has no name or no stats.median"),
    ({"machine_info": {}, "benchmarks": [], "datetime": "2026-01-01", "version": "5.3.0", "tokenbench_schema": 7},
     "tokenbench schema 7"),
    ([1, 2], "is not a pytest-benchmark file (a JSON list"),
])
def test_unknown_benchmark_file_is_one_clear_error(tmp_path, content, expect, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(content))
    assert main(["history", "qkv_proj", str(bad)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tokenbench: error:") and expect in lines[0], err
    assert str(bad) in lines[0]


def test_history_without_files_says_how_to_make_them(tmp_path, capsys):
    assert main(["history", "qkv_proj", str(tmp_path)]) == 2
    assert "--benchmark-autosave" in capsys.readouterr().err


def test_a_regression_against_the_baseline_fails_the_run(stored, tmp_path):
    """How CI fails: a baseline 1000x faster than this machine (made by scaling a real file's stats)."""
    _storage, files = stored
    data = json.loads(files[0].read_text())
    for bench in data["benchmarks"]:
        for key in ("min", "max", "mean", "median", "q1", "q3"):
            bench["stats"][key] *= 1e-3
    data["datetime"] = "2999-01-01T00:00:00+00:00"  # the newest: --tokenbench-baseline picks it
    fast = tmp_path / files[0].parent.name / "0001_fast.json"
    fast.parent.mkdir()
    fast.write_text(json.dumps(data))
    p = run_suite("--tokenbench-baseline", "--benchmark-compare-fail=median:10%", storage=tmp_path)
    assert p.returncode != 0
    assert "0001_fast.json" in p.stderr and "Performance has regressed" in p.stdout + p.stderr

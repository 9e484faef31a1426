"""What a new user meets: numbers read one way everywhere, no silent misreading, no traceback, tables that
never cut a number at 80 columns, progress in a pipe, empty runs that fail, timings stuck on a quantum."""
import io
import json
import re
from pathlib import Path

import pytest

from bench.cli import main
from bench.parsing import positive_float, positive_int_list
from bench.measure.reliability import flag_unreliable
from bench.records.schema import MeasuredRow
from bench.measure.timing import distinct_levels
from costmodel.input_errors import CostInputError
from costmodel.numbers import parse_number

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "results" / "examples" / "20261129-131228-amd-epyc-llama-3.2-1b-fp32.json"


@pytest.mark.parametrize("text,value", [("1,832", 1832), ("906,000", 906000), ("12,345,678.5", 12345678.5),
                                        ("54K", 54e3), ("2.8M", 2.8e6), ("$1.41", 1.41), ("4.3e-4", 4.3e-4),
                                        (".5", 0.5), (93.4, 93.4)])
def test_one_number_reader(text, value):
    assert parse_number("x", text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["1,8", "1,8,32", "1234,567", "1e400", "1,,8", "", "fast", "1.2.3"])
def test_numbers_that_are_not_one_number_are_refused(text):
    with pytest.raises(CostInputError):
        parse_number("x", text)


def test_run_and_cost_read_numbers_alike():
    assert positive_float("54K", "--price-per-hour") == 54e3
    assert positive_float("906,000", "--power-kw") == 906e3


@pytest.mark.parametrize("text", ["", "1,,8", "1,1", "8,4,8"])
def test_lists_with_gaps_or_repeats_are_refused(text):
    from bench.errors import UserError

    with pytest.raises(UserError):
        positive_int_list(text, "--batch")


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tokenbench: error:"), err
    return err[0]


@pytest.mark.parametrize("argv,expect", [
    (["run", "--tp", "0"], "--tp must be a positive integer, got 0"),
    (["run", "--tp", "-2"], "--tp must be a positive integer, got -2"),
    (["run", "--batch", ""], "--batch is empty"),
    (["run", "--model", ""], "--model is empty"),
    (["run", "--out", ""], "--out is empty"),
    (["run", "--model", "tiny", "--batch", "1,1"], "--batch lists 1 twice"),
    (["run", "--model", "tiny", "--backend", "torch,torch"], "--backend lists 'torch' twice"),
    (["run", "--model", "tiny", "--context", "1000000000000"], "nothing to measure"),
    (["cost", "--tokens-per-s", "1,8", "--price-per-hour", "2"], "commas group thousands in threes"),
    (["cost", "--tokens-per-s", "1e400", "--price-per-hour", "2"], "must be a finite number"),
    (["cost", "--tokens-per-s", "5", "--tier", "hyperscaler-4y"], "--tier needs --device"),
    (["cost", "--tokens-per-s", "5", "--overhead", "1.5"], "--overhead needs --device"),
    (["cost", "--tokens-per-s", "5", "--price-per-hour", "2", "--dtype", "int1"], "unknown --dtype 'int1'"),
    (["cost", "--from", str(RUN), "--tokens-per-s", "5"], "--tokens-per-s does nothing with --from"),
    (["tp", "--model", "tiny", "--device", "cpu", "--timeout-s", "0"], "--timeout-s must be a positive number"),
])
def test_misreadings_are_one_line_errors(argv, expect, capsys):
    if argv[0] == "run":
        argv = argv + ["--device", "cpu"]
    assert main(argv) == 2
    assert expect in one_error_line(capsys)


def test_binary_tco_file_is_one_line(tmp_path, capsys):
    tco = tmp_path / "tco.bin"
    tco.write_bytes(bytes(range(256)) * 4)
    assert main(["cost", "--tco", str(tco), "--tokens-per-s", "5"]) == 2
    assert "is not text" in one_error_line(capsys)


def test_tp_on_cuda_without_cuda_is_one_line(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["tp", "--model", "tiny", "--device", "cuda"]) == 2
    assert "no CUDA device" in one_error_line(capsys)


@pytest.mark.parametrize("width", [60, 80, 100, 120])
@pytest.mark.parametrize("name", [RUN.name, "20261129-131315-amd-epyc-llama-3.2-1b-fp32.json"])
def test_tables_at_any_width_keep_every_number_header_and_key(width, name):
    from rich.console import Console

    from bench.records.store import load
    from bench.report.run_tables import print_summary

    record = json.loads((ROOT / "results" / "examples" / name).read_text())
    buf = io.StringIO()
    print_summary(load(ROOT / "results" / "examples" / name), Console(file=buf, width=width))
    text = buf.getvalue()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= width
    cells = {c.strip() for line in text.splitlines() for c in re.split(r"[│┃]", line)}
    for r in record["rows"]:
        assert f"{r['seconds_p50'] * 1e6:,.1f}" in cells and r["op"] in cells
    for s in record["steps"]:
        assert f"{s['step_seconds'] * 1e3:,.2f}" in cells and f"{s['tokens_per_s']:,.1f}" in cells
        if s.get("measured_step_seconds"):
            assert f"{s['measured_step_seconds'] * 1e3:,.2f}" in cells
    for header in ("p50 us", "% spec roof", "tok/s/user", "$/M tok", "tok/s/MW"):
        assert header in cells


def test_devices_at_80_columns_keep_every_key(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["devices", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    from bench.configs.device_catalog import catalog

    assert "…" not in text
    for key in catalog():
        assert re.search(rf"│ {re.escape(key)}\s+│", text), key


def test_progress_lines_in_a_pipe(quick_runs):
    out, _, err = quick_runs  # a tiny --layer-only run at batch 1, context 9, its stderr a pipe (tests/conftest.py)
    lines = [line for line in err.splitlines() if re.match(r"\[\d+/\d+\] b=1 ctx=9 torch ", line)]
    assert len(lines) == 3 and all("p50" in line for line in lines)  # final_norm, lm_head, layer
    assert f"{out}" in err.split("wrote ")[-1].split(" and ")[-1]  # the CSV's folder is named too


def test_a_run_that_measured_nothing_exits_non_zero(tmp_path, monkeypatch, capsys):
    from bench.sweeps import decode_sweep
    def refused(case, backend, device, plan, batch, context):
        return MeasuredRow.build(op=case.name, kind=case.kind, batch=batch, context=context, backend=backend,
                                 valid=False, check="forced failure for the test")

    monkeypatch.setattr(decode_sweep, "measure", refused)  # the decode sweep (bench.sweeps.decode_sweep.DecodeSweep) calls it
    assert main(["run", "--model", "tiny", "--device", "cpu", "--batch", "1", "--context", "8", "--layer-only",
                 "--budget-s", "0.02", "--out", str(tmp_path)]) == 1
    assert "nothing was measured" in capsys.readouterr().err


def test_distinct_levels_of_quantum_stuck_samples():
    assert distinct_levels([0.016, 0.016, 0.016, 0.008, 0.016, 0.016]) == 2
    assert distinct_levels([1e-4 * (1 + 0.05 * i) for i in range(20)]) == 20


def row(op, batch, p50, levels, bound=None, bytes_=1_000_000):
    return MeasuredRow.build(op=op, batch=batch, context=512, backend="torch", valid=True, seconds_p50=p50,
                             samples=20, levels=levels, roofline_seconds_measured=bound, bytes=bytes_, flops=0)


def test_quantum_stuck_rows_are_flagged_from_recorded_samples():
    # swiglu at batch 8: 15,992 us at noise 0.1% where batch 1 took 209 us (a recorded case, 2-core VM)
    rows = [row("swiglu", 1, 209e-6, 40, bound=5e-6), row("swiglu", 8, 15_992e-6, 2, bound=40e-6, bytes_=8_000_000),
            row("gate_up_proj", 1, 3.5e-3, 30, bound=2.5e-3), row("gate_up_proj", 8, 15.1e-3, 25, bound=2.6e-3)]
    flagged = flag_unreliable(rows)
    assert [(r.op, r.batch) for r in flagged] == [("swiglu", 8)]
    assert "discrete value" in flagged[0].unreliable
    # without the level count, the neighbouring batch still gives it away
    rows = [row("swiglu", 1, 209e-6, None), row("swiglu", 8, 15_992e-6, None, bytes_=8_000_000)]
    assert "slower than batch 1" in flag_unreliable(rows)[0].unreliable


@pytest.mark.parametrize("command", [["show"], ["report", "--out", "REP"], ["project", "--to", "h200", "--from"],
                                     ["cost", "--from"]])
def test_mistyped_field_is_one_line_naming_file_and_field(command, tmp_path, capsys):
    record = json.loads(RUN.read_text())
    record["rows"][0]["seconds_p50"] = "fast"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(record))
    argv = [a.replace("REP", str(tmp_path / "rep")) for a in command] + [str(bad)]
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert str(bad) in line and "rows[0]: seconds_p50 must be a number, got 'fast'" in line


def test_show_prints_a_peak_record(capsys):
    peak = ROOT / "results" / "examples" / "20261129-131215-amd-epyc-peak.json"
    assert main(["show", str(peak)]) == 0
    out = capsys.readouterr().out
    assert "Measured ceilings" in out and "copy" in out


@pytest.mark.parametrize("command", ["fp8", "tp"])
def test_dense_commands_refuse_moe_models(command, capsys):
    assert main([command, "--model", "mixtral-8x7b", "--device", "cpu"]) == 2
    # one message for every dense command (bench.configs.model_configs.refuse_moe), naming the command that refused
    line = one_error_line(capsys)
    assert f"mixtral-8x7b is a mixture of experts: `tokenbench {command}`" in line
    assert line.endswith("time its MoE MLP with `tokenbench moe`")


def test_fp8_on_a_cpu_says_its_skip_reason_once(fp8_cpu_run):
    record, err = fp8_cpu_run  # tiny, batch 1: 30 FP8 rows skipped (tests/conftest.py)
    assert sum("8.9" in r.get("skipped", "") for r in record["rows"]) == 30
    assert 1 <= err.count("compute capability >= 8.9") <= 2  # the header and one row line


@pytest.mark.parametrize("argv,expect", [
    (["report", str(RUN), str(RUN)], "is given twice"),
    (["report", str(RUN), "--project-as", "bf16"], "--project-as does nothing without --project-to"),
])
def test_report_misreadings(argv, expect, capsys):
    assert main(argv) == 2
    assert expect in one_error_line(capsys)


def test_cost_labels_say_when_figures_count_input_and_output(capsys):
    assert main(["cost", "--price-per-hour", "2", "--power-kw", "1.7", "--tokens-per-s", "1000",
                 "--input-tokens-per-s", "3000"]) == 0
    out = capsys.readouterr().out
    assert "$/M tokens (input + output tokens)" in out and "tokens/s per MW (input + output tokens)" in out
    assert "$/M output tokens" in out


def test_csv_holds_rows_then_steps(quick_runs):
    import pandas as pd

    _, (path, _), _ = quick_runs  # a tiny --layer-only run (tests/conftest.py)
    table = pd.read_csv(path.with_suffix(".csv"))
    assert list(table["part"].unique()) == ["row", "step"]
    assert table[table["part"] == "step"]["tokens_per_s"].notna().all()


def test_console_width_honours_columns_off_a_terminal(monkeypatch):
    from bench.report.terminal_tables import console_width

    class Pipe:
        def isatty(self):
            return False

    monkeypatch.setenv("COLUMNS", "80")
    assert console_width(Pipe()) == 80
    monkeypatch.delenv("COLUMNS")
    assert console_width(Pipe()) == 150


def test_ctrl_c_anywhere_is_one_line_and_exit_130(monkeypatch, capsys):
    from bench.commands import devices

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(devices, "main", interrupted)
    assert main(["devices"]) == 130
    assert capsys.readouterr().err == "tokenbench: interrupted\n"

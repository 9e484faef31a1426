"""One number reader and one duplicate-flag rule for every command (bench/flag_rules.py), sane bounds, and
no empty values: each mistake is one line and exit 2."""
import contextlib
import io
from pathlib import Path

import pytest

from bench.cli import main

RUN = str(Path(__file__).resolve().parent / "data" / "cpu-tiny-fp32.json")


def _cli(argv):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own errors exit through _Parser.error
            code = exc.code
    return code, err.getvalue(), out.getvalue()


@pytest.mark.parametrize("argv,message", [
    (["run", "--batch", "1", "--batch", "2"], "--batch is given 2 times; give it once"),
    (["cost", "--tokens-per-s", "5", "--tokens-per-s=6", "--price-per-hour", "1"], "--tokens-per-s is given 2 times"),
    (["compare", "h200", "b200", "--tier", "rental-3y", "--tier", "neocloud-4y"], "--tier is given 2 times"),
    (["cost", "--tokens-per-s", "5", "check", "--price-per-hour", "1"],
     "--tokens-per-s given before `check` would belong to the command"),
    (["cost", "--device", "h200", "--tier", "hyperscaler-4y", "--price-per-hour", "2", "--tokens-per-s", "5"],
     "--tier picks the catalog's price and --price-per-hour gives one"),
    (["project", "--to", "b200", "--from", RUN, "--tier", "rental-3y", "--price-per-hour", "2"],
     "--tier picks the catalog's price"),
    (["cost", "--price-per-hour", "1e308", "--tokens-per-s", "5"], "--price-per-hour 1e308 is above $10,000"),
    (["cost", "check", "--price-per-hour", "20000", "--tokens-per-s", "5"], "--price-per-hour 20000 is above"),
    (["compare", "h200", "b200", "--price-per-hour", "2", "54K"], "--price-per-hour 54,000 is above $10,000"),
    (["peak", "--out", ""], "--out is empty"),
    (["run", "--out", " "], "--out is empty"),
    (["report", RUN, "--out", ""], "--out is empty"),
    (["compare", "--dtype", "fp64", "h200", "b200"], "unknown --dtype 'fp64'"),
    (["compare", "--tokens-per-s-per-user", "-1", "h200", "b200"], "--tokens-per-s-per-user must be a positive number, got -1"),
    (["compare", RUN, "h200", "--batch", "0"], "--batch must be a positive integer, got 0"),
    (["cost", "--from", RUN, "--device", "b200"], "was measured on AMD EPYC (cpu), not a b200"),
])
def test_each_mistake_is_one_line_and_exit_2(argv, message):
    code, err, _ = _cli(argv)
    assert code == 2, err
    assert err.startswith("tokenbench: error: ") and err.count("\n") == 1 and message in err, err


def test_thousands_and_suffixes_read_alike_in_every_command():
    """54K and 5,880 are read by compare and project as by run and cost (one number reader)."""
    code, err, out = _cli(["compare", "h200", "gb300", "--tokens-per-s", "93.4", "5,880"])
    assert code == 0, err
    code, err, _ = _cli(["compare", "h200", "gb300", "--tokens-per-s", "93.4", "5.88K"])
    assert code == 0, err
    code, err, out = _cli(["project", "--to", "b200", "--from", RUN, "--price-per-hour", "1,000"])
    assert code == 0, err


def test_a_repeatable_flag_stays_repeatable():
    from bench.cli import build_parser
    from bench.flag_rules import check_command_line

    parser = build_parser(["report"])
    sub = next(a for a in parser._actions if a.dest == "command").choices["report"]
    check_command_line(sub, ["r.json", "--compare", "a", "b", "--compare", "c", "d"])  # no error


def test_cost_from_says_which_steps_it_did_not_cost(tmp_path):
    import json

    data = json.loads(Path(RUN).read_text())
    data["steps"][0].update(valid=False, reason="a check failed", tokens_per_s=None, step_seconds=None)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data))
    code, err, out = _cli(["cost", "--from", str(path), "--price-per-hour", "1"])
    assert code == 0, err
    s = data["steps"][0]
    assert f"not costed: b={s['batch']} ctx={s['context']} {s['backend']}: a check failed" in out

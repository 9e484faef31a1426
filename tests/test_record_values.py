"""Hand-edited or corrupt values in a results file (not only wrong types) are one line naming the file, the
row and the field, from the store's one reader, so every command that opens a file refuses them alike."""
import contextlib
import io
import json
from pathlib import Path

import pytest

from bench.cli import main
from bench.errors import UserError
from bench.records import store

DATA = Path(__file__).resolve().parent / "data"
RUN = DATA / "cpu-tiny-fp32.json"
WORKLOAD = DATA / "workload-cpu-llama-3.2-1b-bf16.json"


def _edited(tmp_path, source, edit):
    data = json.loads(source.read_text())
    edit(data)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))  # json.dumps writes NaN and Infinity, as a hand edit could
    return path


def _set(part, index, field, value):
    def edit(data):
        data[part][index][field] = value
    return edit


def _step(field, value, phase_index=0):
    return _set("steps", phase_index, field, value)


def _model(field, value):
    def edit(data):
        data["model"][field] = value
    return edit


def _header(field, value):
    def edit(data):
        data[field] = value
    return edit


RUN_CASES = [
    (_step("tokens_per_s", -5.0), r"steps\[0\]: tokens_per_s must be a positive number, got -5.0"),
    (_step("tokens_per_s", float("inf")), r"steps\[0\]: tokens_per_s must be a finite number, got inf"),
    (_step("step_seconds", 0.0), r"steps\[0\]: step_seconds must be a positive number, got 0.0"),
    (_step("tokens_per_s", 6.7), r"steps\[0\]: tokens_per_s 6.7 disagrees with batch / step_seconds"),
    (_step("batch", -1), r"steps\[0\]: batch must be a positive number, got -1"),
    (_set("rows", 0, "seconds_p50", float("nan")), r"rows\[0\]: seconds_p50 must be a finite number, got nan"),
    (_set("rows", 0, "flops", -1e9), r"rows\[0\]: flops must be a non-negative number, got -1000000000.0"),
    (_set("rows", 0, "dtype", "fp64"), r"rows\[0\]: dtype must be one of fp32, tf32, bf16, fp16, fp8, fp4"),
    (_header("dtype", "fp64"), r": dtype must be one of fp32, tf32, bf16, fp16, fp8, fp4, got 'fp64'"),
    (_model("layers", 0), r": model.layers must be a positive number, got 0"),
    (_model("hidden", "big"), r": model.hidden must be a number, got 'big'"),
]


@pytest.mark.parametrize("edit,message", RUN_CASES)
def test_a_hand_edited_value_is_refused_by_the_store_with_file_row_and_field(tmp_path, edit, message):
    path = _edited(tmp_path, RUN, edit)
    with pytest.raises(UserError, match=message) as exc:
        store.load(path)
    assert str(exc.value).startswith(f"results file {path}") and "\n" not in str(exc.value)


def _cli(argv):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(argv)
    return code, err.getvalue()


@pytest.mark.parametrize("command", [["show"], ["cost", "--from"], ["project", "--to", "h100", "--from"],
                                     ["compare", "h100"]])
def test_every_reader_refuses_a_negative_rate_in_one_line(tmp_path, command):
    path = _edited(tmp_path, RUN, _step("tokens_per_s", -5.0))
    argv = ["compare", str(path), "h100"] if command[0] == "compare" else [*command, str(path)]
    code, err = _cli(argv)
    assert code == 2
    assert err.startswith("tokenbench: error: results file") and "tokens_per_s must be a positive number" in err
    assert err.count("\n") == 1


def test_report_refuses_negative_flops_and_a_negative_rate_before_plotting(tmp_path):
    for edit, field in ((_set("rows", 0, "flops", -1e9), "flops"), (_step("tokens_per_s", -5.0), "tokens_per_s")):
        path = _edited(tmp_path, RUN, edit)
        code, err = _cli(["report", str(path), "--out", str(tmp_path / "report")])
        assert code == 2 and f"{field} must be a" in err and err.count("\n") == 1


@pytest.mark.parametrize("edit,message", [
    (lambda d: d["workload"].__setitem__("isl", "256"), r"workload.isl must be a positive integer, got '256'"),
    (lambda d: d["workload"].__setitem__("osl", 0), r"workload.osl must be a positive integer, got 0"),
    (lambda d: d["points"][0].__setitem__("total_tokens_per_s", -5.0), r"total_tokens_per_s must not be negative"),
    (lambda d: d["price"].__setitem__("price_per_hour", -1.0), r"price_per_hour must be a positive number"),
])
def test_a_hand_edited_workload_is_refused_in_one_line(tmp_path, edit, message):
    path = _edited(tmp_path, WORKLOAD, edit)
    code, err = _cli(["show", str(path)])
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"tokenbench: error: results file {path}")
    assert __import__("re").search(message, err), err


def test_every_committed_file_is_shown_by_show():
    """Readers agree on what a valid file is: every file the tests read and every committed run is shown."""
    committed = sorted([*(DATA.parent.parent / "results" / "examples").glob("*.json"), *DATA.glob("*.json")])
    for path in committed:
        code, err = _cli(["show", str(path)])
        assert code == 0, f"{path}: {err}"

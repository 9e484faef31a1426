"""`tokenbench report` from recorded CPU runs (tests/data/report-*.json): files written, PNGs valid, every
figure on the page equal to the result files' own, captions complete, bad input refused clearly."""
import base64
import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from bench.cli import main
from bench.report import cell_format
DATA = Path(__file__).parent / "data"
PRICED = DATA / "report-cpu-tiny-fp32-priced.json"  # batch 1,2,4,8, context 64, $2/h, 1 kW
UNPRICED = DATA / "report-cpu-tiny-fp32-unpriced.json"  # batch 1,4,16, contexts 64 and 256, no price
LLAMA = DATA / "report-cpu-llama-3.2-1b-fp32-layer.json"  # layer-only, batch 1,4, context 128, priced
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIGURES = ["throughput-interactivity.png", "cost.png", "roofline-amd-epyc-cpu-fp32.png",
           "efficiency-report-cpu-tiny-fp32-priced.png", "efficiency-report-cpu-tiny-fp32-unpriced.png"]


def parse_cell(cell: str) -> float | None:
    """The number a cell shows, read back from bench/report/cell_format's text; None for '-'."""
    cell = cell.strip()
    if cell == cell_format.MISSING:
        return None
    if cell.endswith("%"):
        return float(cell[:-1].replace(",", "")) / 100
    return float(cell.replace(",", ""))


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking the signature."""
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def tables(md: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every Markdown table on the page: (header, rows) of cell strings."""
    out, lines, i = [], md.splitlines(), 0
    while i < len(lines):
        if lines[i].startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("|:") or \
                lines[i].startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("|-"):
            split = lambda line: [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            header, rows = split(lines[i]), []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(split(lines[i]))
                i += 1
            out.append((header, rows))
        else:
            i += 1
    return out


def table_with(md: str, *columns: str) -> list[dict]:
    for header, rows in tables(md):
        if all(c in header for c in columns):
            return [dict(zip(header, r)) for r in rows]
    raise AssertionError(f"no table with columns {columns}")


def check_cell(cell: str, value) -> None:
    """A cell shows the result file's value, formatted the one way the report formats it."""
    assert cell == cell_format.num(value) or cell == cell_format.pct(value), (cell, value)
    if value is not None and not isinstance(value, bool):
        parsed = parse_cell(cell)
        assert parsed == pytest.approx(value, rel=1e-3, abs=1e-12)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    code = main(["report", str(PRICED), str(UNPRICED), "--out", str(out), "--project-to", "h200", "--project-as",
                 "bf16", "--compare", PRICED.name, str(UNPRICED), "--compare", str(PRICED), "b200"])
    assert code == 0
    return out, (out / "report.md").read_text(), (out / "report.html").read_text()


def records():
    return {p.name: json.loads(p.read_text()) for p in (PRICED, UNPRICED)}


def test_every_expected_file_is_written_and_every_png_is_a_valid_image(report):
    out, md, _ = report
    from matplotlib.image import imread

    for name in FIGURES + ["report.md", "report.html"]:
        assert (out / name).is_file(), name
    for name in FIGURES:
        data = (out / name).read_bytes()
        width, height = png_size(data)
        assert width > 300 and height > 200
        assert imread(out / name).shape[:2] == (height, width)  # decodes in full
        assert f"]({name})" in md  # the page links it


def test_html_is_self_contained_with_the_same_images(report):
    out, _md, htm = report
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', htm)
    assert len(embedded) == len(FIGURES)
    assert sorted(base64.b64decode(e) for e in embedded) == sorted((out / n).read_bytes() for n in FIGURES)
    assert not re.search(r'src="(?!data:)', htm)  # nothing fetched from beside the page


def test_every_caption_names_device_model_dtype_date_and_provenance(report):
    _, md, _ = report
    captions = re.findall(r"!\[[^\]]*\]\([^)]*\)\n\n\*(.+)\*", md)
    assert len(captions) == len(FIGURES)
    for c in captions:
        for part in ("Device: AMD EPYC (cpu)", "Model: tiny", "Dtype: fp32", "Date: 2026-11-29"):
            assert part in c, (part, c)
        assert "Measured" in c or "Derived" in c
        assert "Projected" in c


def test_step_figures_on_the_page_equal_the_result_files(report):
    _, md, _ = report
    recs = records()
    rows = table_with(md, "curve", "step ms (derived)", "tokens/s per device")
    assert len(rows) == sum(len(r["steps"]) for r in recs.values())
    by_label = {"12:31": recs[PRICED.name], "12:33": recs[UNPRICED.name]}
    for row in rows:
        rec = next(r for t, r in by_label.items() if t in row["curve"])
        step = next(s for s in rec["steps"] if s["batch"] == int(row["batch"]) and s["context"] == int(row["context"])
                    and s["backend"] == row["backend"])
        check_cell(row["step ms (derived)"], step["step_seconds"] * 1e3)
        check_cell(row["tokens/s per device"], step["tokens_per_s"])
        check_cell(row["tokens/s per user"], step["tokens_per_s_per_user"])


def test_cost_figures_on_the_page_equal_the_result_file_and_projections_are_labelled(report):
    _, md, _ = report
    from costmodel.cpu_prices import cpu_price

    rec, unpriced = records()[PRICED.name], records()[UNPRICED.name]
    rows = table_with(md, "curve", "$/M tokens", "tokens/s per MW")
    measured = [r for r in rows if "(projected)" not in r["curve"]]
    assert len(measured) == len(rec["steps"]) + len(unpriced["steps"])
    for row in [r for r in measured if "12:31" in r["curve"]]:
        step = next(s for s in rec["steps"] if s["batch"] == int(row["batch"]))
        check_cell(row["$/M tokens"], step["cost_per_mtok"])
        check_cell(row["tokens/s per MW"], step["tokens_per_s_per_mw"])
    # the run recorded without a price is costed at the CPU catalog's estimate, and the page says so
    estimate = cpu_price(unpriced["device"]["name"], unpriced["device"]["cores"])
    for row in [r for r in measured if "12:33" in r["curve"]]:
        step = next(s for s in unpriced["steps"] if s["batch"] == int(row["batch"])
                    and s["context"] == int(row["context"]))
        check_cell(row["$/M tokens"], estimate.price_per_hour / (step["tokens_per_s"] * 3600 / 1e6))
        assert row["tokens/s per MW"] == "-"
    assert "CPU catalog estimate, not this machine's price" in md
    projected = [r for r in rows if "(projected)" in r["curve"]]
    assert projected and all(r["curve"].startswith("h200 (bf16) from") for r in projected)
    assert "PROJECTION, not a measurement" in md


def test_op_figures_on_the_page_equal_the_result_files(report):
    _, md, _ = report
    for name, rec in records().items():
        section = md.split(f"efficiency-{Path(name).stem}.png")[1]
        rows = table_with(section, "op", "p50 us", "TFLOP/s", "GB/s")
        timed = [r for r in rec["rows"] if r.get("valid") and r.get("seconds_p50")]
        assert len(rows) == len(timed)
        for row in rows:
            r = next(x for x in timed if x["op"] == row["op"] and x["batch"] == int(row["batch"])
                     and x["context"] == int(row["context"]) and x["backend"] == row["backend"])
            check_cell(row["p50 us"], r["seconds_p50"] * 1e6)
            check_cell(row["TFLOP/s"], r["tflops"])
            check_cell(row["GB/s"], r["gbps"])
            check_cell(row["FLOP/byte"], r["intensity"])
            # CPU runs: no FLOP ceiling, so the bars are % of the memory floor (pct_copy_bw)
            check_cell(row["% of memory floor (measured copy BW)"], r["pct_copy_bw"])


def test_inputs_and_ceilings_tables_equal_the_result_files(report):
    _, md, _ = report
    recs = records()
    for row in table_with(md, "file", "measured copy GB/s"):
        rec = recs[row["file"]]
        check_cell(row["measured copy GB/s"], rec["measured_copy_gbps"])
        recorded = (rec.get("price") or {}).get("price_per_hour")
        if recorded is None:  # a CPU run recorded without a price: the CPU catalog's estimate, labelled
            from costmodel.cpu_prices import cpu_price

            recorded = cpu_price(rec["device"]["name"], rec["device"]["cores"]).price_per_hour
        check_cell(row["$/device-hour"], recorded)
    ceil = table_with(md, "run", "spec TFLOP/s", "measured copy GB/s")
    assert {r["spec TFLOP/s"] for r in ceil} == {"-"} and {r["measured TFLOP/s"] for r in ceil} == {"-"}


def test_missing_ceilings_are_said_in_the_roofline_caption(report):
    _, md, _ = report
    caption = md.split("roofline-amd-epyc-cpu-fp32.png)")[1].split("\n\n")[1]
    assert "Spec-sheet ceilings unknown" in caption
    assert "no measured fp32 FLOP ceiling" in caption and "only the measured bandwidth ceiling is drawn" in caption
    assert "Not placed (no FLOPs, intensity 0): kv_append" in caption


def test_generation_tables_are_the_compare_tables(report):
    _, md, _ = report
    from bench.report.generation import comparison
    from bench.report.load import read_runs

    runs, _ = read_runs([str(PRICED), str(UNPRICED)])
    for a, b in ((runs[0], runs[1]), (runs[0], "b200")):
        c = comparison(a, b)
        heading = f"### A = {c.a.label}; B = {c.b.label}"
        assert heading in md
        section = md.split(heading)[1]
        shown = table_with(section, "A", "B", "B vs A")[: len(c.rows())]
        assert [[r[""], r["A"], r["B"], r["B vs A"]] for r in shown] == c.rows()
    assert "B: batch 8, context 64, backend torch (projected)" in md


def test_pareto_frontier():
    from bench.report.plots import pareto

    pts = [(1, 10), (2, 8), (3, 9), (4, 1), (0.5, 5)]
    assert pareto(pts) == [(1, 10), (3, 9), (4, 1)]
    assert pareto([]) == []


def test_number_formatting_round_trips():
    for v in (104.027383754675, 3042.6, 1328664.3, 0.0029658849, 4.532e-05, 0.5, 12345.6):
        assert parse_cell(cell_format.num(v)) == pytest.approx(v, rel=1e-3)
    assert cell_format.num(None) == cell_format.pct(None) == "-" and parse_cell("-") is None
    assert cell_format.pct(0.1234) == "12.34%" and parse_cell("12.34%") == pytest.approx(0.1234)


# --- ceilings, with and without what a GPU run will carry ------------------------------------------------

def test_spec_and_measured_ceilings_are_read_where_present(tmp_path):
    from bench.configs.device_catalog import lookup
    from bench.report.load import ceilings, read_runs

    # A CPU record relabelled for the test only (never committed): it exercises the spec-sheet path.
    rec = json.loads(PRICED.read_text())
    rec["device"]["spec"] = lookup("h200").to_dict()
    rec["measured_peak_tflops"] = {"fp32": 50.0}
    path = tmp_path / "relabelled.json"
    path.write_text(json.dumps(rec))
    run = read_runs([str(path)])[0][0]
    c = ceilings(run)
    assert (c.spec_tflops, c.spec_gbps, c.measured_tflops) == (67, 4800, 50.0)
    assert c.measured_gbps == pytest.approx(rec["measured_copy_gbps"])
    assert c.notes == ()


@pytest.mark.parametrize("written", [
    {"measured_peak_tflops": {"fp32": 12.5}},  # schema 1, as `run` wrote it beside the peak file it used
    {"measured_peak": {"file": "peak.json", "dtype": "fp32", "tflops": 12.5}},  # schema 1, the peak file used
    {"schema_version": 2, "kind": "run", "ceilings": {"dtype": "fp32", "measured_tflops": 12.5}},  # schema 2
])
def test_measured_peak_is_read_from_one_field_after_migration(written):
    from bench.report.load import measured_peak
    from bench.records.store import from_dict

    rec = json.loads(PRICED.read_text())
    assert measured_peak(from_dict(rec, "priced")) is None
    assert measured_peak(from_dict({**rec, **written}, "with a peak"))[0] == pytest.approx(12.5)
    # a made-up shape no tokenbench wrote is kept (in extra), never guessed at
    guessed = from_dict({**rec, "plan": {"ceilings": {"measured_peak_flops": 12.5e12}}}, "guessed")
    assert measured_peak(guessed) is None and "plan" in guessed.extra


def test_a_peak_file_gives_its_device_a_measured_flop_ceiling(tmp_path):
    from bench.report.load import ceilings, read_runs

    rec = json.loads(PRICED.read_text())
    peak = tmp_path / "peak.json"
    peak.write_text(json.dumps({"schema_version": 1, "kind": "peak", "device": {"name": rec["device"]["name"]},
                                "measured_peak_tflops": {"fp32": 0.4},
                                "rows": [{"metric": "matmul", "dtype": "fp32", "unit": "TFLOP/s", "measured": 0.4}]}))
    runs, peaks = read_runs([str(PRICED), str(peak)])
    assert len(runs) == 1 and len(peaks) == 1
    assert ceilings(runs[0]).measured_tflops == pytest.approx(0.4)
    assert runs[0].measured_peak[1] == "measured peak from peak.json"


def test_efficiency_bars_use_the_spec_sheet_bound_when_rows_carry_it():
    from bench.report.load import Run
    from bench.report.plots import efficiency_basis
    from bench.records.store import from_dict, load

    rec = json.loads(PRICED.read_text())
    for r in rec["rows"]:
        r["efficiency_spec"] = 0.5
    assert efficiency_basis(Run(PRICED, from_dict(rec, str(PRICED))))[0] == "efficiency_spec"
    assert efficiency_basis(Run(PRICED, load(PRICED)))[0] == "pct_copy_bw"


# --- bad input ---------------------------------------------------------------------------------------------

def error_of(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("tokenbench: error: ") and err.count("\n") == 1
    return err


def test_no_result_files(capsys, tmp_path):
    assert "no result files given" in error_of(capsys, ["report"])
    assert f"no result files (*.json) in folder {tmp_path}" in error_of(capsys, ["report", str(tmp_path)])


def test_empty_and_missing_and_corrupt_files_are_named(capsys, tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text("")
    assert f"results file {empty} is empty" in error_of(capsys, ["report", str(PRICED), str(empty)])
    assert "results file not found: nope.json" in error_of(capsys, ["report", "nope.json"])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert f"results file {bad} is not valid JSON" in error_of(capsys, ["report", str(bad)])


def test_an_unknown_schema_version_is_refused_naming_the_file(capsys, tmp_path):
    # schema 1 files are migrated (tests/test_store.py); a version this tokenbench does not know is refused
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps(dict(json.loads(PRICED.read_text()), schema_version=3)))
    err = error_of(capsys, ["report", str(PRICED), str(newer)])
    assert f"results file {newer} has schema version 3" in err and "reads versions 1 and 2" in err


def test_mixed_models_are_refused_unless_asked_for(capsys, tmp_path):
    err = error_of(capsys, ["report", str(PRICED), str(LLAMA), "--out", str(tmp_path / "r")])
    assert "mix models or dtypes" in err and LLAMA.name in err and "--allow-mixed" in err
    assert not (tmp_path / "r").exists()  # refused before anything is written


def test_mixed_report_labels_its_curves(tmp_path):
    from bench.report.build import Options, Report
    from bench.report.load import read_runs

    runs, _ = read_runs([str(PRICED), str(LLAMA)])
    rep = Report(runs, tmp_path, Options(allow_mixed=True))
    assert rep.mixed and {c.label.split(" · ")[1] for c in rep.curves} == {"tiny fp32", "llama-3.2-1b fp32"}
    rep.inputs()
    assert any("Mixed models or dtypes" in item for b in rep.blocks for item in getattr(b, "items", []))


def test_a_report_without_prices_says_so_and_draws_no_cost_plot(tmp_path):
    from bench.report.build import Options, Report
    from bench.report.load import read_runs

    data = json.loads(UNPRICED.read_text())
    data["device"]["name"] = "Ampere Altra"  # a CPU the CPU price catalog does not list: no estimate either
    unpriced = tmp_path / "unpriced.json"
    unpriced.write_text(json.dumps(data))
    rep = Report(read_runs([str(unpriced)])[0], tmp_path, Options())
    rep.cost()
    assert not list(tmp_path.glob("*.png"))
    assert "No run carries a price or a power figure" in rep.blocks[-1].text


def test_bad_compare_and_projection_targets(capsys, tmp_path):
    assert "is not among the result files given" in error_of(
        capsys, ["report", str(PRICED), "--compare", str(PRICED), str(LLAMA), "--out", str(tmp_path)])
    assert "unknown device 'nosuch'" in error_of(
        capsys, ["report", str(PRICED), "--project-to", "nosuch", "--out", str(tmp_path)])


def test_importing_the_report_code_loads_no_matplotlib():
    code = ("import sys, bench.cli, bench.commands.report, bench.report.build, bench.report.plots, "
            "bench.report.generation; print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent.parent)
    assert out.stdout.strip() == "False"


def test_report_with_twelve_runs_of_one_device_and_dtype(tmp_path, capsys):
    """results/ accumulates runs: twelve of one device and dtype (each with its own measured ceilings, so each
    gets its own ceiling line and dash pattern) make one report, and its roofline names every run. Each copy
    keeps batch 1 only: the report still draws one efficiency figure per run, of one panel, not four."""
    record = json.loads(PRICED.read_text())
    record["rows"] = [r for r in record["rows"] if r["batch"] == 1]
    record["steps"] = [s for s in record["steps"] if s["batch"] == 1]
    record["settings"]["batches"] = [1]
    paths = []
    for n in range(12):
        rec = json.loads(json.dumps(record))
        rec["measured_copy_gbps"] = rec["measured_copy_gbps"] * (1 + n / 100)
        rec["created"] = f"2026-11-{n + 1:02d}T00:00:00Z"
        path = tmp_path / f"run-{n:02d}.json"
        path.write_text(json.dumps(rec))
        paths.append(str(path))
    out = tmp_path / "rep"
    assert main(["report", *paths, "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert all(f"run-{n:02d}" in md for n in range(12))
    for png in out.glob("*.png"):
        png_size(png.read_bytes())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".rep-")]  # no staging folder left


def test_failed_report_leaves_no_half_written_folder(tmp_path, monkeypatch):
    from bench.report import build as build_module
    def broken(self):
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(build_module.Report, "rooflines", broken)
    out = tmp_path / "rep"
    with pytest.raises(RuntimeError):
        build_module.build(build_module_runs(), out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def build_module_runs():
    from bench.report.load import read_runs

    return read_runs([str(PRICED)])[0]

"""`tokenbench report` with workload files (bench/report/workload_section.py): the InferenceX-style curve, $/M tokens
against interactivity and the table at one interactivity, from the hand-made fixtures in tests/data; run
files beside workload files keep working."""
import json
import math
import re
import shutil
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from bench.cli import main
from costmodel.number_format import money, sig
from costmodel.frontier import point_at
from costmodel.workload_economics import WorkloadPoint, workload_economics

DATA = Path(__file__).parent / "data"
WORKLOAD = DATA / "workload-cpu-llama-3.2-1b-bf16.json"  # CPU, $0.10/h, 0.25 kW; C = 1, 4, 16
SERVED = DATA / "served-llama-3.2-1b-synthetic.csv"
RUN = DATA / "report-cpu-tiny-fp32-priced.json"  # a decode run of `tokenbench run`
FIGURES = ["workload-throughput-interactivity.png", "workload-cost.png"]


def decode_png(path: Path):
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(str(path))  # decodes every pixel
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200
    return img


def md_table(md: str, *columns: str) -> list[dict]:
    lines = md.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("| ") and all(f"| {c} |" in line or line.startswith(f"| {c} |") for c in columns):
            split = lambda s: [c.strip() for c in re.split(r"(?<!\\)\|", s)[1:-1]]
            header, rows = split(line), []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append(dict(zip(header, split(row))))
            return rows
    raise AssertionError(f"no table with columns {columns}")


def captions(md: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\([^)]*\)\n\n\*(.*)\*", md)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("wreport")
    assert main(["report", str(WORKLOAD), "--served", str(SERVED), "--at-interactivity", "0.5", "--out",
                 str(out)]) == 0
    return out, (out / "report.md").read_text()


def _points(engine: str) -> list[WorkloadPoint]:
    rec = json.loads(WORKLOAD.read_text())
    return [WorkloadPoint.from_dict(p) for p in rec["points"] if p["engine_model"] == engine]


def test_files_are_written_and_every_png_decodes(report):
    out, md = report
    for name in FIGURES:
        decode_png(out / name)
        assert f"]({name})" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(FIGURES)


def test_table_at_an_interactivity_equals_the_interpolated_figures(report):
    _, md = report
    rows = {r["curve"]: r for r in md_table(md, "curve", "tokens/s per GPU (total)", "read")}
    for engine in ("chunked-prefill", "prefill-then-decode"):
        got = point_at(_points(engine), 0.5)
        e = workload_economics(got.as_point(), 0.10, 0.25)
        row = rows[f"AMD EPYC · bf16 · 256/64 · {engine}"]
        assert row["tokens/s per GPU (total)"] == sig(got.total_tokens_per_s)
        assert row["output tokens/s per GPU"] == sig(got.output_tokens_per_s)
        assert row["$/M total"] == money(e.cost_per_mtok_total)
        assert row["$/M output"] == money(e.cost_per_mtok_output)
        assert row["$/M input"] == money(e.cost_per_mtok_input)
        assert row["tokens/s per MW"] == sig(e.tokens_per_s_per_mw)
        assert row["read"] == "between concurrency 4 and 16"
    # by hand: chunked-prefill between C=16 (0.217549, 17.4039) and C=4 (0.610998, 12.22), log-linear at 0.5
    t = (0.5 - 0.217549) / (0.610998 - 0.217549)
    tb = math.exp(math.log(17.4039) + t * (math.log(12.22) - math.log(17.4039)))
    assert rows["AMD EPYC · bf16 · 256/64 · chunked-prefill"]["tokens/s per GPU (total)"] == sig(tb) == "13.5"
    assert rows["AMD EPYC · bf16 · 256/64 · chunked-prefill"]["$/M total"] == money(0.10 / (tb * 3600 / 1e6))
    # the served H200 curve has a point at 0.5 (concurrency 4): 9 tokens/s per GPU at $1.41/h
    served = rows["served: h200 bf16 256/64 synthetic-engine TP1"]
    assert served["tokens/s per GPU (total)"] == "9.00" and served["$/M total"] == money(1.41 / (9 * 3600 / 1e6))
    # a curve whose range does not reach 0.5 says so and shows no figure (never extrapolated)
    b200 = rows["served: b200 bf16 256/64 synthetic-engine TP1"]
    assert b200["read"].startswith("outside the served range (180-300 tokens/s per user)")
    assert b200["tokens/s per GPU (total)"] == "-" and b200["$/M total"] == "-"


def test_outside_the_measured_range_is_said(tmp_path):
    assert main(["report", str(WORKLOAD), "--at-interactivity", "50", "--out", str(tmp_path / "r")]) == 0
    rows = md_table((tmp_path / "r" / "report.md").read_text(), "curve", "read")
    assert all(r["read"].startswith("outside the measured range") and r["$/M total"] == "-" for r in rows)


def test_plotted_points_and_costs_equal_the_file(report):
    _, md = report
    pts = {(p.engine_model, p.concurrency): p for e in ("chunked-prefill", "prefill-then-decode") for p in _points(e)}
    rows = md_table(md, "curve", "source", "concurrency", "tokens/s per user")
    mine = [r for r in rows if r["source"] == "measured"]
    assert len(mine) == 6
    for r in mine:
        p = pts[(r["curve"].split(" · ")[-1], int(r["concurrency"]))]
        assert r["tokens/s per user"] == sig(p.interactivity)
        assert r["tokens/s per GPU (total)"] == sig(p.total_tokens_per_s)
    costs = md_table(md, "curve", "concurrency", "$/M total", "price and power")
    c16 = next(r for r in costs if r["curve"].endswith("chunked-prefill") and r["concurrency"] == "16")
    assert c16["$/M total"] == money(0.10 / (pts[("chunked-prefill", 16)].total_tokens_per_s * 3600 / 1e6))


def test_captions_state_device_and_measured_projected_served(report):
    _, md = report
    caps = captions(md)
    assert len(caps) == 2
    for c in caps:
        assert "Device: AMD EPYC (measured, cpu), h200 (served), b200 (served)." in c
        assert "Model: llama-3.2-1b." in c and "Date: 2026-11-20" in c
        assert "Measured:" in c and "Projected: nothing in this figure." in c and "Served (crosses)" in c
        assert "Measured on a CPU" in c
    # served rows of another model are not drawn, and the page says so
    assert "llama-3.1-8b, 1 point(s)) not drawn" in md
    assert "concurrency 64 not placed (no interactivity published)" in md


def test_projected_points_are_dashed_and_labelled(tmp_path):
    rec = json.loads(WORKLOAD.read_text())
    for c, u, t in ((1, 60.0, 120.0), (4, 45.0, 400.0), (16, 20.0, 1100.0)):
        rec["points"].append(WorkloadPoint(device="h200", model="llama-3.2-1b", precision="bf16", isl=256, osl=64,
                                           concurrency=c, engine_model="chunked-prefill", source="projected",
                                           total_tokens_per_s=t, output_tokens_per_s=t / 5, interactivity=u).to_dict())
    f = tmp_path / "workload-projected.json"
    f.write_text(json.dumps(rec))
    assert main(["report", str(f), "--at-interactivity", "50", "--out", str(tmp_path / "r")]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert all("Projected (dashed, labelled 'projected')" in c and "h200 (projected)" in c for c in captions(md))
    rows = {r["curve"]: r for r in md_table(md, "curve", "read")}
    proj = rows["h200 · bf16 · 256/64 · chunked-prefill (projected)"]
    t = (50 - 45) / (60 - 45)
    assert proj["tokens/s per GPU (total)"] == sig(math.exp(math.log(400) + t * (math.log(120) - math.log(400))))
    assert proj["source"] == "projected" and proj["$/M total"].startswith("$")  # at the H200's catalog price


def test_a_workload_file_beside_run_files_in_one_folder(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    shutil.copy(WORKLOAD, folder)
    shutil.copy(RUN, folder)
    assert main(["report", str(folder), "--out", str(tmp_path / "r")]) == 0
    out = tmp_path / "r"
    for name in FIGURES + ["throughput-interactivity.png", "cost.png"]:
        decode_png(out / name)
    md = (out / "report.md").read_text()
    assert "*Workload files.*" in md and "Give `--at-interactivity U`" in md


def test_run_files_alone_are_unchanged(tmp_path):
    assert main(["report", str(RUN), "--out", str(tmp_path / "r")]) == 0
    names = {p.name for p in (tmp_path / "r").iterdir()}
    assert "throughput-interactivity.png" in names and not names & set(FIGURES)


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("tokenbench: error: ") and err.count("\n") == 1
    return err


def test_mistakes_are_one_line_and_exit_2(capsys, tmp_path):
    out = ["--out", str(tmp_path / "r")]
    assert "--served is for workload files" in _error(capsys, ["report", str(RUN), "--served", str(SERVED)] + out)
    assert "--at-interactivity is for workload files" in _error(capsys, ["report", str(RUN), "--at-interactivity",
                                                                         "5"] + out)
    assert "--at-interactivity must be a positive number" in _error(capsys, ["report", str(WORKLOAD), "--at-interactivity", "-1"] + out)
    bad = tmp_path / "bad.csv"
    bad.write_text("hardware,model\nh200,x\n")
    assert f"served results {bad}: missing column(s)" in _error(capsys, ["report", str(WORKLOAD), "--served",
                                                                         str(bad)] + out)
    rec = json.loads(WORKLOAD.read_text())
    rec["points"][2]["concurrency"] = "many"
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(rec))
    assert f"results file {broken}: points[2]: concurrency must be an integer" in _error(
        capsys, ["report", str(broken)] + out)
    other = json.loads(WORKLOAD.read_text())
    other["model"]["name"] = "tiny"
    for p in other["points"]:
        p["model"] = "tiny"
    f = tmp_path / "tiny.json"
    f.write_text(json.dumps(other))
    assert "the workload files mix models" in _error(capsys, ["report", str(WORKLOAD), str(f)] + out)
    assert "unknown device" in _error(capsys, ["report", str(WORKLOAD), "--project-to", "h999"] + out)
    assert not (tmp_path / "r").exists()


def test_a_measured_workload_projected_onto_catalog_devices_is_drawn_dashed(tmp_path, capsys):
    """A workload file written by `tokenbench workload` (tiny model, CPU), projected by --project-to."""
    measured = Path(__file__).parent / "data" / "workload-cpu-tiny-fp32.json"
    out = tmp_path / "r"
    assert main(["report", str(measured), "--project-to", "h200,b200", "--project-as", "bf16", "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "h200 (projected)" in md and "b200 (projected)" in md
    assert "Projected (dashed, labelled 'projected')" in md

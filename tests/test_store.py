"""The one reader and writer of results files (bench/records/store.py) and its typed records (bench/records/schema.py):
every committed file loads, schema 1 migrates, a written record reads back equal, and what cannot be read
is one line naming the file, the row and the field."""
import json
from pathlib import Path

import pytest

from bench.records import store
from bench.errors import UserError
from bench.records.schema import SCHEMA_VERSION, MeasuredRow, PeakRecord, RunRecord, Step
from costmodel.ceilings import Ceilings

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = sorted([*(ROOT / "results" / "examples").glob("*.json"), *(ROOT / "tests" / "data").glob("*.json")])
RUN = ROOT / "tests" / "data" / "cpu-tiny-fp32.json"
PEAK_RUN = ROOT / "results" / "examples" / "20261202-001103-intel-r-xeon-r-processor-llama-3.2-1b-bf16.json"


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_every_committed_results_file_loads_and_loses_nothing(path):
    raw = json.loads(path.read_text())
    record = store.load(path)
    assert record.schema_version == SCHEMA_VERSION and record.path == str(path)
    assert record.kind == raw.get("kind", "run")
    assert len(record.rows) == len(raw["rows"]) and len(record.steps if hasattr(record, "steps") else []) == \
        len(raw.get("steps", []))
    # every field of every row and step is declared or kept in extra, with its value
    for part in ("rows", "steps"):
        for written, typed in zip(raw.get(part, []), getattr(record, part, [])):
            back = typed.to_dict()
            assert written == back  # explicit nulls included
    # and the record as written again reads back equal
    assert store.from_dict(store.clean(record), path.name) == record


def test_a_schema_1_run_migrates_its_ceilings_to_one_name():
    raw = json.loads(PEAK_RUN.read_text())
    assert raw["schema_version"] == 1 and "kind" not in raw
    record = store.load(PEAK_RUN)
    assert isinstance(record, RunRecord) and record.kind == "run" and record.phase == "decode"
    assert record.ceilings.measured_gbps == pytest.approx(raw["measured_copy_gbps"])
    assert record.ceilings.measured_tflops == pytest.approx(raw["measured_peak_tflops"]["bf16"])
    assert record.ceilings.copy_bw == pytest.approx(raw["measured_copy_gbps"] * 1e9)
    assert record.ceilings.peak_flops == pytest.approx(raw["measured_peak_tflops"]["bf16"] * 1e12)
    assert record.peak_file == raw["measured_peak"]
    written = store.clean(record)
    for old in ("measured_copy_gbps", "measured_peak_tflops", "measured_peak"):
        assert old not in written and old not in record.extra  # one name each, not two
    assert written["schema_version"] == 2 and written["ceilings"]["measured_gbps"] == raw["measured_copy_gbps"]


def test_a_schema_1_peak_migrates():
    path = ROOT / "results" / "examples" / "20261129-131215-amd-epyc-peak.json"
    raw = json.loads(path.read_text())
    peak = store.load(path)
    assert isinstance(peak, PeakRecord)
    assert peak.measured_tflops == raw["measured_peak_tflops"] and peak.measured_gbps == raw["measured_copy_gbps"]
    assert peak.row("matmul", "fp32").measured == raw["measured_peak_tflops"]["fp32"]


def test_round_trip_write_then_read_is_equal(tmp_path):
    from types import SimpleNamespace

    from bench.configs.device_catalog import lookup

    device = SimpleNamespace(key="h200", name="NVIDIA H200", spec=lookup("h200"),
                             to_dict=lambda: {"key": "h200", "name": "NVIDIA H200", "kind": "cuda",
                                              "memory_bytes": 141 * 10**9, "spec": lookup("h200").to_dict(),
                                              "sm_count": 132})
    model = SimpleNamespace(to_dict=lambda: {"name": "toy", "layers": 2})
    env = {"created": "2026-01-01T00:00:00+00:00", "tokenbench": "test"}
    writer, record = store.open_record("run", tmp_path, device, env, ("toy", "bf16"), {"batches": [1]},
                                       model=model, dtype="bf16", price={"price_per_hour": 2.0, "source": "test"},
                                       phase="decode")
    assert record["ceilings"].spec_tflops == 989 and record["ceilings"].spec_gbps == 4800
    store.set_measured(record, measured_gbps=4300.0, measured_tflops=790.0)
    record["rows"].append({"op": "layer", "kind": "layer", "batch": 1, "context": 8, "backend": "torch",
                           "valid": True, "seconds_p50": 1e-5, "flops": 10, "bytes": 20, "shape": {"m": 1},
                           "triton_configs": {"qkv": "BLOCK 64"}})  # an undeclared field rides in extra
    record["steps"].append({"batch": 1, "context": 8, "backend": "torch", "valid": True, "tokens_per_s": 9.0,
                            "fits": True})
    with store.recording(record, writer):
        pass
    back = store.load(writer.json_path)
    assert back == store.from_dict(store.clean(record), "in memory")
    assert back.ceilings == Ceilings("bf16", 989, 4800, 790.0, 4300.0)
    assert back.rows[0].extra == {"triton_configs": {"qkv": "BLOCK 64"}} and back.rows[0].seconds_p50 == 1e-5
    assert isinstance(back.steps[0], Step) and back.usable_steps() == back.steps and back.complete is True
    assert writer.csv_path.read_text().splitlines()[0].startswith("part,")
    # exclusive create: a second file of the same name (a run started in the same second) gets its own
    writer2 = store.ResultWriter(tmp_path, writer.json_path.stem)
    assert writer2.json_path == tmp_path / f"{writer.json_path.stem}-1.json"
    assert store.load(writer.json_path) == back  # the first run's file is untouched


def test_the_writer_refuses_a_mistyped_field_before_it_reaches_the_disk(tmp_path):
    writer = store.ResultWriter(tmp_path, "x")
    record = store.clean(store.load(RUN))
    record["rows"][0]["batch"] = "eight"
    with pytest.raises(UserError, match=r"rows\[0\]: batch must be an integer, got 'eight'"):
        writer.write(record)
    assert json.loads(writer.json_path.read_text()) == {}  # the reserved file, untouched


@pytest.mark.parametrize("part,index,field,value,want", [
    ("rows", 3, "seconds_p50", "fast", "a number"),
    ("rows", 0, "valid", "yes", "true or false"),
    ("steps", 1, "batch", 1.5, "an integer"),
    ("steps", 0, "backend", 7, "a string"),
])
def test_a_mistyped_field_is_one_line_naming_file_row_and_field(tmp_path, part, index, field, value, want):
    data = json.loads(RUN.read_text())
    data[part][index][field] = value
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(UserError) as exc:
        store.load(bad)
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(f"results file {bad}: {part}[{index}]: {field} must be {want}, got {value!r}")


def test_a_mistyped_header_field_names_it(tmp_path):
    data = json.loads(RUN.read_text())
    data["measured_copy_gbps"] = "quick"  # schema 1: migrated into ceilings, checked there
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(UserError, match=rf"results file {bad}: ceilings: measured_gbps must be a number"):
        store.load(bad)
    data = json.loads(RUN.read_text())
    data["device"] = {"kind": "cpu"}
    bad.write_text(json.dumps(data))
    with pytest.raises(UserError, match=rf"results file {bad}: device: lacks name"):
        store.load(bad)


def test_the_store_refuses_an_unknown_kind_and_an_unknown_version_in_one_line(tmp_path):
    data = json.loads(RUN.read_text())
    path = tmp_path / "x.json"
    path.write_text(json.dumps(dict(data, schema_version=2, kind="workload-from-the-future")))
    with pytest.raises(UserError) as exc:
        store.load(path)
    assert str(exc.value) == (f"results file {path} holds a record of unknown kind 'workload-from-the-future'; "
                              f"this tokenbench reads run, peak, tp, moe, fp8, workload")
    path.write_text(json.dumps(dict(data, schema_version=9)))
    with pytest.raises(UserError) as exc:
        store.load(path)
    assert str(exc.value) == f"results file {path} has schema version 9; this tokenbench reads versions 1 and 2"
    path.write_text(json.dumps({"hello": 1}))
    with pytest.raises(UserError, match="is not a tokenbench run"):
        store.load(path)
    with pytest.raises(UserError, match="is a run record; this needs peak"):
        store.load(RUN, ("peak",))


def test_kinds_are_an_explicit_table_of_record_classes():
    assert set(store.KINDS) == {"run", "peak", "tp", "moe", "fp8", "workload"}
    for kind, cls in store.KINDS.items():
        assert cls.KIND == kind  # the class a kind reads into says the same kind when it writes
    assert all(isinstance(store.KINDS[k](device=None, model={}).rows, list) for k in store.RUN_KINDS)
    assert MeasuredRow.REQUIRED == ("op", "batch", "backend")

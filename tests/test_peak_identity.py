"""Ceilings belong to the machine that measured them: a peak file is used only on the device it was measured
on (a CPU's name, family, model, stepping and memory; a GPU's UUID, else name and memory), and every peak
file passed over is said, with why."""
import io
import json
import shutil
from pathlib import Path

from rich.console import Console

from bench.configs.device_catalog import cpu_identity, detect
from bench.records.peak_files import find_peaks, identity_mismatch, use_measured_peak

ROOT = Path(__file__).resolve().parents[1]
COMMITTED_PEAK = ROOT / "results" / "examples" / "20261129-131215-amd-epyc-peak.json"


class _Plan:
    dtype = "fp32"
    ceilings = None


def _peak_of_this_machine(tmp_path, **device_changes) -> Path:
    """The committed peak record, relabelled as measured on this machine's CPU (then changed as asked)."""
    data = json.loads(COMMITTED_PEAK.read_text())
    data["device"] = dict(detect("cpu").to_dict(), **device_changes)
    path = tmp_path / "20990101-000000-this-peak.json"
    path.write_text(json.dumps(data))
    return path


def _use(tmp_path):
    record, buf = {}, io.StringIO()
    used = use_measured_peak(_Plan(), detect("cpu"), tmp_path, record, Console(file=buf, width=200))
    return used, buf.getvalue()


def test_cpu_identity_reads_family_model_and_stepping(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\nstepping\t: 1\n\n"
                    "processor\t: 1\ncpu family\t: 99\n")
    assert cpu_identity(str(info)) == {"cpu_family": "25", "cpu_model": "1", "cpu_stepping": "1"}


def test_this_machines_peak_file_is_used(tmp_path):
    path = _peak_of_this_machine(tmp_path)
    used, said = _use(tmp_path)
    assert used is not None and used["file"] == str(path)
    assert "not used" not in said


def test_another_machines_peak_file_is_never_used_and_is_said(tmp_path):
    here = detect("cpu").to_dict()
    _peak_of_this_machine(tmp_path, cpu_family="not-" + str(here.get("cpu_family")))
    used, said = _use(tmp_path)
    assert used is None
    assert "peak file not used: 20990101-000000-this-peak.json: another machine's (measured on cpu family" in said


def test_the_committed_example_peak_is_not_this_machines_ceiling(tmp_path):
    """A fresh clone's run never reads the example peak file (it is outside the default --out, and it does not
    record the CPU's family), even when copied into --out."""
    assert not list((ROOT / "results").glob("*.json"))  # examples live in results/examples/
    shutil.copy(COMMITTED_PEAK, tmp_path / COMMITTED_PEAK.name)
    used, said = _use(tmp_path)
    assert used is None and "another machine's (it does not record the device's cpu family" in said


def test_an_empty_or_truncated_peak_file_is_said_not_skipped_silently(tmp_path):
    (tmp_path / "20990101-000000-x-peak.json").write_text("")
    (tmp_path / "20990101-000001-x-peak.json").write_text(COMMITTED_PEAK.read_text()[:300])
    found, passed = find_peaks(tmp_path, detect("cpu"))
    assert found is None and len(passed) == 2
    assert all("not readable as a peak file" in line for line in passed)


def test_memory_and_gpu_uuid_tell_devices_apart():
    a = {"kind": "cpu", "name": "X", "cpu_family": "1", "cpu_model": "2", "cpu_stepping": "3", "memory_bytes": 2**34}
    assert identity_mismatch(a, dict(a)) is None
    assert "GiB" in identity_mismatch(a, dict(a, memory_bytes=2**35))
    g = {"kind": "cuda", "name": "NVIDIA H100", "uuid": "GPU-1", "memory_bytes": 80e9}
    assert identity_mismatch(g, dict(g)) is None
    assert "GPU-1" in identity_mismatch(g, dict(g, uuid="GPU-2"))
    assert identity_mismatch(dict(g, uuid=None), dict(g, uuid=None)) is None  # name and memory

"""Writes that survive a full disk: a failed write keeps the last good file, removes its temporary, notes
`failed` where the disk still takes it, and is one line; into a full disk no empty .json is left."""
import contextlib
import errno
import io
import json
import pathlib

import pytest

from bench.cli import main
from bench.records import store
from conftest import QUICK_RUN, _no_native_bf16, _small_copy_buffer

RUN = pathlib.Path(__file__).resolve().parent / "data" / "cpu-tiny-fp32.json"


def _fill_disk_after(monkeypatch, good_writes: int):
    """Path.write_text of a results temporary writes half its text, then raises ENOSPC, after `good_writes`."""
    real = pathlib.Path.write_text
    calls = {"n": 0}

    def write_text(self, text, *a, **k):
        if self.name.endswith(".json.tmp"):
            calls["n"] += 1
            if calls["n"] > good_writes:
                real(self, text[: len(text) // 2], *a, **k)
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, text, *a, **k)

    monkeypatch.setattr(pathlib.Path, "write_text", write_text)


def test_a_failed_write_keeps_the_last_good_file_and_removes_its_temporary(tmp_path, monkeypatch):
    writer = store.ResultWriter(tmp_path, "x")
    record = store.clean(store.load(RUN))
    writer.write(record)
    good = writer.json_path.read_text()
    _fill_disk_after(monkeypatch, 0)
    record["rows"] = record["rows"][:1]
    with pytest.raises(store.WriteFailed, match=r"No space left on device; its last good copy is kept"):
        writer.write(record)
    assert writer.json_path.read_text() == good
    assert not list(tmp_path.glob("*.tmp"))


def test_recording_notes_the_failure_where_it_can_and_raises_one_error(tmp_path, monkeypatch):
    writer = store.ResultWriter(tmp_path, "x")
    record = store.clean(store.load(RUN))
    writer.write(record)
    calls = {"n": 0}
    real = store.ResultWriter.write

    def fails_once(self, rec):  # the disk is full for one write, then has room again (another job freed some)
        calls["n"] += 1
        if calls["n"] == 1:
            raise store.WriteFailed("cannot write x.json: No space left on device; its last good copy is kept")
        return real(self, rec)

    monkeypatch.setattr(store.ResultWriter, "write", fails_once)
    with pytest.raises(store.WriteFailed):
        with store.recording(record, writer):
            writer.write(record)
    written = json.loads(writer.json_path.read_text())
    assert written["failed"].startswith("WriteFailed: cannot write x.json: No space left on device")


def test_a_disk_that_fills_during_run_is_one_line_and_keeps_the_last_good_file(tmp_path, monkeypatch):
    _fill_disk_after(monkeypatch, 2)  # the header and the copy bandwidth are written, then the disk is full
    _no_native_bf16(monkeypatch)
    _small_copy_buffer(monkeypatch)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([*QUICK_RUN, "--out", str(tmp_path)])
    lines = [l for l in err.getvalue().splitlines() if l.startswith("tokenbench: error")]
    assert code == 2 and len(lines) == 1 and "No space left on device; its last good copy is kept" in lines[0]
    assert "Traceback" not in err.getvalue()
    (path,) = tmp_path.glob("*.json")
    assert store.load(path).complete is False  # the last good copy, readable
    assert not list(tmp_path.glob("*.tmp"))


def test_into_a_full_disk_no_empty_results_file_is_left(tmp_path, monkeypatch):
    real_open = open

    def full(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)  # the name is created, the first byte does not fit
        if "x" in mode:
            f.close()
            raise OSError(errno.ENOSPC, "No space left on device")
        return f

    monkeypatch.setattr(store, "open", full, raising=False)
    with pytest.raises(store.WriteFailed, match="No space left on device"):
        store.ResultWriter(tmp_path, "x")
    assert not list(tmp_path.iterdir())

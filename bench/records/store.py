"""The one reader and writer of tokenbench's results files (results/*.json, and the CSV beside each).

Reading: `load(path)` parses a file, migrates an older schema to this one, and returns the typed record of
its kind (bench/records/schema.py); every way a file can be unusable is one UserError naming the file (and the
row and field), never a traceback. Kinds are dispatched through the explicit KINDS dict: adding a kind is
one dataclass and one entry there.

Writing: `open_record` names a new file (exclusive create: runs never clobber each other) and builds the
record header, the same for every kind; `ResultWriter.write` checks the record through its dataclass and
rewrites the JSON atomically after every row, with the CSV beside it (the rows, then the steps), so an
interrupted or failed run keeps every row it measured.
"""
from __future__ import annotations

import json
import math
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path

from bench.errors import UserError
from bench.records.schema import (SCHEMA_VERSION, Fp8Record, MoeRecord, PeakRecord, RunRecord, TpRecord,
                           WorkloadRecord)
from costmodel.ceilings import Ceilings, positive

# kind -> its record dataclass. Explicit, so no import order can replace an entry.
KINDS = {
    "run": RunRecord,  # decode, prefill and mixed sweeps (`tokenbench run`)
    "peak": PeakRecord,  # the device's measured ceilings (`tokenbench peak`)
    "tp": TpRecord,  # the tensor-parallel layer (`tokenbench tp`)
    "moe": MoeRecord,  # a mixture-of-experts MLP (`tokenbench moe`)
    "fp8": Fp8Record,  # FP8 GEMMs beside bf16 (`tokenbench fp8`)
    "workload": WorkloadRecord,  # an ISL/OSL workload per concurrency (`tokenbench workload`)
}
RUN_KINDS = ("run", "tp", "moe", "fp8")  # records with rows, steps, a model and a price
MODEL_KINDS = RUN_KINDS + ("workload",)  # headers that carry a model, a dtype, a price and ceilings


# --- reading -------------------------------------------------------------------------------------------

def read_json(path: str | os.PathLike, what: str = "results file"):
    """Parse a JSON file; every way it can fail becomes one UserError naming the file (`what` says which
    kind of file, e.g. "results file")."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise UserError(f"{what} not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {what} {p}: {exc}") from None
    if not text.strip():
        raise UserError(f"{what} {p} is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{what} {p} is not valid JSON (line {exc.lineno}: {exc.msg})") from None


def peek_kind(data) -> str | None:
    """The kind a parsed file says it holds (a schema-1 run has none: it is a run), or None when it is not
    a tokenbench record at all."""
    if not isinstance(data, dict) or "schema_version" not in data or "device" not in data:
        return None
    return data.get("kind") or "run"


def _peak_dtype(dtype):
    from bench.configs.device_catalog import PEAK_DTYPE

    return PEAK_DTYPE.get(dtype, dtype)


def migrate_v1(d: dict) -> dict:
    """Schema 1 -> 2: a run's measured ceilings move under one name each (`ceilings`: measured_gbps,
    measured_tflops, with the spec sheet's beside them), the peak file they came from is `peak_file`, and
    every record says its kind. Returns a new dict; keys it does not know stay where they are."""
    d = dict(d)
    kind = d.setdefault("kind", "run")
    copy = d.pop("measured_copy_gbps", None)
    peaks = d.pop("measured_peak_tflops", None)
    if kind == "peak":
        d["measured_tflops"] = peaks if isinstance(peaks, dict) else {}
        d["measured_gbps"] = copy
    else:
        used = d.pop("measured_peak", None)
        if isinstance(used, dict):
            d["peak_file"] = used
        dtype = d.get("dtype")
        tflops = peaks.get(dtype) if isinstance(peaks, dict) else None
        if tflops is None and isinstance(used, dict):
            tflops = used.get("tflops")
        spec = (d.get("device") or {}).get("spec") if isinstance(d.get("device"), dict) else None
        spec = spec if isinstance(spec, dict) else {}
        peak_key = _peak_dtype(dtype)
        d["ceilings"] = {"dtype": peak_key, "spec_tflops": (spec.get("peak_tflops") or {}).get(peak_key),
                         "spec_gbps": spec.get("mem_bw_gbs"), "measured_tflops": tflops, "measured_gbps": copy}
        if kind == "run":
            d.setdefault("phase", "decode")
    d["schema_version"] = 2
    return d


# version -> the function that brings a file of that version one step forward
MIGRATIONS = {1: migrate_v1}


def from_dict(data, name: str, kinds: tuple[str, ...] | None = None):
    """The typed record of a parsed file (`name` heads every message): migrated, dispatched on its kind,
    checked field by field."""
    kind = peek_kind(data)
    if kind is None:
        missing = [k for k in ("schema_version", "device", "model", "rows", "steps")
                   if not isinstance(data, dict) or k not in data]
        raise UserError(f"results file {name} is not a tokenbench run (missing {', '.join(missing)})")
    if data.get("tool", "tokenbench") != "tokenbench":
        raise UserError(f"results file {name} is not a tokenbench record (tool {data.get('tool')!r})")
    version = data["schema_version"]
    while version in MIGRATIONS:
        data = MIGRATIONS[version](data)
        version = data["schema_version"]
    if version != SCHEMA_VERSION:
        raise UserError(f"results file {name} has schema version {version!r}; this tokenbench reads versions "
                        f"{', '.join(map(str, sorted(MIGRATIONS)))} and {SCHEMA_VERSION}")
    kind = data["kind"]
    if kind not in KINDS:
        raise UserError(f"results file {name} holds a record of unknown kind {kind!r}; this tokenbench reads "
                        f"{', '.join(KINDS)}")
    if kinds is not None and kind not in kinds:
        raise UserError(f"results file {name} is a {kind} record; this needs {' or '.join(kinds)}")
    return KINDS[kind].from_dict(data, f"results file {name}")


def load(path: str | os.PathLike, kinds: tuple[str, ...] | None = None):
    """The typed record in a results file; `kinds` limits which kinds the caller accepts."""
    p = Path(path)
    record = from_dict(read_json(p, "results file"), str(p), kinds)
    record.path = str(p)
    return record


def load_run(path: str | os.PathLike) -> RunRecord:
    """A record with rows, steps, a model and a price: run, tp, moe or fp8."""
    return load(path, RUN_KINDS)


def load_workload(path: str | os.PathLike) -> WorkloadRecord:
    """A workload record whose points are read (report, compare --served): the store's checks, then what
    the points' readers need (WorkloadRecord.check_for_points); its path as given."""
    record = load(path, ("workload",))
    record.path = str(path)
    record.check_for_points()
    return record


def label(record) -> str:
    """How a record is named in tables: its device and file."""
    return f"{record.device.label} ({Path(record.path or 'run').name})"


# --- writing -------------------------------------------------------------------------------------------

def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")[:40] or "x"


def clean(obj):
    """JSON has no NaN/inf: write them as null; typed records become their dicts."""
    if hasattr(obj, "to_dict") and not isinstance(obj, dict):
        obj = obj.to_dict()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items() if not (isinstance(k, str) and k.startswith("_"))}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    return obj


def _written(record) -> tuple[dict, object]:
    data = clean(record)
    return data, from_dict(data, f"(record being written: {data.get('run_id')})")


def checked(record) -> dict:
    """The dict a record is written as, read back through its kind's dataclass first: what is written is
    what every reader accepts (a writer's mistyped field fails here, in its own run, not in a later report)."""
    return _written(record)[0]


def as_record(record: dict):
    """The typed record of a record being written (a dict), as a reader of its file gets it: what a
    command that has just measured prints its tables from."""
    return _written(record)[1]


class WriteFailed(UserError):
    """A results file could not be written (a full disk, a lost mount): the last good copy is kept and the
    temporary removed; one line, no traceback."""


def _replace_atomically(path: Path, tmp: Path, write) -> None:
    """write(tmp), then rename it over path; on any OSError the temporary is removed and path keeps its
    last good contents."""
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise WriteFailed(f"cannot write {path}: {exc.strerror or exc}; its last good copy is kept") from None


class ResultWriter:
    """Owns one run's files. The JSON name is reserved at creation, so two runs never share a file."""

    def __init__(self, out_dir: str | os.PathLike, stem: str):
        self.dir = Path(out_dir)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create results folder {self.dir}: {exc.strerror}") from exc
        for i in range(1000):
            name = stem if i == 0 else f"{stem}-{i}"
            path = self.dir / f"{name}.json"
            try:
                with open(path, "x") as f:  # exclusive create: an earlier run is never overwritten
                    f.write("{}")
            except FileExistsError:
                continue
            except OSError as exc:
                if path.exists():  # created, then the write failed (a full disk): no empty file is left
                    path.unlink(missing_ok=True)
                raise WriteFailed(f"cannot write results file {path}: {exc.strerror or exc}") from None
            self.json_path, self.csv_path = path, path.with_suffix(".csv")
            break
        else:
            raise UserError(f"no free results file name for {stem} in {self.dir}")

    @classmethod
    def reopen(cls, json_path: str | os.PathLike) -> ResultWriter:
        """The writer of a file another process created: the tp launcher marks its ranks' file when it
        stops them (rank 0, which wrote it, is gone by then)."""
        writer = cls.__new__(cls)
        writer.json_path = Path(json_path)
        writer.dir, writer.csv_path = writer.json_path.parent, writer.json_path.with_suffix(".csv")
        return writer

    def write(self, record) -> None:
        data = checked(record)
        text = json.dumps(data, indent=1) + "\n"
        _replace_atomically(self.json_path, self.json_path.with_suffix(".json.tmp"), lambda tmp: tmp.write_text(text))
        self._write_csv(data)

    def _write_csv(self, record: dict) -> None:
        import pandas as pd

        # one table: the measured rows ("part" = row), then the derived steps with tokens/s and $/M ("step")
        flat = [{"part": part, **{k: v for k, v in r.items() if not isinstance(v, (dict, list))}}
                for part, key in (("row", "rows"), ("step", "steps")) for r in record.get(key, [])]
        _replace_atomically(self.csv_path, self.csv_path.with_suffix(".csv.tmp"),
                            lambda tmp: pd.DataFrame(flat).to_csv(tmp, index=False))


def file_stem(device, *parts: str) -> str:
    """`<date>-<time>-<device>-<parts...>`: the name every results file starts from."""
    return "-".join([time.strftime("%Y%m%d-%H%M%S"), slug(device.key or device.name), *[p for p in parts if p]])


def open_record(kind: str, out_dir, device, env: dict, stem_parts: tuple, settings: dict, *, model=None,
                dtype: str | None = None, price: dict | None = None, **fields) -> tuple[ResultWriter, dict]:
    """A new results file for a record of `kind` and its header, the same for every kind: (writer, record).
    The record is a dict the caller fills (rows, steps) and hands to writer.write after every row; `fields`
    are the kind's own header fields (phase, ceilings, tp, ...). Nothing is written yet."""
    if kind not in KINDS:
        raise ValueError(f"unknown record kind {kind!r}")
    writer = ResultWriter(out_dir, file_stem(device, *stem_parts))
    record = {"schema_version": SCHEMA_VERSION, "kind": kind, "tool": "tokenbench", "created": env["created"],
              "run_id": writer.json_path.stem, "device": device.to_dict(), "env": env}
    if kind in MODEL_KINDS:
        record.update(model=model.to_dict(), dtype=dtype)
    record["settings"] = settings
    if kind in MODEL_KINDS:
        record["price"] = price
    record.update(fields)
    record.update(complete=False, rows=[])
    if kind in MODEL_KINDS:
        record.update(steps=[], ceilings=Ceilings.of_spec(device.spec, _peak_dtype(dtype)))
    return writer, record


def set_measured(record: dict, **measured) -> Ceilings:
    """Set measured ceilings (measured_gbps, measured_tflops) in a record being written; returns them."""
    ceilings = record.get("ceilings") or Ceilings()
    from dataclasses import replace

    ceilings = replace(ceilings, **{k: positive(v) for k, v in measured.items()})
    record["ceilings"] = ceilings
    return ceilings


INTERRUPTED = "stopped by Ctrl-C; the rows measured before it are kept"


def interrupted_note(exc: KeyboardInterrupt) -> str:
    """The record's note for a run stopped by Ctrl-C (INTERRUPTED) or a signal (bench.errors.Stopped)."""
    from bench.errors import stop_name

    return INTERRUPTED.replace("Ctrl-C", stop_name(exc))


@contextmanager
def recording(record: dict | None, writer: ResultWriter | None, say=None):
    """Around a measuring loop: marks the record complete when the loop ends; on Ctrl-C, SIGTERM or SIGHUP
    (bench.errors.Stopped) keeps every row measured so far and sets state["status"] to 128 + the signal (130
    for Ctrl-C); on any other failure notes it in the record and re-raises. The record is written in every
    case, with its wall time. A rank that writes nothing passes record None: only the status is kept."""
    from bench.errors import stop_status
    from bench.records.machine_share import other_cpu_use, shared_machine_warning, snapshot

    state = {"status": 0}
    started = time.perf_counter()
    record = {} if record is None else record
    cpu_before = snapshot()
    failing = False
    try:
        yield state
        record["complete"] = True
    except KeyboardInterrupt as exc:
        record["interrupted"] = interrupted_note(exc)
        state["status"] = stop_status(exc)
        if say:
            say("interrupted: keeping the rows measured so far")
    except Exception as exc:
        failing = True
        record["failed"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        if say and not isinstance(exc, WriteFailed):  # a failed write is said once, by the command line
            say(f"failed midway ({record['failed']}); rows so far kept in {writer.json_path}")
        raise
    finally:
        record["wall_s"] = time.perf_counter() - started
        record["other_cpu"] = other_cpu_use(cpu_before)  # did the run share the machine?
        if warning := shared_machine_warning(record["other_cpu"]):
            record["shared_machine_warning"] = warning
            if say:
                say(warning)
        try:
            if writer is not None:
                writer.write(record)  # with the failure noted, where the disk takes it
        except WriteFailed:
            if not failing:
                raise
            # the failure being raised already says what went wrong; the file keeps its last good rows

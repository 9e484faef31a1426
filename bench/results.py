"""Result records: one JSON (plus a CSV of its rows) per run under results/, never overwritten.

The file is rewritten after every row, atomically, so a run that fails midway or is interrupted
keeps every row it measured.
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

SCHEMA_VERSION = 1
REQUIRED_KEYS = ("schema_version", "device", "model", "rows", "steps")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")[:40] or "x"


def _clean(obj):
    """JSON has no NaN/inf: write them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


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
                raise UserError(f"cannot write results file {path}: {exc.strerror}") from exc
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

    def write(self, record: dict) -> None:
        tmp = self.json_path.with_suffix(".json.tmp")
        with open(tmp, "w") as f:
            json.dump(_clean(record), f, indent=1)
            f.write("\n")
        os.replace(tmp, self.json_path)
        self._write_csv(record)

    def _write_csv(self, record: dict) -> None:
        import pandas as pd

        # one table: the measured rows ("part" = row), then the derived steps with tokens/s and $/M ("step")
        flat = [{"part": part, **{k: v for k, v in r.items() if not isinstance(v, (dict, list))}}
                for part, key in (("row", "rows"), ("step", "steps")) for r in record.get(key, [])]
        tmp = self.csv_path.with_suffix(".csv.tmp")
        pd.DataFrame(flat).to_csv(tmp, index=False)
        os.replace(tmp, self.csv_path)


INTERRUPTED = "stopped by Ctrl-C; the rows measured before it are kept"


@contextmanager
def recording(record: dict, writer: ResultWriter, say=None):
    """Around a measuring loop: marks the record complete when the loop ends; on Ctrl-C keeps every row
    measured so far and sets state["status"] to 130; on any other failure notes it in the record and
    re-raises. The record is written in every case, with its wall time."""
    state = {"status": 0}
    started = time.perf_counter()
    try:
        yield state
        record["complete"] = True
    except KeyboardInterrupt:
        record["interrupted"] = INTERRUPTED
        state["status"] = 130
        if say:
            say("interrupted: keeping the rows measured so far")
    except Exception as exc:
        record["failed"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        if say:
            say(f"failed midway ({record['failed']}); rows so far kept in {writer.json_path}")
        raise
    finally:
        record["wall_s"] = time.perf_counter() - started
        writer.write(record)


def read_json(path: str | os.PathLike, what: str):
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


def load_record(path: str | os.PathLike) -> dict:
    """Read a run's JSON, with one clear error naming the file when it cannot be used."""
    p = Path(path)
    record = read_json(p, "results file")
    if not isinstance(record, dict) or any(k not in record for k in REQUIRED_KEYS):
        missing = [k for k in REQUIRED_KEYS if not isinstance(record, dict) or k not in record]
        raise UserError(f"results file {p} is not a tokenbench run (missing {', '.join(missing)})")
    if record["schema_version"] != SCHEMA_VERSION:
        raise UserError(f"results file {p} has schema version {record['schema_version']!r}; "
                        f"this tokenbench reads version {SCHEMA_VERSION}")
    from costmodel.errors import CostInputError
    from costmodel.record_fields import check_record

    try:
        check_record(record, str(p))
    except CostInputError as exc:
        raise UserError(str(exc)) from None
    return record

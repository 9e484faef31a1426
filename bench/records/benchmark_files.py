"""pytest-benchmark JSON files written by the suites in benchmarks: reading, validating, flattening.

A file holds one pytest session: machine_info (with the "tokenbench" section the suite's conftest adds:
device, versions, commit), commit_info, datetime, and one entry per benchmark with its stats (seconds) and
extra_info (op, model, batch, context, backend, dtype and the derived figures).
"""
from __future__ import annotations

import os
from pathlib import Path

from bench.errors import UserError
from bench.records.store import read_json

REQUIRED = ("machine_info", "benchmarks", "datetime", "version")
KNOWN_MAJORS = ("3", "4", "5")  # pytest-benchmark versions whose file layout this reader knows
TOKENBENCH_SCHEMA = 1


def load_benchmark_file(path: str | os.PathLike) -> dict:
    """Read one pytest-benchmark file, with one clear error naming it when it cannot be used."""
    p = Path(path)
    data = read_json(p, "benchmark file")
    if not isinstance(data, dict):
        raise UserError(f"{p} is not a pytest-benchmark file (a JSON {type(data).__name__}, not an object)")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise UserError(f"{p} is not a pytest-benchmark file (missing {', '.join(missing)})")
    major = str(data["version"]).split(".", 1)[0]
    if major not in KNOWN_MAJORS:
        raise UserError(f"{p} has an unknown schema: written by pytest-benchmark {data['version']!r}; "
                        f"tokenbench reads files of pytest-benchmark {', '.join(m + '.x' for m in KNOWN_MAJORS)}")
    schema = data.get("tokenbench_schema", (data["machine_info"].get("tokenbench") or {}).get("schema"))
    if schema is not None and schema != TOKENBENCH_SCHEMA:
        raise UserError(f"{p} has tokenbench schema {schema!r}; this tokenbench reads schema {TOKENBENCH_SCHEMA}")
    if not isinstance(data["benchmarks"], list):
        raise UserError(f"{p} has an unknown schema: 'benchmarks' is not a list")
    for i, bench in enumerate(data["benchmarks"]):
        if not isinstance(bench, dict) or "name" not in bench or "median" not in (bench.get("stats") or {}):
            raise UserError(f"{p} has an unknown schema: benchmark {i} has no name or no stats.median")
    return data


def benchmark_files(paths) -> list[Path]:
    """The .json files named, and those anywhere under the folders named, in a stable order."""
    files = []
    for item in paths:
        p = Path(item)
        if p.is_dir():
            files.extend(sorted(p.rglob("*.json")))
        elif p.exists():
            files.append(p)
        else:
            raise UserError(f"no such file or folder: {p}")
    return files


def device_of(data: dict) -> str:
    info = data["machine_info"]
    section = info.get("tokenbench") or {}
    name = (section.get("device") or {}).get("name")
    if name:
        return name
    cpu = info.get("cpu") or {}
    return cpu.get("brand_raw") or info.get("processor") or info.get("node") or "unknown device"


def flatten(path: Path, data: dict) -> list[dict]:
    """One flat row per benchmark: the file's device, date and commit with its stats and extra_info."""
    commit = data.get("commit_info") or {}
    rows = []
    for bench in data["benchmarks"]:
        extra = bench.get("extra_info") or {}
        stats = bench["stats"]
        rows.append({
            "file": str(path), "datetime": data["datetime"], "device": device_of(data),
            "commit": (commit.get("id") or "")[:10] + ("+" if commit.get("dirty") else ""),
            "name": bench["name"], "fullname": bench.get("fullname"),
            "median_s": stats["median"], "iqr_s": stats.get("iqr"), "rounds": stats.get("rounds"),
            **extra,
        })
    return rows

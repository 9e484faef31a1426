"""Peak records on disk: how `tokenbench peak` stores its result, how the newest one measured on this device
is found, and how a run reads it as the device's measured ceiling.

A peak record is a results/ JSON like a run's, marked `"kind": "peak"`, with one row per ceiling:
  {"metric": "matmul" | "copy" | "read", "dtype", "unit", "measured", "spec", "ratio", "best_shape", ...}
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from bench import metrics
from bench.errors import UserError
from bench.results import SCHEMA_VERSION, read_json

PEAK_KIND = "peak"
PEAK_KEYS = ("schema_version", "kind", "device", "rows")


def shape_label(shape: dict | None) -> str | None:
    """'8192x8192x8192' for a matmul (M x N x K), '1.00 GiB' for a buffer; None when nothing was timed."""
    if not shape:
        return None
    if "bytes" in shape:
        return f"{shape['bytes'] / 2**30:.2f} GiB"
    return f"{shape['m']}x{shape['n']}x{shape['k']}"


def load_peak(path: str | os.PathLike) -> dict:
    """Read a peak record, with one clear error naming the file when it cannot be used."""
    p = Path(path)
    record = read_json(p, "peak file")
    if not isinstance(record, dict) or record.get("kind") != PEAK_KIND:
        raise UserError(f"{p} is not a tokenbench peak file (no \"kind\": \"peak\")")
    missing = [k for k in PEAK_KEYS if k not in record]
    if missing:
        raise UserError(f"peak file {p} is missing {', '.join(missing)}")
    if record["schema_version"] != SCHEMA_VERSION:
        raise UserError(f"peak file {p} has schema version {record['schema_version']!r}; "
                        f"this tokenbench reads version {SCHEMA_VERSION}")
    return record


def _peek_kind(path: Path) -> str | None:
    """The record's kind without failing on files that are not tokenbench records at all."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record.get("kind") if isinstance(record, dict) else None


def latest_peak(folder: str | os.PathLike, device_name: str) -> tuple[Path, dict] | None:
    """The newest complete peak record in `folder` (not its subfolders) measured on a device of this name."""
    found = []
    for path in Path(folder).glob("*.json"):
        if _peek_kind(path) != PEAK_KIND:
            continue
        try:
            record = load_peak(path)
        except UserError:
            continue  # an unreadable or older-schema peak file is passed over, not fatal to a run
        if (record["device"] or {}).get("name") == device_name and record.get("complete"):
            found.append((record.get("created") or "", path.name, path, record))
    if not found:
        return None
    _, _, path, record = max(found, key=lambda t: (t[0], t[1]))
    return path, record


def ceiling(record: dict, metric: str, dtype: str | None = None) -> dict | None:
    """The measured row for `metric` (and `dtype`), or None when it was skipped or not measured."""
    for row in record["rows"]:
        if row.get("metric") == metric and (dtype is None or row.get("dtype") == dtype) and row.get("measured"):
            return row
    return None


def use_measured_peak(plan, device, folder, record: dict, console=None) -> dict | None:
    """Set the run's measured matmul ceiling from the newest peak file of this device in `folder`.

    Sets record["measured_peak"] (the file and the figures used, or None) and, when the file has a matmul row
    for the run's dtype, record["measured_peak_tflops"] = {dtype: TFLOP/s} (what `compare` and `report` read)
    and plan.ceilings["measured_peak_flops"] (what fills each row's efficiency_measured).
    A run's dtype maps to the peak row it is read against as for the spec sheet (fp32 -> fp32, not tf32).
    """
    found = latest_peak(folder, device.name)
    record["measured_peak"] = None
    if found is None:
        if console is not None:
            console.print(f"[dim]no peak file for {device.name} in {folder}: run `tokenbench peak` first for "
                          f"efficiency against the measured ceiling[/]")
        return None
    path, peak = found
    peak_dtype = metrics.PEAK_DTYPE.get(plan.dtype, plan.dtype)
    matmul = ceiling(peak, "matmul", peak_dtype)
    used = {
        "file": str(path), "run_id": peak.get("run_id"), "created": peak.get("created"), "dtype": peak_dtype,
        "tflops": None if matmul is None else matmul["measured"],
        "best_shape": None if matmul is None else matmul.get("best_shape"),
        "copy_gbps": (ceiling(peak, "copy") or {}).get("measured"),
        "read_gbps": (ceiling(peak, "read") or {}).get("measured"),
    }
    record["measured_peak"] = used
    if matmul is not None:
        plan.ceilings["measured_peak_flops"] = matmul["measured"] * 1e12
        record["measured_peak_tflops"] = {plan.dtype: matmul["measured"]}
    if console is not None:
        figure = "no measured matmul row" if matmul is None else f"{matmul['measured']:.4g} TFLOP/s {peak_dtype}"
        console.print(f"measured ceiling from {path.name}: {figure}")
    return used

"""Peak records on disk: how `tokenbench peak` stores its result, how the newest one measured on this device
is found, and how a run reads it as the device's measured ceiling.

A peak record is a results/ JSON like a run's, marked `"kind": "peak"`, with one row per ceiling:
  {"metric": "matmul" | "copy" | "read", "dtype", "unit", "measured", "spec", "ratio", "best_shape", ...}
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from bench.configs.device_catalog import PEAK_DTYPE
from bench.records import store
from bench.errors import UserError
from bench.records.schema import PeakRecord

PEAK_KIND = "peak"


def shape_label(shape: dict | None) -> str | None:
    """'8192x8192x8192' for a matmul (M x N x K), '1.00 GiB' for a buffer; None when nothing was timed."""
    if not shape:
        return None
    if "bytes" in shape:
        return f"{shape['bytes'] / 2**30:.2f} GiB"
    return f"{shape['m']}x{shape['n']}x{shape['k']}"


def load_peak(path: str | os.PathLike) -> PeakRecord:
    """Read a peak record through the store, with one clear error naming the file when it cannot be used."""
    data = store.read_json(path, "peak file")
    if store.peek_kind(data) != PEAK_KIND:
        raise UserError(f"{path} is not a tokenbench peak file (no \"kind\": \"peak\")")
    return store.from_dict(data, str(path), (PEAK_KIND,))


def _peek_kind(path: Path) -> str | None:
    """The record's kind without failing on files that are not tokenbench records at all."""
    try:
        return store.peek_kind(json.loads(path.read_text()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def latest_peak(folder: str | os.PathLike, device_name: str) -> tuple[Path, PeakRecord] | None:
    """The newest complete peak record in `folder` (not its subfolders) measured on a device of this name."""
    found = []
    for path in Path(folder).glob("*.json"):
        if _peek_kind(path) != PEAK_KIND:
            continue
        try:
            record = load_peak(path)
        except UserError:
            continue  # an unreadable or unknown-schema peak file is passed over, not fatal to a run
        if record.device.name == device_name and record.complete:
            found.append((record.created or "", path.name, path, record))
    if not found:
        return None
    _, _, path, record = max(found, key=lambda t: (t[0], t[1]))
    return path, record


def use_measured_peak(plan, device, folder, record: dict, console=None) -> dict | None:
    """Set the run's measured matmul ceiling from the newest peak file of this device in `folder`.

    Sets record["peak_file"] (the file and the figures used, or None) and, when the file has a matmul row
    for the run's dtype, the record's and the plan's ceilings.measured_tflops (what fills each row's
    efficiency_measured, and what `compare` and `report` read).
    A run's dtype maps to the peak row it is read against as for the spec sheet (fp32 -> fp32, not tf32).
    """
    found = latest_peak(folder, device.name)
    record["peak_file"] = None
    if found is None:
        if console is not None:
            console.print(f"[dim]no peak file for {device.name} in {folder}: run `tokenbench peak` first for "
                          f"efficiency against the measured ceiling[/]")
        return None
    path, peak = found
    peak_dtype = PEAK_DTYPE.get(plan.dtype, plan.dtype)
    matmul, copy, read = peak.row("matmul", peak_dtype), peak.row("copy"), peak.row("read")
    used = {
        "file": str(path), "run_id": peak.run_id, "created": peak.created, "dtype": peak_dtype,
        "tflops": None if matmul is None else matmul.measured,
        "best_shape": None if matmul is None else matmul.best_shape,
        "copy_gbps": copy and copy.measured, "read_gbps": read and read.measured,
    }
    record["peak_file"] = used
    if matmul is not None:
        plan.ceilings = store.set_measured(record, measured_tflops=matmul.measured)
    if console is not None:
        figure = "no measured matmul row" if matmul is None else f"{matmul.measured:.4g} TFLOP/s {peak_dtype}"
        console.print(f"measured ceiling from {path.name}: {figure}")
    return used

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


# what makes two records "the same machine" for a ceiling: a GPU's UUID where both have one, else its name and
# memory; a CPU's name, family, model, stepping and memory (a VM's "AMD EPYC" is several generations)
CPU_IDENTITY = ("name", "cpu_family", "cpu_model", "cpu_stepping")
MEMORY_TOLERANCE = 0.02  # a VM's visible RAM moves by a few MiB between boots of one machine type


def _device_fields(device) -> dict:
    """The device's recorded fields, from a LocalDevice, a DeviceRecord or a record's device dict."""
    if isinstance(device, dict):
        return device
    if hasattr(device, "to_dict"):
        return device.to_dict()
    raise TypeError(f"not a device: {device!r}")


def identity_mismatch(peak_device, device) -> str | None:
    """Why a peak file's device is not this one (the first field that differs or is not recorded), or None."""
    a, b = _device_fields(peak_device), _device_fields(device)
    if a.get("kind") != b.get("kind"):
        return f"measured on a {a.get('kind')} device, this is a {b.get('kind')}"
    if a.get("kind") == "cuda" and a.get("uuid") and b.get("uuid"):
        return None if a["uuid"] == b["uuid"] else f"measured on GPU {a['uuid']}, this is {b['uuid']}"
    fields = CPU_IDENTITY if a.get("kind") == "cpu" else ("name",)
    for key in fields:
        if a.get(key) is None:
            return f"it does not record the device's {key.replace('_', ' ')} (an older file or another machine)"
        if a.get(key) != b.get(key):
            return f"measured on {key.replace('_', ' ')} {a.get(key)!r}, this machine's is {b.get(key)!r}"
    mine, theirs = b.get("memory_bytes"), a.get("memory_bytes")
    if not mine or not theirs or abs(theirs / mine - 1) > MEMORY_TOLERANCE:
        return f"measured on a device with {(theirs or 0) / 2**30:.1f} GiB, this one has {(mine or 0) / 2**30:.1f} GiB"
    return None


def find_peaks(folder: str | os.PathLike, device) -> tuple[tuple[Path, PeakRecord] | None, list[str]]:
    """The newest complete peak record in `folder` (not its subfolders) measured on this very device, and
    why each other peak file there was passed over (unreadable, incomplete, another machine), one line each."""
    found, passed = [], []
    for path in sorted(Path(folder).glob("*.json")):
        kind = _peek_kind(path)
        if kind is None and "peak" in path.name:
            passed.append(f"{path.name}: not readable as a peak file (empty, truncated or not JSON)")
            continue
        if kind != PEAK_KIND:
            continue
        try:
            record = load_peak(path)
        except UserError as exc:
            passed.append(f"{path.name}: {exc}")  # an unreadable peak file is said, not fatal to a run
            continue
        if not record.complete:
            passed.append(f"{path.name}: incomplete ({record.status})")
            continue
        if why := identity_mismatch(record.device.to_dict(), device):
            passed.append(f"{path.name}: another machine's ({why})")
            continue
        found.append((record.created or "", path.name, path, record))
    if not found:
        return None, passed
    _, _, path, record = max(found, key=lambda t: (t[0], t[1]))
    return (path, record), passed


def latest_peak(folder: str | os.PathLike, device) -> tuple[Path, PeakRecord] | None:
    """The newest complete peak record in `folder` measured on this device (find_peaks, without the notes)."""
    return find_peaks(folder, device)[0]


def use_measured_peak(plan, device, folder, record: dict, console=None) -> dict | None:
    """Set the run's measured matmul ceiling from the newest peak file of this device in `folder`.

    Sets record["peak_file"] (the file and the figures used, or None) and, when the file has a matmul row
    for the run's dtype, the record's and the plan's ceilings.measured_tflops (what fills each row's
    efficiency_measured, and what `compare` and `report` read).
    A run's dtype maps to the peak row it is read against as for the spec sheet (fp32 -> fp32, not tf32).
    """
    found, passed = find_peaks(folder, device)
    record["peak_file"] = None
    if console is not None:
        for line in passed:  # another machine's ceiling is never used silently, nor a broken file skipped so
            console.print(f"[yellow]peak file not used: {line}[/]", highlight=False)
    if found is None:
        if console is not None:
            console.print(f"[dim]no peak file of this {device.name} in {folder}: run `tokenbench peak` first for "
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

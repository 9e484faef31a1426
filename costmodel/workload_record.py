"""Reading a workload results file (`tokenbench workload`, kind "workload") for the commands that use its points.

    {"schema_version": 1, "tool": "tokenbench", "kind": "workload", "device": {...}, "model": {"name": ...},
     "dtype": "bf16", "workload": {"isl": ..., "osl": ..., "concurrency": [...], "chunk": ..., "tp": ...},
     "price": {"price_per_hour": ... or null, "power_kw": ... or null, ...},
     "rows": [...], "steps": [...], "points": [WorkloadPoint.to_dict(), ...], "complete": true}

Torch-free and file-free: bench.records.store reads the file (one reader of results files) and hands the checked
dict here; the points are costmodel.workload_economics.WorkloadPoint, read with its own from_dict.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from costmodel.input_errors import CostInputError
from costmodel.workload_economics import WorkloadPoint, workload_label

KIND = "workload"


def is_workload(record) -> bool:
    return isinstance(record, dict) and record.get("kind") == KIND


@dataclass(frozen=True)
class WorkloadRun:
    """A workload file's points and what they were measured with."""

    path: str
    record: dict
    points: tuple[WorkloadPoint, ...]

    @property
    def device(self) -> dict:
        return self.record["device"]

    @property
    def device_name(self) -> str:
        return self.device.get("name") or self.device.get("key") or "unknown device"

    @property
    def device_key(self) -> str | None:
        """The catalog key of the measured device (h200), None for a CPU or an uncatalogued device."""
        return self.device.get("key")

    @property
    def model(self) -> str:
        return self.record["model"]["name"]

    @property
    def dtype(self) -> str:
        return self.record["dtype"]

    @property
    def isl(self) -> int:
        return self.record["workload"]["isl"]

    @property
    def osl(self) -> int:
        return self.record["workload"]["osl"]

    @property
    def workload(self) -> str:
        return workload_label(self.isl, self.osl)

    @property
    def price_per_hour(self) -> float | None:
        return (self.record.get("price") or {}).get("price_per_hour")

    @property
    def power_kw(self) -> float | None:
        return (self.record.get("price") or {}).get("power_kw")

    @property
    def date(self) -> str:
        return (self.record.get("created") or "")[:10] or "undated"

    @property
    def is_cpu(self) -> bool:
        return self.device.get("kind") == "cpu"

    def label(self) -> str:
        return f"{self.device_key or self.device_name} ({Path(self.path).name})"


def _positive_or_none(value, where: str, name: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise CostInputError(f"{where}: {name} must be a positive number or null, got {value!r}")


def workload_run(record: dict, path: str) -> WorkloadRun:
    """Check a workload record (already parsed) and read its points; one CostInputError naming the file."""
    where = f"workload file {path}"
    if not is_workload(record):
        raise CostInputError(f"{path} is not a workload file (kind {record.get('kind')!r}; `tokenbench workload` "
                             f"writes kind \"workload\")")
    for key in ("device", "model", "dtype", "workload", "points"):
        if key not in record:
            raise CostInputError(f"{where} lacks {key!r}")
    if not isinstance(record["model"], dict) or not isinstance(record["model"].get("name"), str):
        raise CostInputError(f"{where}: model.name must be a string")
    w = record["workload"]
    if not isinstance(w, dict):
        raise CostInputError(f"{where}: workload must be an object")
    for key in ("isl", "osl"):
        v = w.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise CostInputError(f"{where}: workload.{key} must be a positive integer, got {v!r}")
    price = record.get("price") or {}
    if not isinstance(price, dict):
        raise CostInputError(f"{where}: price must be an object")
    _positive_or_none(price.get("price_per_hour"), where, "price.price_per_hour")
    _positive_or_none(price.get("power_kw"), where, "price.power_kw")
    if not isinstance(record["points"], list):
        raise CostInputError(f"{where}: points must be a list")
    points = tuple(WorkloadPoint.from_dict(p, f"{where}: points[{i}]") for i, p in enumerate(record["points"]))
    return WorkloadRun(path=str(path), record=record, points=points)

"""Reading tokenbench result files (schema_version 1) as plain dicts: costmodel needs no bench import."""
from __future__ import annotations

import json
from pathlib import Path

from costmodel.errors import CostInputError
from costmodel.record_fields import check_record

SCHEMA_VERSION = 1


def load_result(path: str | Path) -> dict:
    """A result file's dict, checked for what the cost commands rely on; problems are one-line errors."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except OSError as e:
        raise CostInputError(f"cannot read result file {str(p)!r}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise CostInputError(f"result file {str(p)!r} is not valid JSON: {e.msg} at line {e.lineno}") from None
    if not isinstance(data, dict) or data.get("tool") != "tokenbench":
        raise CostInputError(f"{str(p)!r} is not a tokenbench result file")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise CostInputError(f"{str(p)!r} has schema_version {data.get('schema_version')!r}; "
                             f"this tokenbench reads {SCHEMA_VERSION}")
    for key in ("device", "model", "dtype", "rows", "steps"):
        if key not in data:
            raise CostInputError(f"result file {str(p)!r} lacks {key!r}")
    check_record(data, str(p))
    data.setdefault("_path", str(p))
    return data


def label(result: dict) -> str:
    dev = result["device"]
    return f"{dev.get('key') or dev.get('name') or 'unknown device'} ({Path(result.get('_path', 'run')).name})"


def measured_peak(result: dict, dtype: str | None = None) -> float | None:
    peaks = result.get("measured_peak_tflops") or {}
    value = peaks.get(dtype or result["dtype"])
    return value if isinstance(value, (int, float)) and value > 0 else None


def spec_peak(spec: dict | None, dtype: str) -> float | None:
    value = ((spec or {}).get("peak_tflops") or {}).get(dtype)
    return value if isinstance(value, (int, float)) and value > 0 else None


def usable_steps(result: dict) -> list[dict]:
    """Steps that fit in the device's memory: a step that does not fit is not an operating point."""
    return [s for s in result["steps"] if s.get("fits", True) and s.get("tokens_per_s")]

"""The field types of a tokenbench results record, checked once by every reader (bench's and costmodel's),
so a hand-edited or corrupt file is one line naming the file, the row and the field, never a traceback
from deep inside a table or a plot."""
from __future__ import annotations

from costmodel.errors import CostInputError

# fields a reader computes with: numbers (or null where a figure is unknown)
NUMBERS = ("seconds_p50", "seconds_p10", "seconds_p90", "flops", "bytes", "noise", "tflops", "gbps",
           "rel_error", "tolerance", "pct_copy_bw", "efficiency_spec", "efficiency_measured", "intensity",
           "step_seconds", "layer_seconds", "tokens_per_s", "tokens_per_s_per_user", "prompt_tokens_per_s",
           "time_to_first_token_s", "cost_per_mtok", "tokens_per_s_per_mw", "bytes_needed", "memory_bytes",
           "measured_step_seconds", "derived_over_measured", "board_joules_per_token", "board_joules_per_call")
INTEGERS = ("batch", "context", "layers", "samples", "prompt", "chunk", "prefix", "chunk_index", "chunk_tokens")
STRINGS = ("op", "kind", "backend", "dtype", "phase")
FLAGS = ("valid", "fits", "noisy")


def _bad(where: str, field: str, want: str, value) -> CostInputError:
    return CostInputError(f"{where}: {field} must be {want}, got {value!r} (a hand-edited or corrupt file?)")


def check_entry(entry, where: str) -> None:
    if not isinstance(entry, dict):
        raise CostInputError(f"{where} must be an object, got {type(entry).__name__}")
    for key, value in entry.items():
        if value is None:
            continue
        if key in NUMBERS and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise _bad(where, key, "a number", value)
        if key in INTEGERS and (isinstance(value, bool) or not isinstance(value, int)):
            raise _bad(where, key, "an integer", value)
        if key in STRINGS and not isinstance(value, str):
            raise _bad(where, key, "a string", value)
        if key in FLAGS and not isinstance(value, bool):
            raise _bad(where, key, "true or false", value)


def check_record(record: dict, name: str) -> None:
    """Every row and step of a run record; `name` (the file) heads the message."""
    for part in ("rows", "steps"):
        entries = record.get(part)
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise CostInputError(f"results file {name}: {part} must be a list, got {type(entries).__name__}")
        for i, entry in enumerate(entries):
            check_entry(entry, f"results file {name}: {part}[{i}]")
    for key in ("measured_copy_gbps",):
        value = record.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise _bad(f"results file {name}", key, "a number", value)
